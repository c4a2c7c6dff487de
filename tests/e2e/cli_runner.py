"""Runs the embedding_cli binary and parses what it prints.

    cli = Cli("127.0.0.1:50051")
    secure = Cli(address, "--tls_ca_file=ca.crt", env={"EMBEDDING_TOKEN": t})
    out = cli.ok("list")              # stdout; fails the test on error
    err = cli.fails("describe", "x", code="NOT_FOUND")
    shape, rows = parse_rows(cli.ok("lookup", "t", "--indices=1,2"))
"""

import os
import re
import subprocess

from tests.testing.binaries import cli_binary


class Cli:
    """Runs embedding_cli against one server address (or a comma-separated
    cluster), with `flags` before each command's (e.g. --tls_ca_file) and
    `env`'s variables set on top of the test's environment (e.g.
    EMBEDDING_TOKEN; a value None removes the variable)."""

    def __init__(self, address, *flags, env=None):
        self.address = address
        self.flags = list(flags)
        self.env = dict(os.environ)
        for name, value in (env or {}).items():
            if value is None:
                self.env.pop(name, None)
            else:
                self.env[name] = value

    def run(self, *args, timeout="10s"):
        return subprocess.run(
            [str(cli_binary()), f"--server={self.address}",
             f"--timeout={timeout}", *self.flags, *args],
            capture_output=True, text=True, timeout=60, env=self.env)

    def ok(self, *args):
        result = self.run(*args)
        assert result.returncode == 0, (
            f"embedding_cli {' '.join(args)} failed with "
            f"{result.returncode}:\n{result.stderr}")
        return result.stdout

    def fails(self, *args, code):
        """Runs a command that must fail with `code` (a gRPC code name, or a
        tuple of them): exit status 1 and "error: CODE: message" on stderr.
        Returns the message."""
        result = self.run(*args)
        assert result.returncode == 1, (
            f"embedding_cli {' '.join(args)} exited with "
            f"{result.returncode}:\n{result.stdout}{result.stderr}")
        codes = (code,) if isinstance(code, str) else code
        match = re.fullmatch(r"error: ([A-Z_]+): (.*)\n", result.stderr,
                             re.DOTALL)
        assert match and match.group(1) in codes, (
            f"embedding_cli {' '.join(args)}: expected {' or '.join(codes)}, "
            f"got:\n{result.stderr}")
        return match.group(2)


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
