"""Row traffic through embedding_cli: lookup, push, write-rows, read-rows."""

import math

from tests.e2e.cli_runner import parse_fields, parse_rows

DIM = 4


def create(cli, name="t", *flags):
    cli.ok("create-table", name, "--num_embeddings=10",
           f"--embedding_dim={DIM}", "--seed=3", *flags)


def lookup(cli, indices, table="t"):
    shape, rows = parse_rows(
        cli.ok("lookup", table, "--indices=" + ",".join(map(str, indices))))
    assert shape == [len(indices), DIM]
    assert [label for label, _ in rows] == [str(i) for i in indices]
    return [values for _, values in rows]


def floats(values):
    return ",".join(repr(v) for v in values)


def assert_rows_close(actual, expected):
    assert len(actual) == len(expected)
    for got_row, want_row in zip(actual, expected):
        assert len(got_row) == len(want_row)
        for got, want in zip(got_row, want_row):
            assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6), (
                actual, expected)


def test_lookup_prints_one_row_per_index(cli):
    create(cli)
    rows = lookup(cli, [1, 2, 1])
    assert rows[0] == rows[2]
    assert rows[0] != rows[1]
    # Initialisation is a function of (seed, row, column) only.
    create(cli, "twin")
    assert lookup(cli, [1, 2], table="twin") == rows[:2]


def test_lookup_with_index_shape(cli):
    create(cli, "t", "--initializer=constant:0.5")
    shape, rows = parse_rows(
        cli.ok("lookup", "t", "--indices=0,1,2,3,4,5", "--shape=2,3"))
    assert shape == [2, 3, DIM]
    assert [values for _, values in rows] == [[0.5] * DIM] * 6


def test_lookup_float16_is_close(cli):
    create(cli)
    exact = lookup(cli, [3])
    shape, rows = parse_rows(
        cli.ok("lookup", "t", "--indices=3", "--dtype=float16"))
    assert shape == [1, DIM]
    for got, want in zip(rows[0][1], exact[0]):
        assert math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-4)


def test_push_moves_rows_by_minus_lr_times_grad(cli):
    lr = 0.5
    create(cli, "t", "--optimizer=sgd", f"--lr={lr}")
    before = lookup(cli, [1, 3])
    grad = [[0.25, -1.0, 2.0, 0.5], [1.0, 1.0, -0.5, 0.0],
            [0.75, 0.0, 1.0, -2.0]]
    out = cli.ok("push", "t", "--indices=1,3,1",
                 "--grad=" + floats(sum(grad, [])))
    assert out.startswith("pushed to t: 2 rows updated, version ")

    # Duplicate indices are summed: row 1 gets grad[0] + grad[2].
    expected = [[w - lr * (g0 + g2) for w, g0, g2 in
                 zip(before[0], grad[0], grad[2])],
                [w - lr * g for w, g in zip(before[1], grad[1])]]
    after = lookup(cli, [1, 3])
    assert_rows_close(after, expected)
    assert parse_fields(cli.ok("describe", "t"))["step"] == "1"

    # A per-push learning rate overrides the table's.
    cli.ok("push", "t", "--indices=3", "--grad=" + floats(grad[0]),
           "--lr=0.125")
    assert_rows_close(lookup(cli, [3]),
                      [[w - 0.125 * g for w, g in zip(after[1], grad[0])]])


def test_padding_row_is_zero_and_never_updated(cli):
    create(cli, "t", "--padding_idx=0", "--lr=1")
    assert lookup(cli, [0]) == [[0.0] * DIM]
    out = cli.ok("push", "t", "--indices=0,0", "--grad=" + floats([1.0] * 8))
    assert out.startswith("pushed to t: 0 rows updated")
    assert lookup(cli, [0]) == [[0.0] * DIM]


