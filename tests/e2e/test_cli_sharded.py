"""embedding_cli with --server=a,b,c over a 3-shard cluster of real
embedding_server processes: every command prints what it prints against one
server holding the same table (that server is the oracle here; it is itself
checked against PyTorch elsewhere), `health` asks every shard, and a killed
shard gives a clean error naming it."""

import re

import pytest

from tests.e2e.cli_runner import Cli, parse_fields, parse_rows
from tests.testing.cluster import Cluster
from tests.testing.server_process import ServerProcess

ROWS = 20
DIM = 4
CREATE = ["--num_embeddings=%d" % ROWS, "--embedding_dim=%d" % DIM,
          "--seed=11", "--padding_idx=3", "--optimizer=sparse_adam",
          "--lr=0.05"]


@pytest.fixture
def cluster(tmp_path):
    with Cluster(3, checkpoint_root=tmp_path / "cluster") as running:
        yield running


@pytest.fixture
def single(tmp_path):
    directory = tmp_path / "single"
    directory.mkdir()
    with ServerProcess(checkpoint_dir=directory) as server:
        yield server


def both(cluster, single):
    return Cli(",".join(cluster.addresses)), Cli(single.address)


def same(sharded, one, *args):
    """Runs a command on both; returns its output (the same on both, but
    for versions: a cluster's is the sum of its shards')."""
    out = sharded.ok(*args)
    def unversioned(text):
        return re.sub(r"version \d+", "version V", text)
    assert unversioned(out) == unversioned(one.ok(*args)), args
    return out


def test_commands_over_a_cluster_equal_one_server(cluster, single):
    sharded, one = both(cluster, single)
    out = sharded.ok("create-table", "t", *CREATE)
    one.ok("create-table", "t", *CREATE)
    assert out.startswith("created table t\n")
    assert parse_fields(out)["shard"] == "all 3"

    same(sharded, one, "lookup", "t", "--indices=0,1,2,5,5,19")
    shape, _ = parse_rows(same(sharded, one, "lookup", "t",
                               "--indices=1,2,3,4,5,6", "--shape=2,3"))
    assert shape == [2, 3, DIM]
    same(sharded, one, "lookup", "t", "--indices=7,8,9", "--dtype=float16")
    for mode in ("sum", "mean", "max"):
        same(sharded, one, "lookup-bag", "t", "--indices=0,1,2,3,7,8,13",
             "--offsets=0,3,3,5", f"--mode={mode}")

    # Pushes: one touching every shard, one touching only shard 1 (the
    # others still count the step), bags.
    grad = ",".join(str(0.1 * i - 0.7) for i in range(5 * DIM))
    same(sharded, one, "push", "t", "--indices=0,1,2,4,0", f"--grad={grad}")
    same(sharded, one, "push", "t", "--indices=4,7",
         "--grad=" + ",".join(["0.5"] * (2 * DIM)))
    for mode in ("sum", "mean", "max"):
        same(sharded, one, "push-bag", "t", "--indices=1,5,6,9,10",
             "--offsets=0,2", f"--mode={mode}",
             "--grad=" + ",".join(str(0.3 * i) for i in range(2 * DIM)))
    same(sharded, one, "write-rows", "t", "--indices=11,12",
         "--values=" + ",".join(str(i) for i in range(2 * DIM)))

    # Every row, by range and by index.
    same(sharded, one, "read-rows", "t")
    same(sharded, one, "read-rows", "t", "--start=5", "--end=12")
    same(sharded, one, "read-rows", "t", "--indices=19,0,4,4")

    fields = parse_fields(sharded.ok("describe", "t"))
    single_fields = parse_fields(one.ok("describe", "t"))
    for key in ("num_embeddings", "embedding_dim", "padding_idx", "seed",
                "optimizer", "step", "local_rows"):
        assert fields[key] == single_fields[key], key
    assert fields["step"] == "5"
    assert sharded.ok("list").splitlines()[1:] != []

    saved = sharded.ok("checkpoint")
    match = re.fullmatch(
        r"saved t: version \d+, (\d+) rows, \d+ bytes, full, (.*)\n", saved)
    assert match, saved
    assert int(match.group(1)) == ROWS
    assert match.group(2).startswith(str(cluster.checkpoint_dirs[0])), saved

    sharded.ok("delete", "t")
    for address in cluster.addresses:
        Cli(address).fails("describe", "t", code="NOT_FOUND")


def test_export_over_a_cluster_equals_one_server(cluster, single, tmp_path):
    sharded, one = both(cluster, single)
    sharded.ok("create-table", "t", *CREATE)
    one.ok("create-table", "t", *CREATE)
    sharded.ok("export", "t", str(tmp_path / "cluster.npy"))
    one.ok("export", "t", str(tmp_path / "single.npy"))
    assert ((tmp_path / "cluster.npy").read_bytes() ==
            (tmp_path / "single.npy").read_bytes())


def test_health_asks_every_server(cluster):
    cli = Cli(",".join(cluster.addresses))
    out = cli.ok("health")
    assert out == "".join(f"{a}: SERVING\n" for a in cluster.addresses)
    # As the Dockerfile's HEALTHCHECK runs it.
    assert Cli(cluster.addresses[0]).run("health", timeout="2s").returncode == 0

    cluster.servers[2].kill()
    message = cli.fails("health", code="UNAVAILABLE")
    assert message.startswith("1 of 3 servers not serving: "
                              f"{cluster.addresses[2]} is UNAVAILABLE")


def test_a_killed_shard_gives_a_clean_error_naming_it(cluster):
    cli = Cli(",".join(cluster.addresses))
    cli.ok("create-table", "t", *CREATE)
    cli.ok("checkpoint", "t")
    cluster.servers[1].kill()
    for args in (["lookup", "t", "--indices=0,1"], ["describe", "t"],
                 ["push", "t", "--indices=0", "--grad=1,1,1,1"]):
        result = cli.run(*args, timeout="2s")
        assert result.returncode == 1, result
        assert result.stderr.startswith(
            f"error: UNAVAILABLE: shard 1 ({cluster.addresses[1]}): "), (
                result.stderr)
        assert result.stderr.count("\n") == 1  # One line, no crash report.

    cluster.servers[1].start(same_port=True)  # From its checkpoint.
    cli.ok("lookup", "t", "--indices=0,1")


def test_a_mismatched_cluster_is_refused(cluster):
    cli = Cli(",".join(cluster.addresses))
    cli.ok("create-table", "t", *CREATE)
    swapped = Cli(",".join([cluster.addresses[1], cluster.addresses[0],
                            cluster.addresses[2]]))
    message = swapped.fails("lookup", "t", "--indices=0", 
                            code="FAILED_PRECONDITION")
    assert message == (f"shard 0 ({cluster.addresses[1]}): reports "
                       "shard_index 1 of shard_count 3, expected 0 of 3"), (
                           message)
