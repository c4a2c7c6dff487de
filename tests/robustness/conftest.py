"""Fixtures of the robustness tests: real embedding_server processes with
the small limits of limits.py, stopped at the end of each test, and raw
channels to them."""

import pytest

from tests.robustness import limits
from tests.robustness.wire import open_channel, stub
from tests.testing.server_process import ServerProcess


# What ASan and UBSan print when they find something.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "runtime error:",
                     "ERROR: LeakSanitizer")


@pytest.fixture
def start_server():
    """start(*flags): a started ServerProcess with `flags` (limits'
    server_flags() when none are given); all are closed after the test."""
    started = []

    def start(*flags, **kwargs):
        server = ServerProcess(*(flags or limits.server_flags()), **kwargs)
        started.append(server)
        server.start()
        return server

    yield start
    reports = [server.log() for server in started]
    for server in started:
        server.close()
    for log in reports:
        # The sanitizer build halts on the first report; say what it was.
        for marker in SANITIZER_REPORTS:
            assert marker not in log, f"server log:\n{log[-8000:]}"


@pytest.fixture
def server(start_server):
    """A server with limits.server_flags()."""
    return start_server()


@pytest.fixture
def channel(server):
    """A raw channel to `server`, without client-side size limits."""
    with open_channel(server.address) as opened:
        yield opened


@pytest.fixture
def api(channel):
    """The generated stub on `channel`."""
    return stub(channel)
