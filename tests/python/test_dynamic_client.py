"""The Python client on dynamic tables (real servers): create / get / list /
delete, the Dynamic options and their checks, the reserved id, the sharded
client's hash routing over 3 servers (equal to one server holding every
row), and RemoteEmbedding(push="backward") training on raw int64 ids against
a local nn.Embedding started from the same FillRow rows (torch as oracle).
"""

import dataclasses

import numpy as np
import pytest
import torch

from embedding_client import (SGD, Adagrad, EmbeddingClient,
                              FailedPreconditionError, InvalidArgumentError,
                              NotFoundError, RemoteEmbedding, Uniform)
from embedding_client._stubs import pb
from embedding_client.nn.state import StateDictUnavailableError
from embedding_client.options import Dynamic, DynamicStats
from embedding_client.routing import hash_owner_shards
from tests.testing.cluster import Cluster
from tests.testing.initializer_model import fill_rows
from tests.testing.server_process import ServerProcess

DIM = 4
INIT = Uniform(-1.0, 1.0)
INT64_MIN = -(2**63)
# Raw ids of every kind, distinct.
IDS = np.array([10**12 + k for k in range(6)] +
               [-1, -(10**15), 0, 7, 2**63 - 1, INT64_MIN + 1], np.int64)


# ---- tables -----------------------------------------------------------------

def test_create_get_list_delete(client, table):
    info = client.create_table(table, None, DIM, padding_idx=-1,
                               dynamic=Dynamic(100, admit_after=0,
                                               eviction="lfu",
                                               ttl_pushes=50))
    assert info.num_embeddings is None and info.padding_idx == -1
    # admit_after 0 means 1, as the server stores it.
    assert info.dynamic == Dynamic(100, 1, "lfu", 50)
    assert info.dynamic_stats == DynamicStats(0, 100, 0, 0, 0, 0, 0)
    assert info.local_rows == 0
    assert client.get_table(table) == info
    listed = {one.name: one for one in client.list_tables()}
    assert listed[table] == info
    client.delete_table(table)
    with pytest.raises(NotFoundError):
        client.get_table(table)


def test_dict_form_and_dense_tables_report_no_dynamic(client, table):
    info = client.create_table(table, None, DIM, dynamic={"capacity": 8})
    assert info.dynamic == Dynamic(8)
    dense = client.create_table(table + "d", 10, DIM)
    assert dense.dynamic is None and dense.dynamic_stats is None
    assert dense.num_embeddings == 10
    result = client.push_gradients(table + "d", [1, 1],
                                   np.ones((2, DIM), np.float32))
    assert (result.rows_updated, result.rows_admitted, result.rows_dropped,
            result.rows_evicted) == (1, 0, 0, 0)


