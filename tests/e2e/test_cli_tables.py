"""Table management through embedding_cli against the real server."""

import re

from tests.e2e.cli_runner import parse_fields, parse_rows


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
    assert optimizer == ("adagrad(lr=0.5, lr_decay=0, "
                         "initial_accumulator_value=0.1, eps=1e-06)")

    out = cli.ok("set-optimizer", "t", "--optimizer=adagrad", "--lr=0.125")
    # Unset hyper-parameters take the table's defaults again.
    assert out == ("optimizer of t: adagrad(lr=0.125, lr_decay=0, "
                   "initial_accumulator_value=0, eps=1e-10)\n")
    assert parse_fields(cli.ok("describe", "t"))["optimizer"] == (
        "adagrad(lr=0.125, lr_decay=0, initial_accumulator_value=0, "
        "eps=1e-10)")


def test_set_optimizer_of_another_kind_is_failed_precondition(cli):
    create(cli, "t", "--optimizer=sgd", "--lr=0.5")
    err = cli.fails("set-optimizer", "t", "--optimizer=sparse_adam",
                    code="FAILED_PRECONDITION")
    assert err == ('table "t" uses sgd; its optimizer cannot change to '
                   "sparse_adam")
    assert parse_fields(cli.ok("describe", "t"))["optimizer"] == "sgd(lr=0.5)"


def test_unknown_table_is_not_found(cli):
    for args in (["describe", "nope"], ["delete", "nope"],
                 ["lookup", "nope", "--indices=1"],
                 ["push", "nope", "--indices=1", "--grad=1,2,3,4"],
                 ["read-rows", "nope"]):
        err = cli.fails(*args, code="NOT_FOUND")
        assert err == 'table "nope" not found', (args, err)


def test_duplicate_create_is_already_exists(cli):
    create(cli, "dup_table", "--initializer=constant:3")
    err = cli.fails("create-table", "dup_table", "--num_embeddings=5",
                    "--embedding_dim=2", code="ALREADY_EXISTS")
    assert err == 'table "dup_table" already exists'
    # The first table is untouched.
    fields = parse_fields(cli.ok("describe", "dup_table"))
    assert (fields["num_embeddings"], fields["embedding_dim"]) == ("10", "4")


def test_bad_specs_are_invalid_argument(cli):
    for flags in (["--num_embeddings=0", "--embedding_dim=4"],
                  ["--num_embeddings=10", "--embedding_dim=-1"],
                  ["--num_embeddings=10", "--embedding_dim=4",
                   "--padding_idx=10"]):
        err = cli.fails("create-table", "bad", *flags,
                        code="INVALID_ARGUMENT")
        assert re.search(r"num_embeddings|embedding_dim|padding_idx",
                         err), (flags, err)
    assert cli.ok("list") == "no tables\n"


def test_table_too_large_is_refused(cli):
    err = cli.fails("create-table", "huge",
                    "--num_embeddings=4611686018427387904",
                    "--embedding_dim=1024",
                    code=("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"))
    assert "huge" in err or "4611686018427387904" in err, err
    assert cli.ok("list") == "no tables\n"


def test_cli_usage_errors(cli):
    err = cli.fails("create-table", "t", code="INVALID_ARGUMENT")
    assert err == "create-table needs --num_embeddings and --embedding_dim"
    err = cli.fails("frobnicate", code="INVALID_ARGUMENT")
    assert err == 'unknown command "frobnicate"; run embedding_cli --help'
    err = cli.fails("create-table", "t", "--num_embeddings=10",
                    "--embedding_dim=4", "--optimizer=sgd", "--beta1=0.5",
                    code="INVALID_ARGUMENT")
    assert err == ("--beta1 is not a parameter of the sgd optimizer "
                   "(it takes --lr)")
    err = cli.fails("create-table", "t", "--num_embeddings=10",
                    "--embedding_dim=4", "--optimizer=adamw",
                    code="INVALID_ARGUMENT")
    assert err.startswith("--optimizer=adamw: expected one of sgd, ")
    err = cli.fails("lookup", "t", "--indices=1,x", code="INVALID_ARGUMENT")
    assert err == '--indices: element 1 ("x") is not an integer'
    assert cli.ok("list") == "no tables\n"


def test_ftrl_end_to_end(cli):
    out = create(cli, "ctr", "--optimizer=ftrl", "--l1=0.5", "--lr", "0.25",
                 "--initializer=constant:0")
    assert out.startswith("created table ctr\n")
    fields = parse_fields(cli.ok("describe", "ctr"))
    assert fields["optimizer"] == (
        "ftrl(lr=0.25, lr_power=-0.5, l1=0.5, l2=0, beta=0, "
        "initial_accumulator_value=0.1)")
    listing = cli.ok("list").splitlines()
    assert listing[1].split()[:4] == ["ctr", "10", "4", "ftrl"]

    # A small gradient: |z| stays under l1, so the weights stay exactly 0.
    out = cli.ok("push", "ctr", "--indices=2", "--grad=0.1,-0.1,0.2,0")
    assert out.startswith("pushed to ctr: 1 rows updated, version ")
    assert cli.ok("lookup", "ctr", "--indices=2").splitlines()[1] == (
        "2: 0 0 0 0")
    # A large one moves them, against the gradient's sign.
    cli.ok("push", "ctr", "--indices=2", "--grad=5,-5,0,0")
    _, rows = parse_rows(cli.ok("lookup", "ctr", "--indices=2"))
    row = rows[0][1]
    assert row[0] < 0 < row[1] and row[2] == row[3] == 0.0, row
    assert parse_fields(cli.ok("describe", "ctr"))["step"] == "2"

    out = cli.ok("set-optimizer", "ctr", "--optimizer=ftrl", "--l1=0.125",
                 "--l2=1")
    assert out == ("optimizer of ctr: ftrl(lr=0.01, lr_power=-0.5, l1=0.125, "
                   "l2=1, beta=0, initial_accumulator_value=0.1)\n")

    err = cli.fails("set-optimizer", "ctr", "--optimizer=ftrl",
                    "--lr_power=1", code="INVALID_ARGUMENT")
    assert err == "ftrl lr_power must be a finite number <= 0, got 1"
    err = cli.fails("create-table", "bad", "--num_embeddings=10",
                    "--embedding_dim=4", "--optimizer=ftrl", "--lr_power=1",
                    code="INVALID_ARGUMENT")
    assert "lr_power" in err
    err = cli.fails("set-optimizer", "ctr", "--optimizer=ftrl",
                    "--beta1=0.5", code="INVALID_ARGUMENT")
    assert err == ("--beta1 is not a parameter of the ftrl optimizer (it "
                   "takes --lr, --lr_power, --l1, --l2, --beta, "
                   "--initial_accumulator_value)")
    err = cli.fails("set-optimizer", "ctr", "--optimizer=sgd",
                    code="FAILED_PRECONDITION")
    assert err == 'table "ctr" uses ftrl; its optimizer cannot change to sgd'
    err = cli.fails("push", "ctr", "--indices=2", "--grad=1,1,1,1",
                    "--l1=2", code="INVALID_ARGUMENT")
    assert err.startswith("--l1 is not a flag of a push")
    assert parse_fields(cli.ok("describe", "ctr"))["optimizer"].startswith(
        "ftrl(lr=0.01, lr_power=-0.5, l1=0.125, l2=1, ")
