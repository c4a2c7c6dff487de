"""nn.EmbeddingBag through embedding_cli: lookup-bag and push-bag."""

import math

from tests.e2e.cli_runner import parse_rows

DIM = 3
# Rows 0..5 hold distinct known values so pooled results are easy to check.
ROWS = [[float(r * 10 + c) * (-1) ** c for c in range(DIM)] for r in range(6)]


def setup_table(cli):
    cli.ok("create-table", "bags", "--num_embeddings=6",
           f"--embedding_dim={DIM}", "--lr=0.5")
    cli.ok("write-rows", "bags", "--indices=0,1,2,3,4,5",
           "--values=" + ",".join(repr(v) for row in ROWS for v in row))


def lookup_bag(cli, *flags):
    out = cli.ok("lookup-bag", "bags", *flags)
    shape, rows = parse_rows(out)
    labels = [label for label, _ in rows]
    assert labels == [f"bag {i}" for i in range(shape[0])]
    max_line = [l for l in out.splitlines() if l.startswith("max_indices: ")]
    max_indices = ([int(v) for v in max_line[0].split(": ")[1].split(",")]
                   if max_line else [])
    return shape, [values for _, values in rows], max_indices


def pool(bags, reduce):
    return [[reduce([ROWS[i][c] for i in bag]) if bag else 0.0
             for c in range(DIM)] for bag in bags]


def test_lookup_bag_sum_mean_max(cli):
    setup_table(cli)
    flags = ["--indices=1,2,4,5,3", "--offsets=0,2,2"]
    bags = [[1, 2], [], [4, 5, 3]]
    shape, rows, _ = lookup_bag(cli, *flags, "--mode=sum")
    assert shape == [3, DIM]
    assert rows == pool(bags, sum)
    _, rows, _ = lookup_bag(cli, *flags, "--mode=mean")
    for got, want in zip(rows, pool(bags, lambda v: sum(v) / len(v))):
        assert all(math.isclose(g, w, rel_tol=1e-6) for g, w in zip(got, want))
    _, rows, max_indices = lookup_bag(cli, *flags, "--mode=max")
    assert rows == pool(bags, max)
    assert len(max_indices) == 3 * DIM
    assert max_indices[DIM:2 * DIM] == [-1] * DIM  # The empty bag.


def test_lookup_bag_per_sample_weights_and_last_offset(cli):
    setup_table(cli)
    _, rows, _ = lookup_bag(cli, "--indices=0,3,5", "--offsets=0,1,3",
                            "--include_last_offset", "--mode=sum",
                            "--per_sample_weights=2,0.5,-1")
    assert rows == [[2 * v for v in ROWS[0]],
                    [0.5 * a - b for a, b in zip(ROWS[3], ROWS[5])]]


def test_lookup_bag_defaults_to_mean(cli):
    setup_table(cli)
    _, rows, _ = lookup_bag(cli, "--indices=1,2,4", "--offsets=0,2")
    for got, want in zip(rows, pool([[1, 2], [4]],
                                    lambda v: sum(v) / len(v))):
        assert all(math.isclose(g, w, rel_tol=1e-6) for g, w in zip(got, want))


def test_push_bag_sum_spreads_the_bag_gradient(cli):
    setup_table(cli)
    grad = [[1.0, 2.0, -1.0], [0.5, 0.5, 0.5]]
    out = cli.ok("push-bag", "bags", "--indices=1,2,2", "--offsets=0,1",
                 "--mode=sum",
                 "--grad=" + ",".join(repr(v) for row in grad for v in row))
    assert out.startswith("pushed to bags: 2 rows updated")
    _, rows = parse_rows(cli.ok("read-rows", "bags", "--indices=1,2"))
    assert rows[0][1] == [w - 0.5 * g for w, g in zip(ROWS[1], grad[0])]
    assert rows[1][1] == [w - 0.5 * 2 * g for w, g in zip(ROWS[2], grad[1])]


def test_push_bag_max_routes_to_the_winning_rows(cli):
    setup_table(cli)
    _, _, max_indices = lookup_bag(cli, "--indices=1,4", "--offsets=0",
                                   "--mode=max")
    # push-bag fetches max_indices itself when none are given.
    cli.ok("push-bag", "bags", "--indices=1,4", "--offsets=0", "--mode=max",
           "--grad=1,1,1")
    _, rows = parse_rows(cli.ok("read-rows", "bags", "--indices=1,4"))
    updated = {1: list(ROWS[1]), 4: list(ROWS[4])}
    for column, row in enumerate(max_indices):
        updated[row][column] -= 0.5
    assert rows == [("1", updated[1]), ("4", updated[4])]


def test_bad_offsets_are_invalid_argument(cli):
    setup_table(cli)
    for offsets in ("1,2", "0,2,1", "0,5"):
        err = cli.fails("lookup-bag", "bags", "--indices=1,2,3",
                        f"--offsets={offsets}", code="INVALID_ARGUMENT")
        assert "offset" in err, (offsets, err)
    # per_sample_weights need SUM, and the default mode is MEAN.
    err = cli.fails("lookup-bag", "bags", "--indices=1,2", "--offsets=0",
                    "--per_sample_weights=1,1", code="INVALID_ARGUMENT")
    assert "per_sample_weights" in err
