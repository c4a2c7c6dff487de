"""The sharded Python client when shards fail or do not form the cluster.

Real servers: a shard is killed and restarted on its address from its
checkpoint; a push that failed part way is retried with its sequence and
lands exactly once on every shard; clusters that are not what the address
list says are refused with FAILED_PRECONDITION naming the server; a create
that fails on one shard leaves nothing behind on the others; a client
made while a shard is down serves the calls that need only the others and
checks that shard once it answers.
"""

import time

import numpy as np
import pytest

from embedding_client import (AlreadyExistsError, EmbeddingClient,
                              FailedPreconditionError, ResourceExhaustedError,
                              UnavailableError)
from tests.testing.cluster import Cluster
from tests.testing.server_process import ServerProcess

ROWS, DIM = 12, 4
# Reconnect quickly to a restarted shard.
FAST_RECONNECT = (("grpc.initial_reconnect_backoff_ms", 100),
                  ("grpc.min_reconnect_backoff_ms", 100),
                  ("grpc.max_reconnect_backoff_ms", 200))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(3, checkpoint_root=tmp_path_factory.mktemp("shards")) as c:
        yield c


def shard_clients(addresses):
    return [EmbeddingClient(address) for address in addresses]


def wait_until_answering(client, table, timeout=10.0, lookup=None):
    """get_table (or the lookup of rows `lookup`) once UNAVAILABLE ends."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if lookup is not None:
                return client.lookup(table, lookup)
            return client.get_table(table)
        except UnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_down_shard_fails_only_the_calls_that_need_it(cluster):
    rng = np.random.default_rng(0)
    grad = rng.normal(size=(3, DIM)).astype(np.float32)
    with EmbeddingClient(cluster.addresses,
                         channel_options=FAST_RECONNECT) as client, \
            ServerProcess() as reference_server, \
            EmbeddingClient(reference_server.address) as single:
        for c in (client, single):
            c.create_table("down", ROWS, DIM, optimizer={"type": "adagrad",
                                                         "lr": 0.5})
        client.save_checkpoint("down")
        before = client.lookup("down", np.arange(ROWS))
        down = cluster.servers[1]
        down.kill()
        with pytest.raises(UnavailableError) as error:
            client.lookup("down", [0, 4, 2])  # 4 lives on shard 1.
        assert error.value.message.startswith(f"shard 1 ({down.address}): ")
        np.testing.assert_array_equal(client.lookup("down", [3, 0, 8, 2]),
                                      before[[3, 0, 8, 2]])

        # A push needs every shard: shards 0 and 2 apply it, 1 does not.
        with pytest.raises(UnavailableError) as error:
            client.push_gradients("down", [0, 1, 2], grad)
        assert f"shard 1 ({down.address})" in error.value.message
        sequence = error.value.sequence

        down.start(same_port=True)  # Restores the checkpoint.
        wait_until_answering(client.shards[1], "down")
        # Shard 1 answers as before; 0 and 2 hold the half-applied push.
        its_rows = np.arange(1, ROWS, 3)
        np.testing.assert_array_equal(client.lookup("down", its_rows),
                                      before[its_rows])
        retried = client.push_gradients("down", [0, 1, 2], grad,
                                        sequence=sequence)
        assert not retried.duplicate and retried.rows_updated == 1
        single.push_gradients("down", [0, 1, 2], grad)
        np.testing.assert_array_equal(client.read_rows("down"),
                                      single.read_rows("down"))
        assert [info.step for info in client.shard_tables("down")] == [1] * 3
        # Once more: a duplicate everywhere.
        assert client.push_gradients("down", [0, 1, 2], grad,
                                     sequence=sequence).duplicate
        client.delete_table("down")


def test_a_new_client_works_while_a_shard_is_down(cluster):
    with EmbeddingClient(cluster.addresses) as client:
        client.create_table("lazy", ROWS, DIM)
        client.save_checkpoint("lazy")
        before = client.lookup("lazy", np.arange(ROWS))
    down = cluster.servers[1]
    down.kill()
    try:
        # Made while shard 1 is down: the spec comes from shards 0 and 2.
        with EmbeddingClient(cluster.addresses,
                             channel_options=FAST_RECONNECT) as client:
            np.testing.assert_array_equal(
                client.lookup("lazy", [3, 0, 8, 2]), before[[3, 0, 8, 2]])
            np.testing.assert_array_equal(
                client.read_rows("lazy", [5, 9]), before[[5, 9]])
            with pytest.raises(UnavailableError) as error:
                client.lookup("lazy", [0, 4])  # 4 lives on shard 1.
            assert error.value.message.startswith(
                f"shard 1 ({down.address}): ")
            with pytest.raises(UnavailableError) as error:  # Every shard.
                client.push_gradients("lazy", [0], np.ones((1, DIM)))
            assert f"shard 1 ({down.address}): " in error.value.message

            # Shard 1 is checked when first reached: a server of another
            # cluster in its place is refused.
            stranger = ServerProcess("--shard_index=1", "--shard_count=2")
            stranger.port = down.port
            try:
                stranger.start(same_port=True)
                with EmbeddingClient(stranger.address) as direct:
                    direct.create_table("lazy", ROWS, DIM)
                with pytest.raises(FailedPreconditionError) as error:
                    wait_until_answering(client, "lazy", lookup=[4])
                assert error.value.message == (
                    f"shard 1 ({down.address}): reports shard_index 1 of "
                    "shard_count 2, expected 1 of 3")
            finally:
                stranger.close()

            down.start(same_port=True)  # Restores the checkpoint.
            its_rows = np.arange(1, ROWS, 3)
            np.testing.assert_array_equal(
                wait_until_answering(client, "lazy", lookup=its_rows),
                before[its_rows])
            client.delete_table("lazy")
    finally:
        if not down.running():
            down.start(same_port=True)


def test_wrong_shard_order_is_refused_naming_the_server(cluster):
    with EmbeddingClient(cluster.addresses) as client:
        client.create_table("order", ROWS, DIM)
    swapped = [cluster.addresses[1], cluster.addresses[0],
               cluster.addresses[2]]
    with EmbeddingClient(swapped) as client:
        with pytest.raises(FailedPreconditionError) as error:
            client.lookup("order", [1])
    assert error.value.message == (
        f"shard 0 ({swapped[0]}): reports shard_index 1 of shard_count 3, "
        "expected 0 of 3")


def test_a_server_of_another_cluster_size_is_refused(cluster):
    with ServerProcess("--shard_index=1", "--shard_count=2") as stranger:
        addresses = [cluster.addresses[0], stranger.address,
                     cluster.addresses[2]]
        with EmbeddingClient(addresses) as client:
            with pytest.raises(FailedPreconditionError) as error:
                client.create_table("size", ROWS, DIM)
            assert error.value.message == (
                f"shard 1 ({stranger.address}): reports shard_index 1 of "
                "shard_count 2, expected 1 of 3")
        # Undone on every shard where it was created.
        for shard in shard_clients(addresses):
            with shard:
                assert "size" not in {t.name for t in shard.list_tables()}


def test_a_shard_with_another_spec_is_refused(cluster):
    for k, shard in enumerate(shard_clients(cluster.addresses)):
        with shard:
            shard.create_table("spec", ROWS, DIM, seed=7 if k == 2 else 1)
    with EmbeddingClient(cluster.addresses) as client:
        with pytest.raises(FailedPreconditionError) as error:
            client.lookup("spec", [0])
        assert error.value.message == (
            f"shard 2 ({cluster.addresses[2]}): table 'spec' differs from "
            "shard 0 in seed: 7 vs 1")
        client.delete_table("spec")


def test_create_failing_on_one_shard_leaves_nothing_on_the_others(cluster):
    with EmbeddingClient(cluster.addresses[1]) as shard1:
        shard1.create_table("taken", ROWS, 8)
    with EmbeddingClient(cluster.addresses) as client:
        with pytest.raises(AlreadyExistsError) as error:
            client.create_table("taken", ROWS, DIM)
        assert error.value.message.startswith(
            f"shard 1 ({cluster.addresses[1]}): ")
    dims = {}
    for k, shard in enumerate(shard_clients(cluster.addresses)):
        with shard:
            dims[k] = {t.name: t.embedding_dim
                       for t in shard.list_tables()}.get("taken")
    # Shard 1's own table stays; this call created none elsewhere.
    assert dims == {0: None, 1: 8, 2: None}


def test_create_over_one_shards_memory_budget_leaves_nothing(tmp_path):
    servers = [ServerProcess(f"--shard_index={k}", "--shard_count=3",
                             *(["--memory_budget_bytes=1000"] if k == 2
                               else []))
               for k in range(3)]
    for server in servers:
        server.start()
    try:
        addresses = [server.address for server in servers]
        with EmbeddingClient(addresses) as client:
            with pytest.raises(ResourceExhaustedError) as error:
                client.create_table("big", 3000, 16)
            assert error.value.message.startswith(
                f"shard 2 ({addresses[2]}): ")
            assert client.list_tables() == []
    finally:
        for server in servers:
            server.close()
