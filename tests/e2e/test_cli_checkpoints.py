"""Checkpoints and .npy files through the real binaries: embedding_cli
checkpoint / export / import / describe against embedding_server with
--checkpoint_dir, a restart on the same directory, and the server's
checkpoint flags checked at start."""

import re
import signal
import subprocess

import numpy as np
import pytest

from tests.e2e.cli_runner import Cli, parse_fields, parse_rows
from tests.testing.binaries import server_binary
from tests.testing.server_process import ServerProcess

ROWS, DIM = 20, 4
SAVED = re.compile(r"saved (\S+): version (\d+), (\d+) rows, (\d+) bytes, "
                   r"(full|incremental), (\S+)")


@pytest.fixture
def durable(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    server = ServerProcess(checkpoint_dir=directory)
    server.start()
    yield server
    server.close()


def create(cli, name):
    cli.ok("create-table", name, f"--num_embeddings={ROWS}",
           f"--embedding_dim={DIM}", "--seed=5", "--optimizer=adagrad",
           "--lr=0.5")


def push(cli, name, rows):
    cli.ok("push", name, "--indices=" + ",".join(map(str, rows)),
           "--grad=" + ",".join(["0.5"] * (DIM * len(rows))))


def read_rows(cli, name):
    shape, rows = parse_rows(cli.ok("read-rows", name))
    assert shape == [ROWS, DIM]
    return np.array([values for _, values in rows], np.float32)


def test_checkpoint_prints_a_line_per_table_and_describe_shows_it(durable):
    cli = Cli(durable.address)
    create(cli, "b")
    create(cli, "a")
    push(cli, "a", [1, 2])
    lines = cli.ok("checkpoint").splitlines()
    saved = [SAVED.fullmatch(line) for line in lines]
    assert all(saved), lines
    assert [m.group(1) for m in saved] == ["a", "b"]
    assert saved[0].group(2, 3, 5) == ("1", str(ROWS), "full")
    fields = parse_fields(cli.ok("describe", "a"))
    assert fields["last_checkpoint"].startswith("version 1, full, ")
    assert fields["last_checkpoint"].endswith(saved[0].group(6))

    push(cli, "a", [3])
    [line] = cli.ok("checkpoint", "a", "--incremental").splitlines()
    match = SAVED.fullmatch(line)
    assert match and match.group(1, 2, 3, 5) == ("a", "2", "1", "incremental")
    assert parse_fields(cli.ok("describe", "b"))["last_checkpoint"] \
        .startswith("version 0, full, ")

    message = cli.fails("checkpoint", "a", "nope", code="NOT_FOUND")
    assert message == 'table "nope" not found'


def test_restart_on_the_same_directory_has_the_table_back(durable):
    cli = Cli(durable.address)
    create(cli, "t")
    push(cli, "t", [1, 5])
    cli.ok("checkpoint")
    push(cli, "t", [7])  # Saved by the checkpoint on SIGTERM.
    before = read_rows(cli, "t")
    assert durable.restart(sig=signal.SIGTERM) == 0
    cli = Cli(durable.address)
    fields = parse_fields(cli.ok("describe", "t"))
    assert fields["version"] == "2"
    assert fields["last_checkpoint"].startswith("version 2, full, ")
    np.testing.assert_array_equal(read_rows(cli, "t"), before)


def test_export_is_what_numpy_loads_and_an_np_save_file_imports(
        durable, tmp_path):
    cli = Cli(durable.address)
    create(cli, "t")
    push(cli, "t", [0, 19])
    path = tmp_path / "t.npy"
    out = cli.ok("export", "t", str(path))
    assert out == (f"exported t: {ROWS} rows x {DIM} to {path} "
                   f"({128 + ROWS * DIM * 4} bytes)\n")
    exported = np.load(path)
    assert exported.dtype == np.float32 and exported.shape == (ROWS, DIM)
    # read-rows prints the shortest text that reads back as the same float.
    np.testing.assert_array_equal(exported, read_rows(cli, "t"))

    weights = np.random.default_rng(6).standard_normal(
        (ROWS, DIM)).astype(np.float32)
    np.save(tmp_path / "w.npy", weights)
    create(cli, "u")
    out = cli.ok("import", "u", str(tmp_path / "w.npy"))
    assert out == (f"imported u: {ROWS} rows x {DIM} from "
                   f"{tmp_path / 'w.npy'}, version 1\n")
    np.testing.assert_array_equal(read_rows(cli, "u"), weights)


def test_bad_npy_files_are_invalid_argument_naming_the_file(durable,
                                                           tmp_path):
    cli = Cli(durable.address)
    create(cli, "t")
    cases = {
        "f64.npy": (np.zeros((ROWS, DIM)),
                    "dtype <f8 is not little-endian float32 (<f4)"),
        "flat.npy": (np.zeros(ROWS * DIM, np.float32),
                     f"shape ({ROWS * DIM},) is not 2-D (num_embeddings, "
                     "dim)"),
        "shape.npy": (np.zeros((ROWS + 1, DIM), np.float32),
                      f"shape ({ROWS + 1}, {DIM}) does not match table t "
                      f"[{ROWS}, {DIM}]"),
        "fortran.npy": (np.asfortranarray(np.zeros((ROWS, DIM), np.float32)),
                        "the array is in Fortran (column-major) order; save "
                        "it in C order (numpy.ascontiguousarray)"),
    }
    for name, (array, message) in cases.items():
        np.save(tmp_path / name, array)
        assert cli.fails("import", "t", str(tmp_path / name),
                         code="INVALID_ARGUMENT") == \
            f"{tmp_path / name}: {message}"
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, np.zeros((ROWS, DIM), np.float32))
    truncated.write_bytes(truncated.read_bytes()[:-1])
    assert cli.fails("import", "t", str(truncated),
                     code="INVALID_ARGUMENT").startswith(
        f"{truncated}: truncated: ")
    assert parse_fields(cli.ok("describe", "t"))["version"] == "0"


def test_checkpoint_without_checkpoint_dir_is_failed_precondition(cli):
    create(cli, "t")
    assert cli.fails("checkpoint", code="FAILED_PRECONDITION") == \
        "this server keeps no checkpoints: start it with --checkpoint_dir"


@pytest.mark.parametrize("flags, message", [
    (["--checkpoint_dir=/nonexistent/dir"],
     "--checkpoint_dir=/nonexistent/dir is not an existing directory"),
    (["--checkpoint_interval_s=5"],
     "--checkpoint_interval_s needs --checkpoint_dir"),
    (["--checkpoint_keep=0"], "--checkpoint_keep must be >= 1, got 0"),
    (["--full_checkpoint_every=-1"],
     "--full_checkpoint_every must be >= 0"),
])
def test_bad_checkpoint_flags_exit_2_naming_the_flag(flags, message):
    result = subprocess.run(
        [str(server_binary()), "--listen_address=127.0.0.1:0", *flags],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
