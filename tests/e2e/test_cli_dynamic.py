"""Dynamic tables (any int64 id) through embedding_cli against real
embedding_server processes: create-table --capacity, lookups and pushes of
raw ids, describe's counters, the flags' errors, a 3-shard cluster whose
lookups equal one server's, and export / import of .npz files (ids and
rows) that numpy.load reads."""

import re

import numpy as np

import pytest

from tests.e2e.cli_runner import Cli, parse_fields, parse_rows
from tests.testing.cluster import Cluster
from tests.testing.server_process import ServerProcess

BIG = 1000000000005  # 10**12 + 5
RESERVED = -2**63
DYNAMIC = ["--capacity=100", "--embedding_dim=2", "--initializer=constant:0.5",
           "--optimizer=sgd", "--lr=1"]


def describe_lines(cli, name):
    return cli.ok("describe", name).splitlines()


def test_create_push_lookup_describe(cli):
    out = cli.ok("create-table", "clicks", *DYNAMIC, "--admit_after=2",
                 "--eviction=lfu", "--ttl_pushes=50", "--padding_idx=-7")
    assert out.startswith("created table clicks\n")
    fields = parse_fields(out)
    assert fields["dynamic"] == ("capacity=100, admit_after=2, eviction=lfu, "
                                 "ttl_pushes=50")
    assert "num_embeddings" not in fields
    assert fields["padding_idx"] == "-7"  # An id, not counted from an end.

    # Absent ids read the initializer's value.
    shape, rows = parse_rows(cli.ok("lookup", "clicks", f"--indices={BIG},-3"))
    assert shape == [2, 2]
    assert rows == [(str(BIG), [0.5, 0.5]), ("-3", [0.5, 0.5])]

    # admit_after=2: the first push counts and drops, the second admits.
    push = ["push", "clicks", f"--indices={BIG},-3", "--grad=1,1,2,2"]
    first = cli.ok(*push)
    assert re.fullmatch(r"pushed to clicks: 0 rows updated, version \d+; "
                        r"0 admitted, 2 dropped, 0 evicted\n", first), first
    second = cli.ok(*push)
    assert re.fullmatch(r"pushed to clicks: 2 rows updated, version \d+; "
                        r"2 admitted, 0 dropped, 0 evicted\n", second), second

    _, rows = parse_rows(cli.ok("lookup", "clicks",
                                f"--indices=-3,{BIG},99"))
    assert rows == [("-3", [-1.5, -1.5]), (str(BIG), [-0.5, -0.5]),
                    ("99", [0.5, 0.5])]
    _, rows = parse_rows(cli.ok("read-rows", "clicks", f"--indices={BIG}"))
    assert rows == [(str(BIG), [-0.5, -0.5])]

    lines = describe_lines(cli, "clicks")
    assert lines[1] == ("dynamic:            capacity=100, admit_after=2, "
                        "eviction=lfu, ttl_pushes=50")
    assert lines[-7:] == [
        "capacity:           100",
        "rows_held:          2",
        "admissions:         2",
        "evictions:          0",
        "expirations:        0",
        "dropped_rows:       2",
        # BIG and -3 before their admission, then 99.
        "absent_rows_looked_up: 3",
    ]
    assert "local_rows:         2" in lines
    assert "shard:              0 of 1" in lines

    listing = cli.ok("list").splitlines()
    assert listing[1].split()[:3] == ["clicks", "2/100", "2"]

    # The padding id reads zeros and takes no gradient.
    out = cli.ok("push", "clicks", "--indices=-7,-7", "--grad=1,1,1,1")
    assert re.fullmatch(r"pushed to clicks: 0 rows updated, version \d+\n",
                        out), out
    _, rows = parse_rows(cli.ok("lookup", "clicks", "--indices=-7"))
    assert rows == [("-7", [0.0, 0.0])]
    assert parse_fields(cli.ok("describe", "clicks"))["rows_held"] == "2"


def test_evictions_show_in_describe(cli):
    cli.ok("create-table", "small", "--capacity=1", "--embedding_dim=2")
    for index, id_ in enumerate((-1, 2**62, -2**62)):
        out = cli.ok("push", "small", f"--indices={id_}", "--grad=1,1")
        evicted = 0 if index == 0 else 1
        assert out.endswith(f"; 1 admitted, 0 dropped, {evicted} evicted\n")
    fields = parse_fields(cli.ok("describe", "small"))
    assert (fields["rows_held"], fields["admissions"],
            fields["evictions"]) == ("1", "3", "2")


