"""The files of export_npy and import_npy: float32 [rows, dim] in C order;
and those of export_npz and import_npz: ids int64 [n], weights [n, dim].

Headers are numpy's own (numpy.lib.format), so an export is byte for byte
what numpy.save writes for the same array, and import takes what numpy.save
writes. The checks mirror the C++ client's (client/cpp/npy_format.cc), with
the same messages.

    with open(path, "wb") as f:
        write_header(f, rows, dim)      # then rows * dim float32, row-major
    rows, dim = check_file(path)        # InvalidArgumentError if unfit
"""

import contextlib
import os
import zipfile

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


# The .npz files of export_npz and import_npz: a zip of ids.npy (int64 [n])
# and weights.npy (float32 [n, dim]), as numpy.savez writes them.
_INT64 = np.dtype("<i8")


@contextlib.contextmanager
def partial_file(path):
    """Yields `path`.partial open for writing, renamed to `path` when the
    block ends, removed if it raises."""
    partial = f"{path}.partial"
    try:
        with open(partial, "wb") as file:
            yield file
        os.replace(partial, path)
    except BaseException:
        try:
            os.remove(partial)
        except OSError:
            pass
        raise


def save_npz(path, ids, weights):
    """Writes `ids` and `weights` to the .npz file `path` (stored, not
    compressed), as path.partial renamed when complete."""
    # A file object: savez would otherwise append ".npz" to the name.
    with partial_file(path) as file:
        np.savez(file, ids=np.asarray(ids, _INT64),
                 weights=np.asarray(weights, _FLOAT32))


def load_npz(path):
    """Returns (ids, weights) of a .npz file holding `ids` (int64 [n], each
    once) and `weights` (float32 [n, dim]), stored as numpy.savez writes
    them. Raises InvalidArgumentError naming the file otherwise (each
    member's header is checked against its size before its data is read,
    and its CRC-32 as it is read), and OSError when it cannot be read."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise _invalid(path, "not a .npz file (a zip of .npy arrays)"
                       ) from None
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        names = {name[:-len(".npy")] for name in members
                 if name.endswith(".npy")}
        missing = {"ids", "weights"} - names
        if missing:
            raise _invalid(path, f"no {' or '.join(sorted(missing))} array "
                           f"(it holds {sorted(names)}); expected "
                           "ids int64 [n] and weights float32 [n, dim]")
        ids = _load_member(archive, members["ids.npy"], path, "ids",
                           _INT64, "int64 (<i8) [n]", 1)
        weights = _load_member(archive, members["weights.npy"], path,
                               "weights", _FLOAT32,
                               "float32 (<f4) [n, dim]", 2)
    if len(ids) != len(weights):
        raise _invalid(path, f"{len(ids)} ids for {len(weights)} rows of "
                       "weights")
    # Refused before any write, however many requests the rows take.
    unique, first = np.unique(ids, return_index=True)
    if len(unique) != len(ids):
        repeated = np.setdiff1d(np.arange(len(ids)), first)[0]
        raise _invalid(path, f"id {ids[repeated]} at position {repeated} is "
                       "written twice")
    return ids, weights


def _load_member(archive, info, path, name, dtype, expected, ndim):
    """The array of member `info`, of `dtype` and `ndim` dimensions in C
    order, its size checked against its header before it is read."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise _invalid(path, f"{info.filename} is compressed; write the file "
                       "with numpy.savez, not savez_compressed")
    try:
        with archive.open(info) as member:
            shape, fortran_order, found = _read_header(
                member, f"{path} ({info.filename})")
            if found != dtype or len(shape) != ndim or fortran_order:
                raise _invalid(path, f"{name} is {found.str} of shape "
                               f"{list(shape)}, expected {expected}")
            data_bytes = int(np.prod(shape)) * dtype.itemsize
            follows = info.file_size - member.tell()
            if follows != data_bytes:
                raise _invalid(path, f"{info.filename}: its header says "
                               f"{data_bytes} bytes of data, but {follows} "
                               "bytes follow it")
            # Reading to the member's end checks its CRC-32.
            data = member.read(data_bytes)
    except zipfile.BadZipFile as error:
        raise _invalid(path, f"{info.filename}: {error}") from None
    return np.frombuffer(data, dtype).reshape(shape)
