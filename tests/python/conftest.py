"""Fixtures: a real embedding_server per test module, an EmbeddingClient to
it, a table name unique to each test, and the training example as a module.

Run with the build's stubs on the path, from the repository root:
    PYTHONPATH=build/python:client/python:. /usr/bin/python3 -m pytest tests/python
"""

import importlib.util
import pathlib

import pytest

from tests.testing.fixtures import client, server, table  # noqa: F401

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def example():
    """examples/matrix_factorization.py, imported as a module."""
    path = REPO / "examples" / "matrix_factorization.py"
    spec = importlib.util.spec_from_file_location("matrix_factorization",
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
