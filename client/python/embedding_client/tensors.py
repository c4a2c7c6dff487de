"""Conversions between numpy arrays and the wire messages, without Python loops.

Rows travel as raw little-endian bytes (`Tensor.data`): `tobytes()` on the way
out and `frombuffer()` on the way in. Index arrays go into the packed
`repeated int64` fields with `field.extend(array.tolist())`: both steps are C
loops (about 90 ns per index including serialisation prep, against about
110 ns for `extend(array)`, which boxes one numpy scalar at a time).
"""

import numpy as np

from embedding_client._stubs import pb
from embedding_client.errors import InvalidArgumentError

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
    shape = tuple(message.shape)
    dtype = message.dtype
    data = message.data  # Each access of a bytes field copies it: once.
    expected = int(np.prod(shape, dtype=np.int64)) * _ELEMENT_BYTES[dtype]
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
