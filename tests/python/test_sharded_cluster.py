"""The sharded Python client over 3 real servers equals one real server.

Every table is created twice with the same spec and seed: on a 3-shard
Cluster (through EmbeddingClient(list of addresses)) and on one server
holding the whole table. Every call then runs on both, and the results must
be identical, bit for bit (np.testing.assert_array_equal); PyTorch
(tests/conformance/oracle.py) checks lookups, bags and an optimizer too.
"""

import numpy as np
import pytest
import torch

from embedding_client import (OPTIMIZERS, Adagrad, EmbeddingClient,
                              InvalidArgumentError, PushResult,
                              SparseAdam)
from embedding_client.sharded import ShardedClient
from tests.conformance.oracle import Opt, TorchTable, assert_close
from tests.testing.cluster import Cluster
from tests.testing.server_process import ServerProcess

ROWS, DIM = 23, 5


@pytest.fixture(scope="module")
def cluster():
    with Cluster(3) as servers:
        yield servers


@pytest.fixture(scope="module")
def sharded(cluster):
    with EmbeddingClient(cluster.addresses) as client:
        yield client


@pytest.fixture(scope="module")
def single():
    with ServerProcess() as server:
        with EmbeddingClient(server.address) as client:
            yield client


@pytest.fixture
def twin(sharded, single, table):
    """Creates `table` on both with the same arguments; returns its name."""
    def create(*args, **kwargs):
        for client in (sharded, single):
            client.create_table(table, *args, **kwargs)
        return table
    return create


def assert_same(got, expected):
    """Equal results: arrays bit for bit with the same dtype; a PushResult's
    rows and duplicate flag (versions count per shard)."""
    if isinstance(got, tuple):
        assert len(got) == len(expected)
        for mine, theirs in zip(got, expected):
            assert_same(mine, theirs)
    elif isinstance(got, PushResult):
        assert (got.rows_updated, got.duplicate) == (
            expected.rows_updated, expected.duplicate)
    elif got is None or isinstance(got, int):
        assert got == expected
    else:
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def both(sharded, single, method, *args, **kwargs):
    """Calls `method` on both clients; asserts equal results; returns one."""
    got = getattr(sharded, method)(*args, **kwargs)
    assert_same(got, getattr(single, method)(*args, **kwargs))
    return got


def test_a_list_of_addresses_is_a_sharded_embedding_client(cluster):
    with EmbeddingClient(cluster.addresses) as client:
        assert isinstance(client, EmbeddingClient)
        assert isinstance(client, ShardedClient)
        assert client.addresses == cluster.addresses
    with EmbeddingClient(cluster.addresses[:1]) as one:
        assert type(one) is EmbeddingClient
        assert one.address == cluster.addresses[0]


def test_sharded_client_overrides_every_server_method():
    # An EmbeddingClient method that ShardedClient inherits would talk to
    # no server: every public one must be its own (the file transfers
    # excepted: they are built on get_table, read_rows and write_rows).
    inherited = {name for name in dir(EmbeddingClient)
                 if not name.startswith("_") and callable(
                     getattr(EmbeddingClient, name))
                 and getattr(ShardedClient, name) is getattr(EmbeddingClient,
                                                             name)}
    assert inherited == {"import_npy", "export_npy", "import_npz",
                         "export_npz"}


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2)])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_lookup_equals_one_server(sharded, single, twin, shape, dtype):
    table = twin(ROWS, DIM, seed=3)
    rng = np.random.default_rng(0)
    indices = rng.integers(0, ROWS, size=shape)
    indices.flat[-1] = indices.flat[0]  # A repeat.
    rows = both(sharded, single, "lookup", table, indices, dtype=dtype)
    assert rows.shape == shape + (DIM,)


def test_lookup_with_max_norm_renorms_as_one_server(sharded, single, twin):
    table = twin(ROWS, DIM, max_norm=1.5, norm_type=1.0, seed=4)
    indices = [[0, 4, 4, 22], [9, 1, 0, 13]]
    for _ in range(2):
        both(sharded, single, "lookup", table, indices)
    both(sharded, single, "read_rows", table)


