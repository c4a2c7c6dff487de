"""export_npy / import_npy: an export is what numpy.load reads as the table
(and byte for byte what numpy.save writes), a numpy.save file imports, bad
files are InvalidArgumentError naming the file before anything is written,
and both directions move one bulk message at a time, never the table.

The server and the client run with 1 MiB messages (small_client), so the
tables below (3 MiB and 24 MiB) need several chunks each way.
"""

import re
import tracemalloc

import grpc
import numpy as np
import pytest
import torch

from embedding_client import EmbeddingClient
from embedding_client.client import BULK_MESSAGE_BYTES
from tests.testing.errors import raises
from tests.testing.server_process import ServerProcess

ROWS, DIM = 24_000, 32  # 3 MiB of float32.



def _weights(rows, seed):
    return np.random.default_rng(seed).standard_normal(
        (rows, DIM)).astype(np.float32)


def test_export_is_the_table_as_numpy_saves_it(small_client, table,
                                               tmp_path):
    small_client.create_table(table, ROWS, DIM, weights=_weights(ROWS, 0))
    small_client.push_gradients(table, [0, ROWS - 1],
                                np.ones((2, DIM), np.float32))
    path = tmp_path / "t.npy"
    assert small_client.export_npy(table, path) == ROWS
    exported = np.load(path)
    assert exported.dtype == np.float32 and exported.shape == (ROWS, DIM)
    np.testing.assert_array_equal(exported, small_client.read_rows(table))
    np.save(tmp_path / "numpy.npy", exported)
    assert path.read_bytes() == (tmp_path / "numpy.npy").read_bytes()
    assert not (tmp_path / "t.npy.partial").exists()

    embedding = torch.nn.Embedding.from_pretrained(torch.from_numpy(exported))
    with torch.no_grad():
        local = embedding(torch.tensor([[1, 2], [ROWS - 1, 5]])).numpy()
    np.testing.assert_array_equal(
        local, small_client.lookup(table, [[1, 2], [ROWS - 1, 5]]))


def test_numpy_saved_file_imports(small_client, table, tmp_path):
    weights = _weights(ROWS, 1)
    np.save(tmp_path / "w.npy", weights)
    small_client.create_table(table, ROWS, DIM)
    assert small_client.import_npy(table, tmp_path / "w.npy") == ROWS
    np.testing.assert_array_equal(small_client.read_rows(table), weights)


def test_import_of_an_export_round_trips(small_client, table, tmp_path):
    small_client.create_table(table, ROWS, DIM, weights=_weights(ROWS, 2))
    small_client.export_npy(table, tmp_path / "t.npy")
    small_client.create_table(f"{table}.copy", ROWS, DIM)
    small_client.import_npy(f"{table}.copy", str(tmp_path / "t.npy"))
    np.testing.assert_array_equal(small_client.read_rows(f"{table}.copy"),
                                  small_client.read_rows(table))


class _RecordingStub:
    """The client's stub, recording the size of every WriteRows request and
    ReadRows reply."""

    def __init__(self, stub):
        self._stub = stub
        self.sizes = {"WriteRows": [], "ReadRows": []}

    def __getattr__(self, name):
        return getattr(self._stub, name)

    def WriteRows(self, request, **kwargs):  # noqa: N802 (gRPC's name)
        self.sizes["WriteRows"].append(request.ByteSize())
        return self._stub.WriteRows(request, **kwargs)

    def ReadRows(self, request, **kwargs):  # noqa: N802
        return _RecordedCall(self._stub.ReadRows(request, **kwargs),
                             self.sizes["ReadRows"])


class _RecordedCall:
    def __init__(self, call, sizes):
        self._call = call
        self._sizes = sizes

    def __iter__(self):
        for reply in self._call:
            self._sizes.append(reply.ByteSize())
            yield reply

    def cancel(self):
        self._call.cancel()