BAD_OPTIONS = {
    "capacity_zero": (Dynamic(0),
                      "dynamic capacity must be in [1, 1099511627776], "
                      "got 0"),
    "capacity_too_big": (Dynamic(2**40 + 1),
                         "dynamic capacity must be in [1, 1099511627776], "
                         f"got {2**40 + 1}"),
    "admit_after_too_big": (Dynamic(8, admit_after=256),
                            "dynamic admit_after must be at most 255, got "
                            "256"),
    "ttl_zero": (Dynamic(8, ttl_pushes=0),
                 "dynamic ttl_pushes must be > 0 when set, got 0"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_bad_options_refused_locally_with_the_servers_message(client, table,
                                                               case):
    options, message = BAD_OPTIONS[case]
    with pytest.raises(InvalidArgumentError) as local:
        client.create_table(table, None, DIM, dynamic=options)
    assert local.value.message == message
    # A pb.DynamicTable goes out unchecked: the server says the same.
    raw = pb.DynamicTable(capacity=options.capacity,
                          admit_after=options.admit_after)
    if options.ttl_pushes is not None:
        raw.ttl_pushes = options.ttl_pushes
    with pytest.raises(InvalidArgumentError) as remote:
        client.create_table(table, None, DIM, dynamic=raw)
    assert remote.value.message == message


@pytest.mark.parametrize("options, match", [
    (Dynamic(8, eviction="fifo"), "eviction must be one of"),
    (Dynamic(8, admit_after=-1), "admit_after must be an int"),
    (Dynamic("8"), "capacity must be in"),
    ({"capacity": 8, "ttl": 3}, "takes capacity and optionally"),
    (8, "not dynamic table options"),
])
def test_malformed_options(client, table, options, match):
    with pytest.raises(InvalidArgumentError, match=match):
        client.create_table(table, None, DIM, dynamic=options)


def test_num_embeddings_and_weights_say_which_kind(client, table):
    with pytest.raises(InvalidArgumentError, match="must be None for a dyn"):
        client.create_table(table, 10, DIM, dynamic=Dynamic(8))
    with pytest.raises(InvalidArgumentError, match="dynamic=Dynamic"):
        client.create_table(table, None, DIM)
    with pytest.raises(InvalidArgumentError, match="takes no weights"):
        client.create_table(table, None, DIM, dynamic=Dynamic(8),
                            weights=np.zeros((8, DIM), np.float32))
    with pytest.raises(NotFoundError):
        client.get_table(table)


def test_whole_table_transfers_refused(client, table, tmp_path):
    client.create_table(table, None, DIM, dynamic=Dynamic(8))
    with pytest.raises(FailedPreconditionError, match="is dynamic"):
        client.export_npy(table, tmp_path / "t.npy")
    assert not list(tmp_path.iterdir())


def test_reserved_id_refused(client, table):
    client.create_table(table, None, DIM, dynamic=Dynamic(8))
    with pytest.raises(InvalidArgumentError) as error:
        client.lookup(table, [5, INT64_MIN])
    assert error.value.message == (
        f"index {INT64_MIN} at position 1 is reserved: no id of a dynamic "
        "table")


# ---- sharded: hash routing --------------------------------------------------

@pytest.fixture(scope="module")
def clients():
    """(a client of a 3-server cluster, a client of one server)."""
    with Cluster(3) as cluster, ServerProcess() as server:
        with EmbeddingClient(cluster.addresses) as sharded, \
                EmbeddingClient(server.address) as single:
            yield sharded, single


def test_sharded_equals_one_server(clients, table):
    """Lookups and pushes of raw ids over 3 shards give what one server of
    ample capacity gives, bit for bit; each shard holds exactly the pushed
    ids it owns, and the merged stats are the shards' sums."""
    sharded, single = clients
    capacity = 256
    for client in (sharded, single):
        client.create_table(table, None, DIM, padding_idx=-1,
                            optimizer=Adagrad(lr=0.2), initializer=INIT,
                            seed=11, dynamic=Dynamic(capacity))
    rng = np.random.default_rng(12)
    pool = np.concatenate([IDS, 10**12 + rng.integers(0, 10**6, 60)])
    pushed = set()
    for step in range(6):
        ids = rng.choice(pool, size=(3, 7))
        ids[0, 0] = -1  # The padding id.
        np.testing.assert_array_equal(sharded.lookup(table, ids),
                                      single.lookup(table, ids))
        grad = rng.standard_normal(ids.shape + (DIM,)).astype(np.float32)
        got = sharded.push_gradients(table, ids, grad)
        expected = single.push_gradients(table, ids, grad)
        for field in ("rows_updated", "rows_admitted", "rows_dropped",
                      "rows_evicted", "duplicate"):
            assert getattr(got, field) == getattr(expected, field), field
        pushed |= set(ids.ravel().tolist()) - {-1}
    np.testing.assert_array_equal(sharded.lookup(table, pool),
                                  single.lookup(table, pool))
    merged = sharded.get_table(table).dynamic_stats
    alone = single.get_table(table).dynamic_stats
    assert merged.rows_held == alone.rows_held == len(pushed)
    assert merged.admissions == alone.admissions == len(pushed)
    assert merged.capacity == 3 * capacity
    assert merged.evictions == alone.evictions == 0
    assert merged == DynamicStats.summed(
        [info.dynamic_stats for info in sharded.shard_tables(table)])
    # Each shard holds the pushed ids it owns: a lookup of them there finds
    # every one (no absent row counted); another shard's id is refused.
    pushed = np.array(sorted(pushed), np.int64)
    owners = hash_owner_shards(pushed, 3)
    for k, client in enumerate(sharded.shards):
        mine = pushed[owners == k]
        stats = client.get_table(table).dynamic_stats
        assert stats.rows_held == len(mine)
        client.lookup(table, mine)
        after = client.get_table(table).dynamic_stats
        assert after.absent_rows_looked_up == stats.absent_rows_looked_up
        with pytest.raises(InvalidArgumentError, match="belongs to shard"):
            client.lookup(table, pushed[owners != k][:1])


def test_sharded_stream_and_reads_route_by_hash(clients, table):
    """lookup_stream and read_rows by id over 3 shards equal one server."""
    sharded, single = clients
    for client in (sharded, single):
        client.create_table(table, None, DIM, initializer=INIT, seed=15,
                            optimizer=SGD(lr=0.5), dynamic=Dynamic(64))
        client.push_gradients(table, IDS[::2], np.ones((6, DIM), np.float32))
    batches = [IDS, IDS[::-1].reshape(3, 4), IDS[:1]]
    for got, expected in zip(sharded.lookup_stream(table, batches),
                             single.lookup_stream(table, batches)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(sharded.read_rows(table, IDS),
                                  single.read_rows(table, IDS))


def test_read_rows_without_ids_returns_every_held_row(clients, table):
    """read_rows of a whole dynamic table: every id holding a row, with its
    row, on one server and over 3 shards alike (sorted by id to compare);
    a range is refused, as a dynamic table has none."""
    sharded, single = clients
    pushed = np.concatenate([IDS, 10**12 + np.arange(40)])
    for client in (sharded, single):
        client.create_table(table, None, DIM, initializer=INIT, seed=16,
                            optimizer=SGD(lr=0.5), dynamic=Dynamic(64))
        client.push_gradients(table, pushed,
                              np.ones((pushed.size, DIM), np.float32))
    read = {}
    for name, client in (("sharded", sharded), ("single", single)):
        ids, rows = client.read_rows(table, return_indices=True)
        order = np.argsort(ids)
        read[name] = ids[order], rows[order]
        np.testing.assert_array_equal(read[name][0], np.unique(pushed))
        np.testing.assert_array_equal(read[name][1],
                                      client.lookup(table, read[name][0]))
    np.testing.assert_array_equal(read["sharded"][1], read["single"][1])
    for client in (sharded, single):
        with pytest.raises(InvalidArgumentError, match="no row range"):
            client.read_rows(table, start_row=1)


def test_sharded_reserved_id_refused_locally(clients, table):
    sharded, single = clients
    for client in (sharded, single):
        client.create_table(table, None, DIM, dynamic=Dynamic(8))
    ids = np.array([[1, 2], [INT64_MIN, 3]])
    messages = []
    for client in (sharded, single):
        with pytest.raises(InvalidArgumentError) as error:
            client.push_gradients(table, ids, np.zeros((2, 2, DIM),
                                                       np.float32))
        messages.append(error.value.message)
    assert messages[0] == messages[1]
    assert sharded.get_table(table).step == 0


def test_sharded_refuses_what_servers_do_not_serve(clients, table):
    sharded, _ = clients
    sharded.create_table(table, None, DIM, dynamic=Dynamic(8))
    with pytest.raises(InvalidArgumentError, match="no row range"):
        sharded.write_rows(table, np.zeros((2, DIM), np.float32))


# ---- RemoteEmbedding --------------------------------------------------------

@pytest.mark.parametrize("optimizer, torch_optimizer", [
    (SGD(lr=0.5), lambda params: torch.optim.SGD(params, lr=0.5)),
    (Adagrad(lr=0.3), lambda params: torch.optim.Adagrad(params, lr=0.3)),
])
def test_remote_embedding_trains_raw_ids_as_local_embedding(
        client, table, optimizer, torch_optimizer):
    """push="backward" on ids like 10**12 + k: forward and backward equal
    a local nn.Embedding whose rows start as FillRow of those ids."""
    client.create_table(table, None, DIM, optimizer=optimizer,
                        initializer=INIT, seed=13,
                        dynamic=Dynamic(1000))
    remote = RemoteEmbedding(client, table)
    local = torch.nn.Embedding(len(IDS), DIM, sparse=True, _weight=(
        torch.from_numpy(fill_rows("uniform", -1.0, 1.0, 13, IDS, DIM))))
    local_optimizer = torch_optimizer(local.parameters())
    position = {int(key): k for k, key in enumerate(IDS)}
    rng = np.random.default_rng(14)
    for step in range(5):
        ids = rng.choice(IDS, size=(2, 5))
        positions = torch.tensor([[position[int(key)] for key in row]
                                  for row in ids])
        target = torch.from_numpy(
            rng.standard_normal((2, 5, DIM)).astype(np.float32))
        got = remote(torch.from_numpy(ids))
        expected = local(positions)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        ((got - target) ** 2).sum().backward()
        local_optimizer.zero_grad()
        ((expected - target) ** 2).sum().backward()
        local_optimizer.step()
    with torch.no_grad():
        torch.testing.assert_close(remote(torch.from_numpy(IDS)),
                                   local.weight, rtol=1e-5, atol=1e-5)
    assert client.get_table(table).step == 5


def test_remote_embedding_refuses_what_dynamic_tables_cannot_do(client,
                                                                table):
    client.create_table(table, None, DIM, dynamic=Dynamic(8))
    with pytest.raises(ValueError, match="push='step'"):
        RemoteEmbedding(client, table, push="step")
    remote = RemoteEmbedding(client, table)
    with pytest.raises(StateDictUnavailableError, match="is dynamic"):
        remote.state_dict()
    with pytest.raises(FailedPreconditionError, match="is dynamic"):
        remote.to_embedding()
    quiet = RemoteEmbedding(client, table, state_dict_weights=False)
    assert dict(quiet.state_dict()) == {}
    identity = quiet.identity()
    assert identity["dynamic"] == Dynamic(8)
    assert identity["num_embeddings"] is None


def test_dynamic_stats_fields_match_the_proto():
    assert [field.name for field in dataclasses.fields(DynamicStats)] == [
        field.name for field in pb.DynamicStats.DESCRIPTOR.fields]