def test_lookup_and_bags_agree_with_torch(sharded):
    ref = TorchTable(ROWS, DIM, padding_idx=4, max_norm=2.0, seed=5)
    sharded.create_table("torch_oracle", ROWS, DIM, padding_idx=4,
                         max_norm=2.0, weights=ref.weight.numpy())
    indices = np.array([[1, 4, 7], [22, 1, 3]])
    assert_close(sharded.lookup("torch_oracle", indices), ref.lookup(indices))
    flat, offsets = np.array([2, 4, 5, 11, 4, 20, 6]), np.array([0, 3, 3, 5])
    for mode in ("sum", "mean", "max"):
        got, winners = sharded.lookup_bag("torch_oracle", flat, offsets,
                                          mode=mode, return_max_indices=True)
        expected, expected_winners = ref.lookup_bag(flat, offsets, mode)
        assert_close(got, expected, mode)
        if mode == "max":
            np.testing.assert_array_equal(winners, expected_winners)


BAGS = [
    # indices, offsets, include_last_offset
    ([1, 2, 4, 5, 4, 9, 22, 3], [0, 3, 3, 6], False),  # An empty bag.
    ([7, 7, 8, 0, 11], [0, 2, 5], True),  # Last offset closes the last bag.
    ([4, 4], [0, 2, 2], False),  # Padding only, then an empty bag.
]


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("bag", range(len(BAGS)))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lookup_bag_equals_one_server(sharded, single, twin, mode, bag,
                                      dtype):
    table = twin(ROWS, DIM, padding_idx=4, seed=6)
    indices, offsets, last = BAGS[bag]
    got = both(sharded, single, "lookup_bag", table, indices, offsets,
               mode=mode, include_last_offset=last, dtype=dtype,
               return_max_indices=True)
    assert (got[1] is None) == (mode != "max")


def test_weighted_bags_equal_one_server(sharded, single, twin):
    table = twin(ROWS, DIM, padding_idx=4, seed=7)
    indices, offsets = [3, 4, 10, 13, 22, 3, 5], [0, 2, 2, 7]
    weights = np.random.default_rng(1).normal(size=7).astype(np.float32)
    both(sharded, single, "lookup_bag", table, indices, offsets, mode="sum",
         per_sample_weights=weights)
    both(sharded, single, "push_bag_gradients", table, indices, offsets,
         np.random.default_rng(2).normal(size=(4, DIM)), mode="sum",
         per_sample_weights=weights, sequence=1)
    both(sharded, single, "read_rows", table)


def push_round(sharded, single, table, rng, step):
    """One step of pushes on both: rows of shards 0 and 2 only at step 1
    (shard 1 gets an empty push), repeats and the padding row."""
    indices = (np.array([[0, 3, 5], [5, 2, 0]]) if step == 1 else
               rng.integers(0, ROWS, size=(2, 4)))
    grad = rng.normal(size=indices.shape + (DIM,)).astype(np.float32)
    got = sharded.push_gradients(table, indices, grad, sequence=step)
    expected = single.push_gradients(table, indices, grad, sequence=step)
    assert got.rows_updated == expected.rows_updated
    assert not got.duplicate


@pytest.mark.parametrize("kind", [kind.name for kind in OPTIMIZERS])
def test_pushes_with_every_optimizer_equal_one_server(sharded, single, twin,
                                                      kind):
    optimizer = {"type": kind, "lr": 0.1}
    if kind == "adagrad":
        optimizer["lr_decay"] = 0.1  # Depends on the step count.
    table = twin(ROWS, DIM, padding_idx=2, optimizer=optimizer, seed=8)
    rng = np.random.default_rng(3)
    for step in range(1, 5):
        push_round(sharded, single, table, rng, step)
    both(sharded, single, "read_rows", table)
    assert [info.step for info in sharded.shard_tables(table)] == [4] * 3
    info = sharded.get_table(table)
    assert (info.step, info.shard_count, info.local_rows) == (4, 3, ROWS)