def test_one_chunk_at_a_time_each_way(small_client, table, tmp_path,
                                      monkeypatch):
    rows = 8 * ROWS  # 24 MiB.
    small_client.create_table(table, rows, DIM, weights=_weights(rows, 3))
    recording = _RecordingStub(small_client._stub)
    monkeypatch.setattr(small_client, "_stub", recording)
    limit = min(small_client.max_message_bytes, BULK_MESSAGE_BYTES)
    path = tmp_path / "t.npy"

    tracemalloc.start()
    try:
        small_client.export_npy(table, path)
        _, export_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        small_client.import_npy(table, path)
        _, import_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    for method, sizes in recording.sizes.items():
        assert len(sizes) >= 24, method
        assert max(sizes) <= limit, method
    # Python's own allocations (numpy's included) stay within a few chunks
    # (gRPC Python alone peaks near 3x a message while receiving one),
    # nowhere near the table.
    table_bytes = rows * DIM * 4
    assert export_peak < table_bytes / 4, export_peak
    assert import_peak < table_bytes / 4, import_peak


def _npy_file(path, header, data_bytes):
    """A .npy file of the dict `header` (numpy's spelling) and zero data."""
    text = header + " " * (63 - (10 + len(header)) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") +
                     text.encode() + bytes(data_bytes))
    return path


@pytest.mark.parametrize("name, write, message", [
    ("float64", lambda p: np.save(p, np.zeros((10, DIM))),
     "dtype <f8 is not little-endian float32 (<f4)"),
    ("big-endian", lambda p: np.save(p, np.zeros((10, DIM), ">f4")),
     "dtype >f4 is not little-endian float32 (<f4)"),
    ("one-dimensional", lambda p: np.save(p, np.zeros(10 * DIM, np.float32)),
     "shape (320,) is not 2-D (num_embeddings, dim)"),
    ("wrong shape", lambda p: np.save(p, np.zeros((DIM, 10), np.float32)),
     "shape (32, 10) does not match table {table} [10, 32]"),
    ("fortran order",
     lambda p: np.save(p, np.asfortranarray(np.zeros((10, DIM), np.float32))),
     "the array is in Fortran (column-major) order; save it in C order "
     "(numpy.ascontiguousarray)"),
    ("truncated",
     lambda p: _npy_file(p, "{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (10, 32), }", 10 * DIM * 4 - 3),
     "truncated: its header says (10, 32) float32, 1280 bytes of data, but "
     "1277 bytes follow the header"),
    ("not npy", lambda p: p.write_bytes(b"just text"),
     "not a .npy file (it does not start with \\x93NUMPY)"),
])
def test_unfit_file_is_invalid_argument_naming_it(small_client, table,
                                                  tmp_path, name, write,
                                                  message):
    small_client.create_table(table, 10, DIM)
    before = small_client.read_rows(table)
    path = tmp_path / "bad.npy"
    write(path)
    expected = f"{path}: {message.format(table=table)}"
    with raises(grpc.StatusCode.INVALID_ARGUMENT,
                match=re.escape(expected)) as error:
        small_client.import_npy(table, path)
    assert error.value.message == expected
    np.testing.assert_array_equal(small_client.read_rows(table), before)
    assert small_client.get_table(table).version == 0


def test_missing_file_and_unknown_table(small_client, table, tmp_path):
    small_client.create_table(table, 10, DIM)
    with pytest.raises(FileNotFoundError):
        small_client.import_npy(table, tmp_path / "missing.npy")
    with raises(grpc.StatusCode.NOT_FOUND):
        small_client.export_npy("nope", tmp_path / "nope.npy")
    assert not list(tmp_path.iterdir())  # No file, no .partial.
    small_client.export_npy(table, tmp_path / "t.npy")
    with raises(grpc.StatusCode.NOT_FOUND):
        small_client.import_npy("nope", tmp_path / "t.npy")


def test_sharded_table_imports_its_rows_and_refuses_export(tmp_path, table):
    weights = _weights(10, 4)
    np.save(tmp_path / "w.npy", weights)
    with ServerProcess("--shard_index=1", "--shard_count=2") as server:
        with EmbeddingClient(server.address) as client:
            client.create_table(table, 10, DIM)
            client.import_npy(table, tmp_path / "w.npy")
            ids, rows = client.read_rows(table, return_indices=True)
            np.testing.assert_array_equal(ids, [1, 3, 5, 7, 9])
            np.testing.assert_array_equal(rows, weights[ids])
            with raises(grpc.StatusCode.FAILED_PRECONDITION,
                        match="split over 2 servers"):
                client.export_npy(table, tmp_path / "t.npy")
