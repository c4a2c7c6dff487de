"""Fixtures of the durability tests: a checkpoint directory per test and
servers on it (harness.DurableServer), stopped at the end of the test; a
control server without checkpoints (twins.Twins); a table name unique to
each test."""

import grpc
import pytest

from embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.durability.harness import DurableServer
from tests.testing.fixtures import server, table  # noqa: F401


@pytest.fixture
def checkpoint_dir(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    return directory


@pytest.fixture
def durable_server(checkpoint_dir):
    """start(*flags, **ServerProcess options): a started DurableServer on
    the test's checkpoint directory; every one is closed after the test."""
    started = []

    def start(*flags, directory=checkpoint_dir, **kwargs):
        durable = DurableServer(directory, *flags, **kwargs)
        started.append(durable)
        durable.start()
        return durable

    yield start
    for durable in started:
        durable.close()


@pytest.fixture
def durable(durable_server):
    """A DurableServer on the test's checkpoint directory."""
    return durable_server()


@pytest.fixture(scope="module")
def control(server):  # noqa: F811
    """A stub to a plain server (no checkpoints, never restarted): where a
    twin table shows what the durable one would be without restarts."""
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.EmbeddingServiceStub(channel)