def test_adagrad_pushes_agree_with_torch(sharded):
    opt = Opt("adagrad", lr=0.1, lr_decay=0.05)
    ref = TorchTable(ROWS, DIM, optimizer=opt, seed=9)
    sharded.create_table("torch_adagrad", ROWS, DIM,
                         optimizer=Adagrad(lr=0.1, lr_decay=0.05),
                         weights=ref.weight.numpy())
    rng = np.random.default_rng(4)
    for _ in range(3):
        indices = rng.integers(0, ROWS, size=6)
        grad = rng.normal(size=(6, DIM)).astype(np.float32)
        sharded.push_gradients("torch_adagrad", indices, grad)
        ref.push(indices, torch.from_numpy(grad))
    assert_close(sharded.read_rows("torch_adagrad"), ref.weight)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_bag_pushes_equal_one_server(sharded, single, twin, mode):
    table = twin(ROWS, DIM, padding_idx=4, optimizer=SparseAdam(lr=0.1),
                 seed=10)
    indices, offsets = [1, 4, 7, 7, 9, 22, 4, 15], [0, 3, 3, 8]
    rng = np.random.default_rng(5)
    for step in range(1, 4):
        _, winners = both(sharded, single, "lookup_bag", table, indices,
                          offsets, mode=mode, return_max_indices=True)
        grad = rng.normal(size=(4, DIM)).astype(np.float32)
        both(sharded, single, "push_bag_gradients", table, indices, offsets,
             grad, mode=mode, max_indices=winners, sequence=step)
    both(sharded, single, "read_rows", table)


def test_scale_grad_by_freq_bag_push_equals_one_server(sharded, single, twin):
    table = twin(ROWS, DIM, scale_grad_by_freq=True, seed=11)
    indices, offsets = [1, 1, 7, 1, 8], [0, 2]
    grad = np.random.default_rng(6).normal(size=(2, DIM))
    both(sharded, single, "push_bag_gradients", table, indices, offsets,
         grad, mode="mean", sequence=1)
    both(sharded, single, "read_rows", table)


@pytest.mark.parametrize("mode, weighted",
                         [("sum", False), ("sum", True), ("mean", False)])
def test_scale_grad_by_freq_counts_indices_past_the_last_bag(
        sharded, single, twin, mode, weighted):
    """With include_last_offset, indices past the last offset are in no bag,
    but the server's scale_grad_by_freq counts a row over all of `indices`
    (as torch's backward counts over the indices tensor it gets; torch 1.13
    cannot be the oracle here, its CPU backward reads past the bag
    gradients for such indices): the shards must count them too."""
    # SGD (the default): its step is in proportion to the gradient, so a
    # wrong count shows (Adagrad's steps do not change when every gradient
    # of a row is scaled alike).
    table = twin(ROWS, DIM, padding_idx=4, scale_grad_by_freq=True, seed=12)
    # Bags [0, 1], [], [8, 1, 14, 4] over the 3 shards; past the last bag,
    # the pooled rows 1 (twice) and 8, the padding row and row 22, which no
    # bag pools (no gradient: not updated).
    indices = [0, 1, 8, 1, 14, 4, 1, 8, 4, 22, 1]
    offsets = [0, 2, 2, 6]
    rng = np.random.default_rng(13)
    weights = (rng.normal(size=len(indices)).astype(np.float32)
               if weighted else None)
    for step in range(1, 3):
        grad = rng.normal(size=(3, DIM)).astype(np.float32)
        result = both(sharded, single, "push_bag_gradients", table, indices,
                      offsets, grad, mode=mode, per_sample_weights=weights,
                      include_last_offset=True, sequence=step)
        assert result.rows_updated == 4  # 0, 1, 8 and 14.
    both(sharded, single, "read_rows", table)


def test_rows_by_index_and_range_equal_one_server(sharded, single, twin):
    table = twin(ROWS, DIM, seed=12)
    rng = np.random.default_rng(7)
    values = rng.normal(size=(4, DIM)).astype(np.float32)
    assert both(sharded, single, "write_rows", table, values,
                [20, 1, 5, 9]) == 4
    assert both(sharded, single, "write_rows", table, values,
                start_row=10) == 4
    both(sharded, single, "read_rows", table, [22, 1, 10, 1, 13])
    both(sharded, single, "read_rows", table, start_row=4, end_row=17)
    ids, _ = both(sharded, single, "read_rows", table, start_row=7,
                  return_indices=True)
    np.testing.assert_array_equal(ids, np.arange(7, ROWS))


def test_create_with_weights_equals_one_server(sharded, single, table):
    weights = np.random.default_rng(8).normal(size=(ROWS, DIM))
    for client in (sharded, single):
        client.create_table(table, ROWS, DIM, padding_idx=-1,
                            weights=weights)
    rows = both(sharded, single, "read_rows", table)
    np.testing.assert_array_equal(rows[:-1], weights[:-1].astype(np.float32))


