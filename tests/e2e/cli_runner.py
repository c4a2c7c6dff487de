"""Runs the embedding_cli binary and parses what it prints.

    cli = Cli("127.0.0.1:50051")
    out = cli.ok("list")              # stdout; fails the test on error
    err = cli.fails("describe", "x")  # stderr; fails the test on success
    shape, rows = parse_rows(cli.ok("lookup", "t", "--indices=1,2"))
"""

import os
import pathlib
import re
import subprocess

import pytest

_REPO = pathlib.Path(__file__).resolve().parents[2]
_DEFAULT_CLI = _REPO / "build" / "client" / "cpp" / "embedding_cli"


def cli_binary():
    return pathlib.Path(os.environ.get("EMBEDDING_CLI", _DEFAULT_CLI))


class Cli:
    """Runs embedding_cli against one server address."""

    def __init__(self, address):
        self.address = address

    def run(self, *args, timeout="10s"):
        return subprocess.run(
            [str(cli_binary()), f"--server={self.address}",
             f"--timeout={timeout}", *args],
            capture_output=True, text=True, timeout=60)

    def ok(self, *args):
        result = self.run(*args)
        assert result.returncode == 0, (
            f"embedding_cli {' '.join(args)} failed with "
            f"{result.returncode}:\n{result.stderr}")
        return result.stdout

    def fails(self, *args):
        result = self.run(*args)
        assert result.returncode != 0, (
            f"embedding_cli {' '.join(args)} succeeded:\n{result.stdout}")
        assert result.stderr.startswith("error: "), result.stderr
        return result.stderr

    def unless_unimplemented(self, *args):
        """Like ok(), but skips the test when the server lacks the RPC."""
        result = self.run(*args)
        if result.returncode != 0 and "UNIMPLEMENTED" in result.stderr:
            pytest.skip(f"server does not implement {args[0]} yet")
        assert result.returncode == 0, result.stderr
        return result.stdout


def parse_rows(stdout):
    """Parses lookup/read-rows/lookup-bag output.

    Returns (shape, [(label, [floats])]) from "shape [a, b]" and
    "label: v0 v1 ..." lines.
    """
    lines = stdout.splitlines()
    match = re.fullmatch(r"shape \[(.*)\]", lines[0])
    assert match, stdout
    shape = [int(d) for d in match.group(1).split(",") if d.strip()]
    rows = []
    for line in lines[1:]:
        label, _, values = line.partition(":")
        if label == "max_indices":
            continue
        rows.append((label, [float(v) for v in values.split()]))
    return shape, rows


def parse_fields(stdout):
    """Parses describe's "key: value" lines into a dict."""
    fields = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields
