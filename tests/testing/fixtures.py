"""Pytest fixtures shared by the Python suites; a conftest imports them:

    from tests.testing.fixtures import client, server, table  # noqa: F401
"""

import itertools
import re

import pytest

from embedding_client import EmbeddingClient
from tests.testing.server_process import ServerProcess

_names = itertools.count()


@pytest.fixture(scope="module")
def server():
    """One real embedding_server per test module."""
    with ServerProcess() as process:
        yield process


@pytest.fixture(scope="module")
def client(server):
    """An EmbeddingClient (the Python package) to the module's server."""
    with EmbeddingClient(server.address) as connection:
        yield connection


@pytest.fixture
def table(request):
    """A table name for this test ([A-Za-z0-9_.-], unique in the session)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:100]
    return f"{name}.{next(_names)}"
