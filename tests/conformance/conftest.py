"""Fixtures: one real embedding_server per test module, a stub to it, and a
table name unique to each test."""

import itertools
import re

import grpc
import pytest

from embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.testing.server_process import ServerProcess

_names = itertools.count()


@pytest.fixture(scope="module")
def server():
    with ServerProcess() as process:
        yield process


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield pb_grpc.EmbeddingServiceStub(channel)


@pytest.fixture
def table(request):
    """A table name for this test ([A-Za-z0-9_.-], unique in the session)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:100]
    return f"{name}.{next(_names)}"
