"""Fixtures: a real embedding_server per test module, an EmbeddingClient to
it (small_client: both with 1 MiB messages, so bulk transfers need many),
a table name unique to each test, and the training example as a module.

Run with the build's stubs on the path, from the repository root:
    PYTHONPATH=build/python:client/python:. /usr/bin/python3 -m pytest tests/python
"""

import importlib.util
import pathlib

import pytest

from embedding_client import EmbeddingClient
from tests.testing.fixtures import client, server, table  # noqa: F401
from tests.testing.server_process import ServerProcess

REPO = pathlib.Path(__file__).resolve().parents[2]
# The message limit of small_client and its server.
SMALL_MESSAGE_BYTES = 1 << 20


@pytest.fixture(scope="module")
def small_client():
    """A client to a server of its own, both limited to 1 MiB messages."""
    flag = f"--max_message_bytes={SMALL_MESSAGE_BYTES}"
    with ServerProcess(flag) as server:
        with EmbeddingClient(server.address,
                             max_message_bytes=SMALL_MESSAGE_BYTES) as c:
            yield c


@pytest.fixture(scope="session")
def example():
    """examples/matrix_factorization.py, imported as a module."""
    path = REPO / "examples" / "matrix_factorization.py"
    spec = importlib.util.spec_from_file_location("matrix_factorization",
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
