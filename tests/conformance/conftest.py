"""Fixtures: one real embedding_server per test module, a stub to it (and
the Python client, for its typed errors and option classes), and a table
name unique to each test."""


import grpc
import pytest

from embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.testing.fixtures import client, server, table  # noqa: F401


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield pb_grpc.EmbeddingServiceStub(channel)
