"""Where the tests find the project's binaries: $EMBEDDING_SERVER,
$EMBEDDING_CLI, $EMBEDDING_RESHARD (ctest sets them) and $EMBEDDING_BENCH,
else the default build tree, build/. sanitized() tells whether they are
the ASan + UBSan build's (ctest sets $EMBEDDING_SANITIZED=1 there), whose
memory use and speed are not the release binaries'."""

import os
import pathlib

_BUILD = pathlib.Path(__file__).resolve().parents[2] / "build"


def _binary(variable, default):
    return pathlib.Path(os.environ.get(variable) or _BUILD / default)


def server_binary():
    return _binary("EMBEDDING_SERVER", "server/embedding_server")


def cli_binary():
    return _binary("EMBEDDING_CLI", "client/cpp/embedding_cli")


def reshard_binary():
    return _binary("EMBEDDING_RESHARD", "server/tools/embedding_reshard")


def bench_binary():
    return _binary("EMBEDDING_BENCH", "tests/bench/embedding_bench")


def sanitized():
    """True when the binaries are built with AddressSanitizer (the
    EMBEDDING_SANITIZE build): RSS is then several times the release
    binary's, so memory bounds do not apply."""
    return os.environ.get("EMBEDDING_SANITIZED", "") not in ("", "0")
