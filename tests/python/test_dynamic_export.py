"""export_npz / import_npz of dynamic tables (real servers): the export
holds exactly the ids pushed, with the rows a numpy replay of SGD from the
initializer's rows gives; numpy.load reads it; an import into a fresh
dynamic table admits every id (admit_after aside) and lookups then equal
the export; a held row is overwritten; one server and a 3-server cluster.
"""

import numpy as np
import pytest

from embedding_client import (SGD, EmbeddingClient, FailedPreconditionError,
                              InvalidArgumentError, ResourceExhaustedError,
                              Uniform)
from embedding_client.options import Dynamic
from tests.testing.cluster import Cluster
from tests.testing.initializer_model import fill_rows

DIM = 4
LR = 0.5
SEED = 3
INIT = Uniform(-1.0, 1.0)
# Raw ids: large, negative, small.
POOL = np.array([10**12 + k for k in range(40)] + [-7, 0, 5, -(10**15)],
                np.int64)


@pytest.fixture(scope="module")
def sharded():
    """A client of a 3-server cluster."""
    with Cluster(3) as cluster:
        with EmbeddingClient(cluster.addresses) as client:
            yield client


def _create(client, table, admit_after=1):
    client.create_table(table, None, DIM, optimizer=SGD(lr=LR),
                        initializer=INIT, seed=SEED,
                        dynamic=Dynamic(256, admit_after=admit_after))


def _train(client, table):
    """Pushes random batches of POOL; returns {id: row} replayed in numpy
    (SGD from FillRow, admit_after 1: every pushed id holds a row)."""
    rng = np.random.default_rng(5)
    rows = {}
    for _ in range(5):
        ids = rng.choice(POOL, size=9)
        grad = rng.standard_normal((len(ids), DIM)).astype(np.float32)
        client.push_gradients(table, ids, grad)
        summed = {}
        for id_, g in zip(ids.tolist(), grad):
            summed[id_] = summed.get(id_, 0) + g.astype(np.float32)
        for id_, g in summed.items():
            if id_ not in rows:
                rows[id_] = fill_rows("uniform", -1.0, 1.0, SEED, [id_],
                                      DIM)[0]
            rows[id_] = (rows[id_] - np.float32(LR) * g).astype(np.float32)
    return rows


def _check_export(client, table, tmp_path):
    """Trains `table`, exports it and checks the file; returns it loaded."""
    expected = _train(client, table)
    path = tmp_path / f"{table}.npz"
    assert client.export_npz(table, path) == len(expected)
    assert not (tmp_path / f"{table}.npz.partial").exists()
    with np.load(path) as archive:
        assert sorted(archive.files) == ["ids", "weights"]
        ids, weights = archive["ids"], archive["weights"]
    assert ids.dtype == np.int64 and weights.dtype == np.float32
    assert weights.shape == (len(expected), DIM)
    assert sorted(ids.tolist()) == sorted(expected)
    for id_, row in zip(ids.tolist(), weights):
        np.testing.assert_allclose(row, expected[id_], rtol=1e-6, atol=1e-6)
    # The file holds what lookups of those ids return.
    np.testing.assert_array_equal(weights, client.lookup(table, ids))
    return path, ids, weights


@pytest.mark.parametrize("kind", ["one_server", "sharded"])
def test_export_then_import_into_a_fresh_table(client, sharded, table,
                                               tmp_path, kind):
    client = client if kind == "one_server" else sharded
    _create(client, table)
    path, ids, weights = _check_export(client, table, tmp_path)
    # admit_after does not apply to an import: every id gets a row.
    _create(client, table + "_copy", admit_after=5)
    assert client.import_npz(table + "_copy", path) == len(ids)
    np.testing.assert_array_equal(client.lookup(table + "_copy", POOL),
                                  client.lookup(table, POOL))
    stats = client.get_table(table + "_copy").dynamic_stats
    assert stats.rows_held == len(ids)
    assert stats.admissions == len(ids) and stats.evictions == 0
    copy_ids, copy_weights = client.read_rows(table + "_copy",
                                              return_indices=True)
    order, copy_order = np.argsort(ids), np.argsort(copy_ids)
    np.testing.assert_array_equal(copy_ids[copy_order], ids[order])
    np.testing.assert_array_equal(copy_weights[copy_order], weights[order])


