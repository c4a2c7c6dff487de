"""Drives the 3-shard compose cluster from the host for
scripts/container_test.sh, through the sharded Python client, one phase per
run (the shell script stops and starts containers in between):

    drive_cluster.py empty     ADDRS        each server is a fresh shard: no tables
    drive_cluster.py populate  ADDRS STATE  create, lookup, bag, push (torch as
                                            the oracle), checkpoint, push again;
                                            saves every row to STATE
    drive_cluster.py shard-down ADDRS K CMD...
                                            a client in use, then CMD stops
                                            shard K: calls touching it fail
                                            with UNAVAILABLE naming it, the
                                            others work
    drive_cluster.py verify    ADDRS STATE  every row, step and version as saved

ADDRS: host:port of shard 0, 1, 2 (comma-separated). Exits non-zero with a
message on the first failure.
"""

import json
import pathlib
import subprocess
import sys

import numpy
import torch

from embedding_client import Adagrad, EmbeddingClient, UnavailableError

TABLE = "container_test"
ROWS = 100
DIM = 8
LR = 0.1
SEED = 7


def fail(message):
    raise SystemExit(f"drive_cluster: FAIL: {message}")


def check_close(name, got, want):
    if not numpy.allclose(got, want, rtol=1e-5, atol=1e-6):
        fail(f"{name}: largest difference "
             f"{numpy.abs(numpy.asarray(got) - numpy.asarray(want)).max()}")


def check_shards(addresses, table=None):
    """Asks each server alone what it is: with table None, a fresh shard
    holding no table (so no other server answers on these ports); else it
    holds `table` and every table it holds says it is shard k of M."""
    for k, address in enumerate(addresses):
        with EmbeddingClient(address, timeout=10) as shard:
            tables = sorted(t.name for t in shard.list_tables())
            if (table is None and tables) or (table and table not in tables):
                fail(f"{address} holds tables {tables}, expected "
                     f"{[table] if table else []}: not the cluster this "
                     f"test started")
            for name in tables:
                info = shard.get_table(name)
                if (info.shard_index, info.shard_count) != (k, len(addresses)):
                    fail(f"{address} is shard {info.shard_index} of "
                         f"{info.shard_count}, expected {k} of {len(addresses)}")
    print(f"each of the {len(addresses)} servers is its shard; tables: "
          f"{table or 'none'}")


def push_step(client, oracle, optimizer, indices, grad):
    """One push to the cluster and the same step on the torch oracle."""
    client.push_gradients(TABLE, indices, grad)
    optimizer.zero_grad()
    out = oracle(torch.from_numpy(numpy.asarray(indices)))
    out.backward(torch.from_numpy(grad))
    optimizer.step()


def populate(addresses, state):
    client = EmbeddingClient(addresses)
    client.create_table(TABLE, ROWS, DIM, optimizer=Adagrad(lr=LR), seed=SEED)
    check_shards(addresses, TABLE)

    weights = client.read_rows(TABLE)
    oracle = torch.nn.Embedding.from_pretrained(
        torch.from_numpy(weights.copy()), freeze=False, sparse=True)
    optimizer = torch.optim.Adagrad(oracle.parameters(), lr=LR)

    # Lookups of a 2-D index tensor spanning every shard, in caller order.
    indices = numpy.array([[5, 1, 99], [0, 4, 1]])
    check_close("lookup", client.lookup(TABLE, indices), weights[indices])
    # Bags spanning the three shards, every mode.
    flat = numpy.array([1, 2, 3, 7, 8, 50, 51])
    offsets = numpy.array([0, 3, 3, 5])
    for mode in ("sum", "mean", "max"):
        want = torch.nn.functional.embedding_bag(
            torch.from_numpy(flat), torch.from_numpy(weights),
            torch.from_numpy(offsets), mode=mode).numpy()
        check_close(f"lookup_bag {mode}",
                    client.lookup_bag(TABLE, flat, offsets, mode=mode), want)
    print("lookup and bags over 3 shards equal torch")

    rng = numpy.random.default_rng(SEED)
    push_indices = numpy.array([0, 1, 2, 2, 5, 97])
    push_step(client, oracle, optimizer, push_indices,
              rng.standard_normal((6, DIM)).astype(numpy.float32))
    check_close("rows after push", client.read_rows(TABLE),
                oracle.weight.detach().numpy())
    saved = client.save_checkpoint()
    print(f"checkpoint: {len(saved)} saves")
    # A push after the checkpoint: only the final checkpoint on SIGTERM
    # keeps it across the restart.
    push_step(client, oracle, optimizer, numpy.array([3, 4, 98]),
              rng.standard_normal((3, DIM)).astype(numpy.float32))
    rows = client.read_rows(TABLE)
    check_close("rows after second push", rows, oracle.weight.detach().numpy())
    print("pushes (Adagrad) over 3 shards equal torch")

    info = client.get_table(TABLE)
    numpy.save(state / "rows.npy", rows)
    (state / "table.json").write_text(
        json.dumps({"step": info.step, "version": info.version}))


def shard_down(addresses, down, stop_command):
    """Warms a client up on the whole cluster, runs `stop_command` (which
    stops shard `down`), then checks the client's calls."""
    client = EmbeddingClient(addresses, timeout=5, max_retries=1)
    rows = numpy.arange(ROWS)
    before = client.lookup(TABLE, rows)
    subprocess.run(stop_command, check=True, stdout=subprocess.DEVNULL)
    alive = rows[rows % len(addresses) != down]
    check_close("lookup on the live shards", client.lookup(TABLE, alive),
                before[alive])
    try:
        client.lookup(TABLE, [int(alive[0]), down])
    except UnavailableError as error:
        if addresses[down] not in error.message:
            fail(f"UNAVAILABLE does not name {addresses[down]}: "
                 f"{error.message}")
        print(f"shard {down} down: {error}")
    else:
        fail(f"lookup of row {down} succeeded with shard {down} stopped")
    print(f"shard {down} down: lookups on the other shards work")


def verify(addresses, state):
    check_shards(addresses, TABLE)
    client = EmbeddingClient(addresses)
    want = numpy.load(state / "rows.npy")
    got = client.read_rows(TABLE)
    if not numpy.array_equal(got, want):
        fail(f"rows after restart differ from before "
             f"(largest difference {numpy.abs(got - want).max()})")
    saved = json.loads((state / "table.json").read_text())
    info = client.get_table(TABLE)
    if (info.step, info.version) != (saved["step"], saved["version"]):
        fail(f"step/version after restart {info.step}/{info.version}, "
             f"before {saved['step']}/{saved['version']}")
    print(f"all {ROWS} rows, step {info.step} and version {info.version} "
          f"equal to before the restart")


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    phase, addresses = argv[1], argv[2].split(",")
    if phase == "empty":
        check_shards(addresses)
    elif phase == "populate":
        populate(addresses, pathlib.Path(argv[3]))
    elif phase == "shard-down":
        shard_down(addresses, int(argv[3]), argv[4:])
    elif phase == "verify":
        verify(addresses, pathlib.Path(argv[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