def test_retried_push_is_applied_once(cli):
    create(cli, "t", "--lr=1")
    before = lookup(cli, [2])
    push = ("push", "t", "--indices=2", "--grad=1,1,1,1", "--client_id=e2e",
            "--sequence=1")
    assert "duplicate" not in cli.ok(*push)
    assert "duplicate" in cli.ok(*push)
    assert_rows_close(lookup(cli, [2]), [[w - 1 for w in before[0]]])


def test_write_rows_then_read_rows(cli):
    create(cli)
    values = [[1.5, -2.0, 0.1, 3.0], [-0.25, 0.0, 7.0, 1e-8]]
    out = cli.ok("write-rows", "t", "--indices=2,5",
                 "--values=" + floats(sum(values, [])))
    assert out.startswith("wrote 2 rows to t, version ")

    shape, rows = parse_rows(cli.ok("read-rows", "t", "--indices=5,2"))
    assert shape == [2, DIM]
    assert rows == [("5", values[1]), ("2", values[0])]
    assert lookup(cli, [2, 5]) == values

    # A range write, then the whole table streamed back in order.
    cli.ok("write-rows", "t", "--start=8", "--values=" + floats([9.0] * 8))
    shape, rows = parse_rows(cli.ok("read-rows", "t"))
    assert shape == [10, DIM]
    assert [label for label, _ in rows] == [str(i) for i in range(10)]
    assert rows[2][1] == values[0] and rows[5][1] == values[1]
    assert rows[8][1] == rows[9][1] == [9.0] * DIM

    shape, rows = parse_rows(cli.ok("read-rows", "t", "--start=4", "--end=6"))
    assert shape == [2, DIM]
    assert rows[1] == ("5", values[1])


def test_out_of_range_index_is_invalid_argument_naming_it(cli):
    create(cli)
    before = lookup(cli, [1, 2])
    # The message names the index and its position.
    err = cli.fails("lookup", "t", "--indices=1,10", code="INVALID_ARGUMENT")
    assert err == "index 10 at position 1 is outside [0, 10)"
    err = cli.fails("lookup", "t", "--indices=-1", code="INVALID_ARGUMENT")
    assert err == "index -1 at position 0 is outside [0, 10)"
    err = cli.fails("push", "t", "--indices=1,2,12",
                    "--grad=" + floats([1.0] * 12), code="INVALID_ARGUMENT")
    assert err == "index 12 at position 2 is outside [0, 10)"
    err = cli.fails("write-rows", "t", "--indices=2,10",
                    "--values=" + floats([1.0] * 8), code="INVALID_ARGUMENT")
    assert err == "index 10 at position 1 is outside [0, 10)"
    err = cli.fails("read-rows", "t", "--indices=3,11",
                    code="INVALID_ARGUMENT")
    assert err == "index 11 at position 1 is outside [0, 10)"
    # Nothing was applied.
    assert lookup(cli, [1, 2]) == before


def test_bad_gradients_are_invalid_argument_and_change_nothing(cli):
    create(cli)
    before = lookup(cli, [1, 2])
    # [2, 3] is not [len(indices), embedding_dim] = [2, 4].
    err = cli.fails("push", "t", "--indices=1,2",
                    "--grad=" + floats([1.0] * 6), code="INVALID_ARGUMENT")
    assert "grad" in err and "[2, 4]" in err, err
    err = cli.fails("push", "t", "--indices=1,2",
                    "--grad=1,1,1,1,1,nan,1,1", code="INVALID_ARGUMENT")
    assert "non-finite value (nan) at row 1, column 1" in err, err
    err = cli.fails("push", "t", "--indices=1,2", "--grad=1,1,1,1,1,inf,1,1",
                    code="INVALID_ARGUMENT")
    assert "non-finite value (inf) at row 1, column 1" in err, err
    assert lookup(cli, [1, 2]) == before
    assert parse_fields(cli.ok("describe", "t"))["step"] == "0"


def test_unreachable_server_is_unavailable(cli, server):
    server.stop()
    result = cli.run("list", timeout="2s")
    assert result.returncode == 1
    assert result.stderr.startswith(("error: UNAVAILABLE: ",
                                     "error: DEADLINE_EXCEEDED: "))