def test_create_with_weights_larger_than_a_message(cluster, table):
    # 1 MiB messages: 40000 rows of 8 floats take several.
    with EmbeddingClient(cluster.addresses,
                         max_message_bytes=1 << 20) as client:
        weights = np.random.default_rng(9).normal(size=(40000, 8)).astype(
            np.float32)
        client.create_table(table, 40000, 8, weights=weights)
        np.testing.assert_array_equal(client.read_rows(table), weights)
        np.testing.assert_array_equal(
            client.lookup(table, [39999, 0, 20001]),
            weights[[39999, 0, 20001]])


def test_export_and_import_equal_one_server(sharded, single, twin, tmp_path):
    table = twin(ROWS, DIM, seed=13)
    sharded.export_npy(table, tmp_path / "sharded.npy")
    single.export_npy(table, tmp_path / "single.npy")
    assert ((tmp_path / "sharded.npy").read_bytes() ==
            (tmp_path / "single.npy").read_bytes())
    reversed_rows = np.load(tmp_path / "single.npy")[::-1].copy()
    np.save(tmp_path / "reversed.npy", reversed_rows)
    assert sharded.import_npy(table, tmp_path / "reversed.npy") == ROWS
    np.testing.assert_array_equal(sharded.read_rows(table), reversed_rows)


@pytest.mark.parametrize("call, args", [
    ("lookup", ([[1, 23], [0, -1]],)),
    ("push_gradients", ([1, 30], np.zeros((2, DIM)))),
    ("push_gradients", ([1, 2], np.full((2, DIM), np.nan))),
    ("push_gradients", ([1, 2], np.zeros((3, DIM)))),
    ("lookup_bag", ([1, 2], [0, 3])),
    ("lookup_bag", ([1, 2], [1])),
    ("lookup_bag", ([1, 2], [0, 2, 1])),
    ("write_rows", (np.zeros((2, DIM)), [3, 3])),
    ("write_rows", (np.zeros((2, DIM)), [3, 99])),
])
def test_bad_requests_fail_as_on_one_server_and_change_nothing(
        sharded, single, twin, call, args):
    table = twin(ROWS, DIM, seed=14)
    errors = []
    for client in (sharded, single):
        with pytest.raises(InvalidArgumentError) as error:
            getattr(client, call)(table, *args)
        errors.append(error.value.message)
    assert errors[0] == errors[1]
    assert [info.version for info in sharded.shard_tables(table)] == [0] * 3


def test_bag_errors_match_one_server(sharded, single, twin):
    table = twin(ROWS, DIM, seed=15)
    cases = [dict(mode="mean", per_sample_weights=[1.0, 2.0]),
             dict(mode="sum", per_sample_weights=[1.0]),
             dict(mode="sum", per_sample_weights=[1.0, np.inf])]
    for kwargs in cases:
        errors = []
        for client in (sharded, single):
            with pytest.raises(InvalidArgumentError) as error:
                client.lookup_bag(table, [1, 2], [0], **kwargs)
            errors.append(error.value.message)
        assert errors[0] == errors[1], kwargs
    errors = []
    for client in (sharded, single):
        with pytest.raises(InvalidArgumentError) as error:
            client.push_bag_gradients(table, [1, 2], [0], np.ones((1, DIM)),
                                      mode="max", max_indices=[[1, 2, 3, 1,
                                                                9]])
        errors.append(error.value.message)
    assert errors[0] == errors[1]


def test_tables_are_listed_and_deleted_on_every_shard(sharded, cluster, twin,
                                                      table):
    twin(ROWS, DIM, seed=16)
    listed = {info.name: info for info in sharded.list_tables()}
    assert listed[table].num_embeddings == ROWS
    assert listed[table].shard_count == 3
    sharded.delete_table(table)
    for address in cluster.addresses:
        with EmbeddingClient(address) as shard:
            assert table not in {info.name for info in shard.list_tables()}


def test_remote_embedding_bag_trains_as_on_one_server(sharded, single, twin):
    from embedding_client.nn import RemoteEmbeddingBag
    table = twin(ROWS, DIM, padding_idx=0, optimizer=Adagrad(lr=0.2),
                 seed=17)
    indices = torch.tensor([3, 0, 8, 8, 21, 5, 13])
    offsets = torch.tensor([0, 2, 2, 5])
    for client in (sharded, single):
        bag = RemoteEmbeddingBag(client, table, mode="max")
        for _ in range(2):
            bag(indices, offsets).square().sum().backward()
    both(sharded, single, "read_rows", table)