def test_npy_files_are_refused_and_reserved_ids_too(cli, tmp_path):
    cli.ok("create-table", "t", *DYNAMIC)
    # A whole read streams the rows held: none yet.
    assert cli.ok("read-rows", "t").startswith("shape [0, 2]")
    err = cli.fails("export", "t", str(tmp_path / "t.npy"),
                    code="FAILED_PRECONDITION")
    assert err == ('table "t" is dynamic: a .npy file holds rows [0, '
                   "num_embeddings), and a dynamic table has none; use a "
                   ".npz file, which carries the ids")
    assert not (tmp_path / "t.npy").exists()
    err = cli.fails("lookup", "t", f"--indices=1,{RESERVED}",
                    code="INVALID_ARGUMENT")
    assert err == (f"index {RESERVED} at position 1 is reserved: no id of a "
                   "dynamic table")


@pytest.mark.parametrize("flags, message", [
    (["--capacity=100", "--num_embeddings=10"],
     "create-table takes --num_embeddings (a table of rows [0, N)) or "
     "--capacity (a dynamic table of any int64 ids), not both"),
    (["--num_embeddings=10", "--eviction=lru"],
     "--admit_after, --eviction and --ttl_pushes are options of a dynamic "
     "table: give its --capacity too"),
    (["--capacity=100", "--eviction=fifo"],
     "--eviction=fifo: expected lru, lfu"),
    (["--capacity=0"], "dynamic capacity must be in [1, 1099511627776], got 0"),
    (["--capacity=100", "--admit_after=256"],
     "dynamic admit_after must be at most 255, got 256"),
    (["--capacity=100", "--ttl_pushes=0"],
     "dynamic ttl_pushes must be > 0 when set, got 0"),
])
def test_bad_flags_are_invalid_argument(cli, flags, message):
    err = cli.fails("create-table", "bad", "--embedding_dim=2", *flags,
                    code="INVALID_ARGUMENT")
    assert err == message
    assert cli.ok("list") == "no tables\n"


def test_a_capacity_needs_a_dimension(cli):
    err = cli.fails("create-table", "bad", "--capacity=10",
                    code="INVALID_ARGUMENT")
    assert err == "create-table needs --embedding_dim"


def test_a_negative_admit_after_is_refused_by_the_flag_parser(cli):
    result = cli.run("create-table", "bad", "--capacity=10",
                     "--embedding_dim=2", "--admit_after=-1")
    assert result.returncode != 0
    assert "admit_after" in result.stderr
    assert cli.ok("list") == "no tables\n"


@pytest.fixture
def cluster():
    with Cluster(3) as running:
        yield running


def test_a_cluster_equals_one_server(cluster, server):
    sharded, one = Cli(",".join(cluster.addresses)), Cli(server.address)
    create = ["create-table", "t", "--capacity=10", "--embedding_dim=3",
              "--seed=5", "--optimizer=adagrad", "--lr=0.5"]
    assert parse_fields(sharded.ok(*create))["shard"] == "all 3"
    one.ok(*create)
    ids = f"--indices={BIG},-1,0,7,{2**63 - 1},-7,{BIG}"
    assert sharded.ok("lookup", "t", ids) == one.ok("lookup", "t", ids)
    grad = "--grad=" + ",".join(str(0.25 * i) for i in range(21))
    pushed = sharded.ok("push", "t", ids, grad)
    assert re.fullmatch(r"pushed to t: 6 rows updated, version \d+; "
                        r"6 admitted, 0 dropped, 0 evicted\n", pushed), pushed
    one.ok("push", "t", ids, grad)
    assert sharded.ok("lookup", "t", ids) == one.ok("lookup", "t", ids)

    lines = describe_lines(sharded, "t")
    assert lines[-7:] == [
        "capacity:           30",
        "rows_held:          6",
        "admissions:         6",
        "evictions:          0",
        "expirations:        0",
        "dropped_rows:       0",
        "absent_rows_looked_up: 7",  # The first lookup's, BIG twice.
    ]
    err = sharded.fails("push", "t", f"--indices=3,{RESERVED}",
                        "--grad=1,1,1,1,1,1", code="INVALID_ARGUMENT")
    assert err == (f"index {RESERVED} at position 1 is reserved: no id of a "
                   "dynamic table")


def _held(cli, name):
    """{id: row} of every row the table holds (read-rows of the whole)."""
    _, rows = parse_rows(cli.ok("read-rows", name))
    return {int(id_): values for id_, values in rows}


