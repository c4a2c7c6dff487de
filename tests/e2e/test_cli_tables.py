"""Table management through embedding_cli against the real server."""

import re

from tests.e2e.cli_runner import parse_fields


def create(cli, name, *flags):
    return cli.ok("create-table", name, "--num_embeddings=10",
                  "--embedding_dim=4", *flags)


def test_create_describe_list_delete(cli):
    out = create(cli, "users", "--seed=7", "--padding_idx=-1",
                 "--max_norm=2.5", "--scale_grad_by_freq",
                 "--initializer=uniform:-0.5,0.5", "--optimizer=sgd",
                 "--lr=0.25")
    assert out.startswith("created table users\n")

    fields = parse_fields(cli.ok("describe", "users"))
    assert fields["name"] == "users"
    assert fields["num_embeddings"] == "10"
    assert fields["embedding_dim"] == "4"
    assert fields["padding_idx"] == "9"  # -1 normalised to the last row.
    assert fields["max_norm"] == "2.5"
    assert fields["scale_grad_by_freq"] == "true"
    assert fields["seed"] == "7"
    assert fields["initializer"] == "uniform(low=-0.5, high=0.5)"
    assert fields["optimizer"] == "sgd(lr=0.25)"
    assert fields["local_rows"] == "10"

    create(cli, "items")
    listing = cli.ok("list").splitlines()
    assert listing[0].split()[:3] == ["NAME", "ROWS", "DIM"]
    assert sorted(line.split()[:3] for line in listing[1:]) == [
        ["items", "10", "4"], ["users", "10", "4"]]

    assert cli.ok("delete", "users") == "deleted table users\n"
    assert [line.split()[0] for line in cli.ok("list").splitlines()[1:]] == [
        "items"]
    cli.ok("delete", "items")
    assert cli.ok("list") == "no tables\n"


def test_create_with_adagrad_options_and_set_optimizer(cli):
    create(cli, "t", "--optimizer=adagrad", "--lr=0.5",
           "--initial_accumulator_value=0.1", "--eps=1e-06")
    optimizer = parse_fields(cli.ok("describe", "t"))["optimizer"]
    assert optimizer.startswith("adagrad(lr=0.5, ")
    assert "initial_accumulator_value=0.1" in optimizer

    out = cli.unless_unimplemented("set-optimizer", "t", "--optimizer=adagrad",
                                   "--lr=0.125")
    assert out.startswith("optimizer of t: adagrad(lr=0.125")
    assert parse_fields(cli.ok("describe", "t"))["optimizer"].startswith(
        "adagrad(lr=0.125")


def test_set_optimizer_of_another_kind_is_failed_precondition(cli):
    create(cli, "t", "--optimizer=sgd", "--lr=0.5")
    err = cli.fails("set-optimizer", "t", "--optimizer=sparse_adam")
    assert err.startswith("error: FAILED_PRECONDITION: ")
    assert "sgd" in err and "sparse_adam" in err
    assert parse_fields(cli.ok("describe", "t"))["optimizer"] == "sgd(lr=0.5)"


def test_unknown_table_is_not_found(cli):
    for args in (["describe", "nope"], ["delete", "nope"],
                 ["lookup", "nope", "--indices=1"],
                 ["push", "nope", "--indices=1", "--grad=1,2,3,4"],
                 ["read-rows", "nope"]):
        err = cli.fails(*args)
        assert err.startswith("error: NOT_FOUND: "), (args, err)
        assert "nope" in err, (args, err)


def test_duplicate_create_is_already_exists(cli):
    create(cli, "dup_table", "--initializer=constant:3")
    err = cli.fails("create-table", "dup_table", "--num_embeddings=5",
                    "--embedding_dim=2")
    assert err.startswith("error: ALREADY_EXISTS: ")
    assert "dup_table" in err
    # The first table is untouched.
    fields = parse_fields(cli.ok("describe", "dup_table"))
    assert (fields["num_embeddings"], fields["embedding_dim"]) == ("10", "4")


def test_bad_specs_are_invalid_argument(cli):
    for flags in (["--num_embeddings=0", "--embedding_dim=4"],
                  ["--num_embeddings=10", "--embedding_dim=-1"],
                  ["--num_embeddings=10", "--embedding_dim=4",
                   "--padding_idx=10"]):
        err = cli.fails("create-table", "bad", *flags)
        assert err.startswith("error: INVALID_ARGUMENT: "), (flags, err)
    assert cli.ok("list") == "no tables\n"


def test_table_too_large_is_refused(cli):
    err = cli.fails("create-table", "huge",
                    "--num_embeddings=4611686018427387904",
                    "--embedding_dim=1024")
    assert re.match(r"error: (INVALID_ARGUMENT|RESOURCE_EXHAUSTED): ",
                    err), err
    assert cli.ok("list") == "no tables\n"


def test_cli_usage_errors(cli):
    err = cli.fails("create-table", "t")
    assert "--num_embeddings" in err
    err = cli.fails("frobnicate")
    assert 'unknown command "frobnicate"' in err
    err = cli.fails("create-table", "t", "--num_embeddings=10",
                    "--embedding_dim=4", "--optimizer=sgd", "--beta1=0.5")
    assert "--beta1 is not a parameter of the sgd optimizer" in err
    err = cli.fails("lookup", "t", "--indices=1,x")
    assert 'element 1 ("x")' in err