def test_import_overwrites_held_rows(client, table, tmp_path):
    _create(client, table)
    client.push_gradients(table, [1, 2], np.ones((2, DIM), np.float32))
    path = tmp_path / "rows.npz"
    new = np.arange(3 * DIM, dtype=np.float32).reshape(3, DIM)
    np.savez(path, ids=np.array([2, 3, 10**12], np.int64), weights=new)
    assert client.import_npz(table, path) == 3
    np.testing.assert_array_equal(client.lookup(table, [2, 3, 10**12]), new)
    stats = client.get_table(table).dynamic_stats
    assert stats.rows_held == 4 and stats.admissions == 4


def test_empty_table_exports_an_empty_file(client, table, tmp_path):
    _create(client, table)
    assert client.export_npz(table, tmp_path / "e.npz") == 0
    with np.load(tmp_path / "e.npz") as archive:
        assert archive["ids"].shape == (0,)
        assert archive["weights"].shape == (0, DIM)
    assert client.import_npz(table, tmp_path / "e.npz") == 0


def test_bad_files_are_refused_before_any_write(client, table, tmp_path):
    _create(client, table)
    cases = {
        "ids.npz": ({"weights": np.zeros((1, DIM), np.float32)},
                    "no ids array"),
        "dtype.npz": ({"ids": np.zeros(1, np.int32),
                       "weights": np.zeros((1, DIM), np.float32)},
                      "ids is <i4"),
        "float64.npz": ({"ids": np.zeros(1, np.int64),
                         "weights": np.zeros((1, DIM))}, "weights is <f8"),
        "count.npz": ({"ids": np.zeros(2, np.int64),
                       "weights": np.zeros((1, DIM), np.float32)},
                      "2 ids for 1 rows"),
        "dim.npz": ({"ids": np.zeros(1, np.int64),
                     "weights": np.zeros((1, DIM + 1), np.float32)},
                    "5 columns"),
        "twice.npz": ({"ids": np.array([4, 4], np.int64),
                       "weights": np.zeros((2, DIM), np.float32)},
                      "written twice"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(InvalidArgumentError, match=message):
            client.import_npz(table, tmp_path / name)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(InvalidArgumentError, match="text.npz"):
        client.import_npz(table, tmp_path / "text.npz")
    assert client.get_table(table).dynamic_stats.rows_held == 0


def test_npy_transfers_point_to_npz(client, table, tmp_path):
    _create(client, table)
    with pytest.raises(FailedPreconditionError, match="export_npz"):
        client.export_npy(table, tmp_path / "t.npy")


def test_import_of_more_ids_than_a_stripe_holds_changes_nothing(client, table,
                                                                tmp_path):
    # Capacity 8 is one stripe of 8 rows: 9 ids cannot all hold a row.
    client.create_table(table, None, DIM, dynamic=Dynamic(8))
    client.import_npz(table, _save(tmp_path / "one.npz", [5]))
    with pytest.raises(ResourceExhaustedError, match="9 ids of the write"):
        client.import_npz(table, _save(tmp_path / "nine.npz", range(9)))
    stats = client.get_table(table).dynamic_stats
    assert (stats.rows_held, stats.admissions) == (1, 1)


def test_import_into_a_full_table_evicts_the_least_recent(client, table,
                                                          tmp_path):
    client.create_table(table, None, DIM, optimizer=SGD(lr=LR),
                        initializer=INIT, seed=SEED, dynamic=Dynamic(8))
    client.push_gradients(table, np.arange(8),
                          np.zeros((8, DIM), np.float32))
    client.push_gradients(table, np.arange(3), np.zeros((3, DIM), np.float32))
    # 3..7 were pushed least recently: the import evicts them.
    new = [10**12 + k for k in range(5)]
    client.import_npz(table, _save(tmp_path / "new.npz", new))
    held, _ = client.read_rows(table, return_indices=True)
    assert sorted(held.tolist()) == [0, 1, 2] + new
    np.testing.assert_array_equal(
        client.lookup(table, [3]),
        fill_rows("uniform", -1.0, 1.0, SEED, [3], DIM))
    stats = client.get_table(table).dynamic_stats
    assert (stats.rows_held, stats.evictions) == (8, 5)


def test_range_writes_are_refused(client, table):
    _create(client, table)
    with pytest.raises(InvalidArgumentError, match="write rows by ids"):
        client.write_rows(table, np.zeros((2, DIM), np.float32))


def _save(path, ids):
    """A .npz of `ids` with rows [id % 7, ...]; returns its path."""
    ids = np.array(list(ids), np.int64)
    np.savez(path, ids=ids,
             weights=np.repeat((ids % 7).astype(np.float32)[:, None], DIM,
                               axis=1))
    return path
