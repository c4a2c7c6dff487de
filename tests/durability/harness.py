"""What the durability tests share: a server on a checkpoint directory whose
client follows it across restarts, and bit-exact comparisons.

    with DurableServer(directory) as durable:
        durable.client.create_table("t", 100, 8)
        durable.client.save_checkpoint(["t"])
        before = durable.client.read_rows("t")
        durable.restart(sig=signal.SIGKILL)     # kill -9, start on the dir
        assert_same_bits(durable.client.read_rows("t"), before)
"""

import pathlib
import signal

import grpc
import numpy as np

from embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedding_client import EmbeddingClient
from tests.testing.server_process import ServerProcess


class DurableServer:
    """A real embedding_server on `checkpoint_dir` with an EmbeddingClient
    (and a raw stub, for tests/conformance/oracle.py) connected anew after
    each restart: a new client, so with a client_id of its own (see
    twins.Twins for a client that keeps its id across restarts)."""

    def __init__(self, checkpoint_dir, *flags, **kwargs):
        self.checkpoint_dir = pathlib.Path(checkpoint_dir)
        self.process = ServerProcess(*flags, checkpoint_dir=checkpoint_dir,
                                     **kwargs)
        self.client = None
        self.stub = None
        self._channel = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def address(self):
        return self.process.address

    def start(self, wait_serving=True):
        self.process.start(wait_serving=wait_serving)
        self._connect()

    def restart(self, sig=signal.SIGTERM):
        """Stops the server with `sig`, starts it on the same directory and
        waits for SERVING; returns the exit code of the stop."""
        self._disconnect()
        code = self.process.restart(sig=sig)
        self._connect()
        return code

    def kill(self):
        """kill -9; start() brings it back."""
        self._disconnect()
        return self.process.kill()

    def stop(self, sig=signal.SIGTERM):
        self._disconnect()
        return self.process.stop(sig=sig)

    def close(self):
        self._disconnect()
        self.process.close()

    def log(self):
        return self.process.log()

    def _connect(self):
        self.client = EmbeddingClient(self.address, timeout=60)
        self._channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.EmbeddingServiceStub(self._channel)

    def _disconnect(self):
        if self.client is not None:
            self.client.close()
            self._channel.close()
        self.client = self.stub = self._channel = None


# --- Comparisons -------------------------------------------------------------

def assert_same_bits(got, expected, what=""):
    """Equal to the bit (NaN-safe, -0.0 != 0.0), same shape and dtype."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype, (
        f"{what}: {got.dtype}{list(got.shape)} != "
        f"{expected.dtype}{list(expected.shape)}")
    unsigned = f"u{got.dtype.itemsize}"  # Compares bits, not values.
    differ = np.flatnonzero(np.ascontiguousarray(got).reshape(-1).view(
        unsigned) != np.ascontiguousarray(expected).reshape(-1).view(unsigned))
    assert differ.size == 0, (
        f"{what}: {differ.size} of {got.size} elements differ, first at flat "
        f"index {differ[0]}: {got.reshape(-1)[differ[0]]!r} != "
        f"{expected.reshape(-1)[differ[0]]!r}")


def assert_same_checkpoint_arrays(got, expected, what=""):
    """Two load_checkpoint() results hold the same arrays, bit for bit."""
    assert sorted(got) == sorted(expected), (
        f"{what}: files {sorted(got)} != {sorted(expected)}")
    for name in expected:
        assert_same_bits(got[name], expected[name], f"{what}: {name}.npy")


def assert_serving(client, table):
    """Lookups and pushes on `table` still work (the server kept serving)."""
    info = client.get_table(table)
    row = 1 if info.padding_idx == 0 else 0
    assert client.lookup(table, [row]).shape == (1, info.embedding_dim)
    result = client.push_gradients(
        table, [row], np.ones((1, info.embedding_dim), np.float32))
    assert (result.rows_updated, result.duplicate) == (1, False)
    assert client.get_table(table).version == info.version + 1
