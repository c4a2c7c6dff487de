"""lookup_stream: many lookups over one LookupStream call, on one server
and over a 3-shard cluster (one stream per shard involved), against
lookup() of the same batches; errors end the iteration in order."""

import numpy as np
import pytest

from embedding_client import (EmbeddingClient, InvalidArgumentError,
                              UnavailableError)
from tests.testing.cluster import Cluster
from tests.testing.server_process import ServerProcess

ROWS, DIM = 50, 8


def batches(seed=0):
    """Index batches of several shapes, some touching one shard only."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, ROWS, 7), rng.integers(0, ROWS, (3, 4)),
            np.array([3, 6, 9]), rng.integers(0, ROWS, (2, 2, 5)),
            np.array([1])]


@pytest.fixture(scope="module")
def single():
    with ServerProcess() as server, EmbeddingClient(server.address) as client:
        client.create_table("s", ROWS, DIM, seed=5)
        yield client


@pytest.fixture(scope="module")
def cluster():
    with Cluster(3) as shards:
        with EmbeddingClient(shards.addresses) as client:
            client.create_table("s", ROWS, DIM, seed=5)
        yield shards


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_stream_equals_one_lookup_per_batch(single, cluster, dtype):
    expected = [single.lookup("s", b, dtype=dtype) for b in batches()]
    got_single = list(single.lookup_stream("s", iter(batches()), dtype=dtype))
    with EmbeddingClient(cluster.addresses) as sharded:
        got_sharded = list(sharded.lookup_stream("s", iter(batches()),
                                                 dtype=dtype))
    for want, one, many in zip(expected, got_single, got_sharded,
                               strict=True):
        assert one.dtype == many.dtype == want.dtype
        np.testing.assert_array_equal(one, want)
        np.testing.assert_array_equal(many, want)


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
def test_a_bad_batch_ends_the_stream_after_the_earlier_results(
        single, cluster, sharded):
    stream_batches = [np.array([1, 2]), np.array([4, ROWS]), np.array([3])]
    with EmbeddingClient(cluster.addresses if sharded
                         else single.address) as client:
        stream = client.lookup_stream("s", stream_batches)
        np.testing.assert_array_equal(next(stream),
                                      single.lookup("s", [1, 2]))
        with pytest.raises(InvalidArgumentError,
                           match=rf"index {ROWS} at position 1 is outside"):
            next(stream)
        with pytest.raises(InvalidArgumentError, match="indices is empty"):
            list(client.lookup_stream("s", [np.array([1]),
                                            np.zeros(0, np.int64)]))
        # Stopping early cancels the call; the client goes on working.
        for rows in client.lookup_stream("s", batches()):
            break
        np.testing.assert_array_equal(client.lookup("s", [5]),
                                      single.lookup("s", [5]))


def test_a_down_shard_fails_only_the_batches_that_need_it(single):
    with Cluster(3) as shards:
        with EmbeddingClient(shards.addresses) as client:
            client.create_table("s", ROWS, DIM, seed=5)
        shards.servers[1].kill()
        with EmbeddingClient(shards.addresses) as client:
            on_0_and_2 = [np.array([0, 2, 3]), np.array([[5, 6], [8, 9]])]
            for rows, batch in zip(client.lookup_stream("s", on_0_and_2),
                                   on_0_and_2, strict=True):
                np.testing.assert_array_equal(rows, single.lookup("s", batch))
            with pytest.raises(UnavailableError,
                               match=rf"shard 1 \({shards.addresses[1]}\)"):
                list(client.lookup_stream("s", [np.array([0]),
                                                np.array([1])]))
