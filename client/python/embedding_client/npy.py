"""The .npy files of export_npy and import_npy: float32 [rows, dim] in C order.

Headers are numpy's own (numpy.lib.format), so an export is byte for byte
what numpy.save writes for the same array, and import takes what numpy.save
writes. The checks mirror the C++ client's (client/cpp/npy_format.cc), with
the same messages.

    with open(path, "wb") as f:
        write_header(f, rows, dim)      # then rows * dim float32, row-major
    rows, dim = check_file(path)        # InvalidArgumentError if unfit
"""

import os

import numpy as np

from embedding_client.errors import InvalidArgumentError

_MAGIC = b"\x93NUMPY"
_FLOAT32 = np.dtype("<f4")


def write_header(file, rows, dim):
    """Writes the .npy 1.0 header of a float32 C-order [rows, dim] array."""
    np.lib.format.write_array_header_1_0(
        file, {"descr": _FLOAT32.str, "fortran_order": False,
               "shape": (rows, dim)})


def _invalid(path, what):
    return InvalidArgumentError(f"{path}: {what}")


def _read_header(file, path):
    """(shape, fortran_order, dtype) of the header at the file's start."""
    if file.read(len(_MAGIC)) != _MAGIC:
        raise _invalid(path,
                       "not a .npy file (it does not start with \\x93NUMPY)")
    file.seek(0)
    try:
        version = np.lib.format.read_magic(file)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise _invalid(path, f".npy format version {version[0]}."
                           f"{version[1]} is not supported (1.0, 2.0, 3.0 "
                           "are)")
        # 3.0 differs from 2.0 only in allowing UTF-8 field names, which a
        # float32 array has none of.
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(file)
        return np.lib.format.read_array_header_2_0(file)
    except ValueError as error:
        raise _invalid(path, f"truncated or malformed .npy header: {error}"
                       ) from None


def check_file(path):
    """Returns (rows, dim) of a .npy file holding a float32 C-order 2-D
    array whose size matches its header. Raises InvalidArgumentError naming
    the file otherwise, and OSError when it cannot be read."""
    with open(path, "rb") as file:
        shape, fortran_order, dtype = _read_header(file, path)
        if dtype != _FLOAT32:
            raise _invalid(path, f"dtype {dtype.str} is not little-endian "
                           "float32 (<f4)")
        if fortran_order:
            raise _invalid(path, "the array is in Fortran (column-major) "
                           "order; save it in C order "
                           "(numpy.ascontiguousarray)")
        if len(shape) != 2:
            raise _invalid(path,
                           f"shape {shape} is not 2-D (num_embeddings, dim)")
        expected = shape[0] * shape[1] * _FLOAT32.itemsize
        found = os.fstat(file.fileno()).st_size - file.tell()
        if found != expected:
            raise _invalid(path, (
                f"{'truncated: ' if found < expected else ''}its header "
                f"says ({shape[0]}, {shape[1]}) float32, {expected} bytes of "
                f"data, but {found} bytes follow the header"))
    return shape