@pytest.mark.parametrize("where", ["one_server", "cluster"])
def test_export_npz_then_import(where, cluster, server, tmp_path):
    cli = Cli(server.address if where == "one_server" else
              ",".join(cluster.addresses))
    cli.ok("create-table", "src", *DYNAMIC)
    ids = [BIG, -3, 0, 2**62, -2**62 + 1]
    cli.ok("push", "src", "--indices=" + ",".join(map(str, ids)),
           "--grad=" + ",".join(str(0.25 * i) for i in range(10)))
    path = tmp_path / "src.npz"
    out = cli.ok("export", "src", str(path))
    assert out == f"exported src: 5 rows x 2 to {path} " \
        f"({path.stat().st_size} bytes)\n"
    assert not (tmp_path / "src.npz.partial").exists()
    with np.load(path) as archive:
        assert sorted(archive.files) == ["ids", "weights"]
        got_ids, weights = archive["ids"], archive["weights"]
    assert got_ids.dtype == np.int64 and weights.dtype == np.float32
    assert sorted(got_ids.tolist()) == sorted(ids)
    # SGD lr 1 from the constant 0.5: row of ids[k] is 0.5 - grad[k].
    for id_, row in zip(got_ids.tolist(), weights):
        k = ids.index(id_)
        np.testing.assert_array_equal(row, [0.5 - 0.5 * k, 0.25 - 0.5 * k])
    # admit_after does not apply to an import: every id gets a row.
    cli.ok("create-table", "copy", *DYNAMIC, "--admit_after=9")
    out = cli.ok("import", "copy", str(path))
    assert re.fullmatch(rf"imported copy: 5 rows x 2 from {path}, "
                        r"version \d+\n", out), out
    indices = "--indices=" + ",".join(map(str, ids + [99]))
    assert parse_rows(cli.ok("lookup", "copy", indices)) == \
        parse_rows(cli.ok("lookup", "src", indices))
    fields = parse_fields(cli.ok("describe", "copy"))
    assert (fields["rows_held"], fields["admissions"]) == ("5", "5")


def test_import_npz_of_numpy_and_bad_files(cli, tmp_path):
    cli.ok("create-table", "t", *DYNAMIC)
    good = tmp_path / "good.npz"
    np.savez(good, ids=np.array([BIG, 7], np.int64),
             weights=np.array([[1, 2], [3, 4]], np.float32))
    cli.ok("import", "t", str(good))
    assert _held(cli, "t") == {BIG: [1.0, 2.0], 7: [3.0, 4.0]}
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, ids=np.array([1], np.int64),
                        weights=np.ones((1, 2), np.float32))
    err = cli.fails("import", "t", str(compressed), code="INVALID_ARGUMENT")
    assert "is compressed" in err and "numpy.savez" in err
    for name, arrays, message in [
        ("dim.npz", {"ids": np.array([1], np.int64),
                     "weights": np.ones((1, 3), np.float32)},
         ": weights have 3 columns; table t has embedding_dim 2"),
        ("ids.npz", {"ids": np.array([1], np.int32),
                     "weights": np.ones((1, 2), np.float32)},
         " (ids.npy): dtype <i4 is not little-endian int64 (<i8)"),
        ("no_ids.npz", {"weights": np.ones((1, 2), np.float32)},
         ": no ids.npy (it holds weights.npy); expected ids.npy int64 [n] "
         "and weights.npy float32 [n, dim]"),
    ]:
        np.savez(tmp_path / name, **arrays)
        err = cli.fails("import", "t", str(tmp_path / name),
                        code="INVALID_ARGUMENT")
        assert err == f"{tmp_path / name}{message}"
    corrupt = tmp_path / "corrupt.npz"
    data = bytearray(good.read_bytes())
    data[data.rindex(np.float32(4).tobytes())] ^= 1  # A weight's byte.
    corrupt.write_bytes(bytes(data))
    err = cli.fails("import", "t", str(corrupt), code="INVALID_ARGUMENT")
    assert err == f"{corrupt}: weights.npy is corrupt (its CRC-32 does not " \
        "match)"
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    err = cli.fails("import", "t", str(text), code="INVALID_ARGUMENT")
    assert err == (f"{text}: not a .npz file (no zip end of central "
                   "directory record)")
    # Nothing of the refused files was written.
    assert _held(cli, "t") == {BIG: [1.0, 2.0], 7: [3.0, 4.0]}
