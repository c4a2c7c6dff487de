"""Fixtures of the end-to-end tests: a real server and the real CLI."""

import pytest

from tests.e2e.cli_runner import Cli
from tests.testing.server_process import ServerProcess


@pytest.fixture
def server():
    with ServerProcess() as process:
        yield process


@pytest.fixture
def cli(server):
    return Cli(server.address)
