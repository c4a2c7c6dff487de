"""The client's fast path against a real server: lookups and pushes send
their indices as packed `indices_le` bytes, with the same results as the
`repeated int64` form that the C++ client and the CLI send, from every kind
of index input; lookups read their rows straight from the reply's bytes
(copy=False: a read-only view of them)."""

import numpy as np
import pytest
import torch

from embedding_client import Adagrad, InvalidArgumentError
from embedding_client._stubs import pb

ROWS, DIM = 50, 8


@pytest.fixture
def twin_tables(client, table):
    """Two identical Adagrad tables: (packed one, varint one)."""
    names = (f"{table}_packed", f"{table}_varint")
    for name in names:
        client.create_table(name, ROWS, DIM, optimizer=Adagrad(lr=0.5),
                            seed=11)
    return names


def varint_lookup(client, table, indices):
    """A Lookup sent with `indices`, as the C++ client sends it."""
    request = pb.LookupRequest(table=table, indices=indices.ravel().tolist())
    response = client._stub.Lookup(request)
    return np.frombuffer(response.embeddings.data, np.float32).reshape(
        indices.shape + (DIM,))


@pytest.mark.parametrize("make", [
    lambda a: a,
    lambda a: a.astype(np.int32),
    lambda a: a.astype(np.uint16),
    lambda a: a.tolist(),
    lambda a: torch.from_numpy(a),
    lambda a: np.asfortranarray(a),
    lambda a: np.repeat(a, 2, axis=1)[:, ::2],  # Not contiguous.
], ids=["int64", "int32", "uint16", "list", "torch", "fortran", "strided"])
def test_lookup_matches_the_varint_form(client, twin_tables, make):
    packed, _ = twin_tables
    indices = np.array([[3, 49, 0], [3, 17, 28]], np.int64)
    rows = client.lookup(packed, make(indices))
    assert rows.shape == (2, 3, DIM)
    np.testing.assert_array_equal(rows, varint_lookup(client, packed,
                                                      indices))


def test_lookup_copy_false_views_the_reply(client, twin_tables):
    packed, _ = twin_tables
    rows = client.lookup(packed, [[1, 2]], copy=False)
    assert rows.shape == (1, 2, DIM) and not rows.flags.writeable
    assert not rows.flags.owndata
    with pytest.raises(ValueError):
        rows[0, 0, 0] = 1.0
    own = client.lookup(packed, [[1, 2]])  # The default: a copy of its own.
    assert own.flags.writeable
    np.testing.assert_array_equal(own, rows)
    for dtype in ("float16", "bfloat16"):
        np.testing.assert_array_equal(
            client.lookup(packed, [1, 2], dtype=dtype, copy=False),
            client.lookup(packed, [1, 2], dtype=dtype))


def test_lookup_stream_sends_packed_indices(client, twin_tables):
    packed, _ = twin_tables
    batches = [np.array([1, 2, 3]), np.array([[4], [5]], np.int32)]
    results = list(client.lookup_stream(packed, iter(batches), copy=False))
    for batch, rows in zip(batches, results):
        np.testing.assert_array_equal(
            rows, varint_lookup(client, packed, batch.astype(np.int64)))


def test_push_matches_the_varint_form(client, twin_tables):
    packed, varint = twin_tables
    indices = torch.tensor([[4, 9], [4, 33]])
    grad = np.linspace(-1, 1, 4 * DIM, dtype=np.float32).reshape(2, 2, DIM)
    result = client.push_gradients(packed, indices, torch.from_numpy(grad))
    assert result.rows_updated == 3
    request = pb.PushGradientsRequest(
        table=varint, indices=indices.ravel().tolist(), client_id="varint",
        sequence=1)
    request.grad.dtype = pb.DTYPE_FLOAT32
    request.grad.shape.extend([4, DIM])
    request.grad.data = grad.tobytes()
    client._stub.PushGradients(request)
    np.testing.assert_array_equal(client.read_rows(packed),
                                  client.read_rows(varint))


def test_bad_packed_indices_keep_the_servers_messages(client, twin_tables):
    packed, _ = twin_tables
    with pytest.raises(InvalidArgumentError, match="index 50 at position 2"):
        client.lookup(packed, [1, 2, ROWS])
    with pytest.raises(InvalidArgumentError, match="index -1 at position 0"):
        client.push_gradients(packed, [-1], np.zeros((1, DIM), np.float32))
    with pytest.raises(InvalidArgumentError, match="indices must be integers"):
        client.lookup(packed, np.array([1.0]))


def test_reply_reader_matches_protobuf():
    """tensors.rows_of_reply reads what protobuf parses, whatever the field
    order, with unknown fields skipped; bad bytes are InternalError."""
    from embedding_client import tensors
    from embedding_client.errors import InternalError
    rows = np.arange(3 * 300, dtype=np.float32).reshape(3, 300)
    tensor = pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[3, 300],
                       data=rows.tobytes())
    reply = pb.LookupResponse(embeddings=tensor).SerializeToString()
    np.testing.assert_array_equal(tensors.rows_of_reply(reply), rows)
    # Data first, an unpacked shape, an unknown fixed64 and an unknown
    # length-delimited field.
    fields = (b"\x1a" + _varint(len(tensor.data)) + tensor.data +
              b"\x10\x03\x10\xac\x02" + b"\x08\x01" +
              b"\x41" + bytes(8) + b"\x7a\x02ab")
    shuffled = (b"\x0a" + _varint(len(fields)) + fields +
                b"\x11" + bytes(8))
    np.testing.assert_array_equal(tensors.rows_of_reply(shuffled), rows)
    with pytest.raises(InternalError, match="malformed Lookup reply"):
        tensors.rows_of_reply(reply[:-5] + b"\x0a")
    with pytest.raises(InternalError, match="malformed Lookup reply"):
        tensors.rows_of_reply(b"\x0b")  # Wire type 3.


def _varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
