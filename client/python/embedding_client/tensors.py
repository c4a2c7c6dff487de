"""Conversions between numpy arrays and the wire messages, without Python loops.

Rows travel as raw little-endian bytes (`Tensor.data`): `tobytes()` on the way
out and `frombuffer()` on the way in. Lookups and pushes send their indices
the same way, as `indices_le` bytes (`packed_indices`: one copy of the
array, where filling the varint field `indices` costs about 60 ns per index
in `extend(array.tolist())` and serialisation, and the server a varint
decode). The other index fields (bag indices, `offsets`, `max_indices`, bulk
rows; see client/CONTRACT.md) are `repeated int64`, filled with
`field.extend(array.tolist())`: C loops, against boxing one numpy scalar at a
time in `extend(array)`.
"""

import math

import numpy as np

from embedding_client._stubs import pb
from embedding_client.errors import InternalError, InvalidArgumentError

_WIRE_DTYPES = {
    "float32": pb.DTYPE_FLOAT32,
    "float16": pb.DTYPE_FLOAT16,
    "bfloat16": pb.DTYPE_BFLOAT16,
}
_ELEMENT_BYTES = {pb.DTYPE_UNSPECIFIED: 4, pb.DTYPE_FLOAT32: 4,
                  pb.DTYPE_FLOAT16: 2, pb.DTYPE_BFLOAT16: 2}


def wire_dtype(name):
    """Returns the DType enum for "float32", "float16" or "bfloat16"."""
    try:
        return _WIRE_DTYPES[str(name)]
    except KeyError:
        raise InvalidArgumentError(
            f"dtype must be one of {sorted(_WIRE_DTYPES)}, got {name!r}"
        ) from None


def as_indices(indices):
    """Returns `indices` (list, numpy array, torch tensor) as an int64 array."""
    if hasattr(indices, "detach"):  # A torch tensor; avoid importing torch.
        indices = indices.detach().cpu().numpy()
    array = np.asarray(indices)
    if array.size == 0:
        return array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise InvalidArgumentError(
            f"indices must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def fill_indices(field, indices):
    """Appends an int64 array to a `repeated int64` field (flattened)."""
    field.extend(indices.ravel().tolist())


def packed_indices(indices):
    """Returns an int64 array (flattened) as `indices_le` bytes: raw
    little-endian int64."""
    return np.ascontiguousarray(indices.ravel(), dtype="<i8").tobytes()


def indices_of_request(request):
    """The int64 indices of a request that has both `indices` and
    `indices_le` (for servers written in Python: fakes in tests), in
    whichever form it carries them, as the server reads them."""
    if request.indices_le:
        return np.frombuffer(request.indices_le, "<i8")
    return indices_array(request.indices)


def indices_array(field):
    """Returns a `repeated int64` field as an int64 array."""
    return np.fromiter(field, dtype=np.int64, count=len(field))


def as_float32(values):
    """Returns `values` (array-like or torch tensor) as C-contiguous float32."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.ascontiguousarray(values, dtype=np.float32)


def to_tensor(array, message=None):
    """Fills (or creates) a Tensor message from a float32 array."""
    array = as_float32(array)
    if message is None:
        message = pb.Tensor()
    message.dtype = pb.DTYPE_FLOAT32
    message.shape.extend(array.shape)
    message.data = array.astype("<f4", copy=False).tobytes()
    return message


def from_tensor(message, writable=True):
    """Returns a Tensor message as an array.

    float32 and bfloat16 come back as float32 (bfloat16 widened exactly),
    float16 as numpy float16. writable=False saves a copy of float32 and
    float16 data: the array then views the message's (immutable) bytes.
    """
    # Each access of a bytes field copies it: once.
    return _array_of(message.data, tuple(message.shape), message.dtype,
                     writable)


_VARINT, _LEN = 0, 2  # The wire types the reply reader below reads.


def _key(message, field, wire_type):
    """A field's key on the wire: its number << 3 | its wire type."""
    return message.DESCRIPTOR.fields_by_name[field].number << 3 | wire_type


_EMBEDDINGS_KEY = _key(pb.LookupResponse, "embeddings", _LEN)
_TENSOR_KEYS = {_key(pb.Tensor, "dtype", _VARINT): "dtype",
                _key(pb.Tensor, "shape", _VARINT): "shape",
                _key(pb.Tensor, "shape", _LEN): "packed shape",
                _key(pb.Tensor, "data", _LEN): "data"}


def rows_of_reply(raw, writable=True):
    """Returns from_tensor(LookupResponse.FromString(raw).embeddings),
    read straight from the serialized reply `raw` (bytes): parsing it into
    a message and reading `data` would copy the rows twice more.
    writable=False returns a view of `raw` itself (no copy at all).
    Raises InternalError for bytes that are not a LookupResponse."""
    try:
        tensor = (0, 0)
        for key, value in _fields(raw, 0, len(raw)):
            if key == _EMBEDDINGS_KEY:
                tensor = value
        dtype, shape, data = 0, [], (0, 0)
        for key, value in _fields(raw, *tensor):
            name = _TENSOR_KEYS.get(key)
            if name == "dtype":
                dtype = value
            elif name == "data":
                data = value
            elif name == "packed shape":
                shape += _packed_varints(raw, *value)
            elif name == "shape":
                shape.append(value)
        start, stop = data
    except (IndexError, TypeError, ValueError) as error:
        raise InternalError(f"malformed Lookup reply: {error!r}") from None
    return _array_of(np.frombuffer(raw, "<u1", stop - start, start),
                     tuple(shape), dtype, writable)


def _varint(buf, pos):
    """(value, position after it) of the varint at buf[pos]."""
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _packed_varints(buf, pos, end):
    values = []
    while pos < end:
        value, pos = _varint(buf, pos)
        values.append(value)
    return values


def _fields(buf, pos, end):
    """The (key, value) pairs of the message in buf[pos:end]: an int for a
    varint, (start, stop) of the bytes of a length-delimited field, None
    for a fixed-width one."""
    pairs = []
    while pos < end:
        if buf[pos] < 0x80:  # A one-byte key: fields 1 to 15.
            key = buf[pos]
            pos += 1
        else:
            key, pos = _varint(buf, pos)
        wire_type = key & 7
        if wire_type == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire_type == _LEN:
            size, pos = _varint(buf, pos)
            value, pos = (pos, pos + size), pos + size
        elif wire_type in (1, 5):
            value, pos = None, pos + (8 if wire_type == 1 else 4)
        else:
            raise ValueError(f"wire type {wire_type}")
        pairs.append((key, value))
    if pos != end:
        raise ValueError("a field runs past the end of its message")
    return pairs


def _array_of(data, shape, dtype, writable):
    """The array of a Tensor's data (bytes or a uint8 array), shape, dtype."""
    expected = math.prod(shape) * _ELEMENT_BYTES[dtype]
    if len(data) != expected:
        raise InvalidArgumentError(
            f"tensor of shape {list(shape)} carries {len(data)} bytes, "
            f"expected {expected}")
    if dtype == pb.DTYPE_BFLOAT16:
        upper = np.frombuffer(data, dtype="<u2").astype(np.uint32)
        return (upper << 16).view(np.float32).reshape(shape)
    wire = "<f2" if dtype == pb.DTYPE_FLOAT16 else "<f4"
    array = np.frombuffer(data, dtype=wire).reshape(shape)
    return array.copy() if writable else array


def round_to_wire(array, name):
    """Returns float32 `array` as a server's reply of dtype `name` reads
    back (see from_tensor): float16 rounded to nearest even, bfloat16 rounded
    to nearest even and widened to float32 (common/float16.cc's rounding;
    the values are finite)."""
    if name == "float16":
        return array.astype(np.float16)
    if name == "bfloat16":
        bits = np.ascontiguousarray(array, np.float32).view(np.uint32)
        odd = (bits >> 16) & 1
        rounded = ((bits + np.uint32(0x7FFF) + odd) >> 16) << 16
        return rounded.astype(np.uint32).view(np.float32)
    return array
