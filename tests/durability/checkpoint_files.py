"""The checkpoints on disk, read (and damaged) without the server, as
docs/checkpoint_format.md lays them out:

    DIRECTORY/<table>/<sequence, 8+ digits>.full|.delta/
        checkpoint.meta   32-byte header (magic "EMBDCKPT", format version,
                          reserved, payload length, XXH3-64 of bytes 8..24
                          and the payload) + a CheckpointMetadata message
        rows.npy weights.npy state.npy
    DIRECTORY/<table>/.tmp-...   a save in progress

    arrays = load_checkpoint(checkpoints(directory, "t")[-1])
    rewrite_metadata_header(path, version=2)   # checksum fixed up
"""

import ctypes
import pathlib
import re
import struct

import numpy as np

CHECKPOINT_NAME = re.compile(r"(\d{8,})\.(full|delta)")
TEMPORARY_PREFIX = ".tmp-"
METADATA = "checkpoint.meta"
ARRAYS = ("rows", "weights", "state")
FILES = (METADATA, *(f"{name}.npy" for name in ARRAYS))

# magic, format version, reserved, payload length, checksum.
_HEADER = struct.Struct("<8sIIQQ")
_CHECKSUMMED = slice(8, 24)  # Version, reserved and length.


def _xxh3_64():
    """XXH3-64 (seed 0) from Debian's libxxhash, the library the server
    links: there is no Debian package of the Python binding."""
    function = ctypes.CDLL("libxxhash.so.0").XXH3_64bits
    function.restype = ctypes.c_uint64
    function.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return lambda data: function(data, len(data))


xxh3_64 = _xxh3_64()


def table_dir(checkpoint_dir, table):
    # A leading '.' is written %2E (so tables "." and ".." stay inside).
    name = "%2E" + table[1:] if table.startswith(".") else table
    return pathlib.Path(checkpoint_dir) / name


def checkpoints(checkpoint_dir, table):
    """The table's complete checkpoints, oldest first."""
    directory = table_dir(checkpoint_dir, table)
    if not directory.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in directory.iterdir()
             if (match := CHECKPOINT_NAME.fullmatch(path.name))]
    return [path for _, path in sorted(found)]


def entries(checkpoint_dir, table):
    """Every name in the table's directory (checkpoints and anything else,
    such as a temporary directory left behind), sorted."""
    directory = table_dir(checkpoint_dir, table)
    return sorted(path.name for path in directory.iterdir()) \
        if directory.is_dir() else []


def stray_entries(checkpoint_dir, table):
    """Entries of the table's directory that are not checkpoints, each as
    (name, inode, ctime): a save in progress, or one a crash left behind.
    A server that removed a leftover and then began a save of the same
    name has a new inode and ctime: not the same entry."""
    directory = table_dir(checkpoint_dir, table)
    found = set()
    for name in entries(checkpoint_dir, table):
        if not CHECKPOINT_NAME.fullmatch(name):
            try:
                stat = (directory / name).stat()
            except FileNotFoundError:  # Renamed or removed meanwhile.
                continue
            found.add((name, stat.st_ino, stat.st_ctime_ns))
    return found


def is_incremental(path):
    return CHECKPOINT_NAME.fullmatch(pathlib.Path(path).name).group(2) == \
        "delta"


def load_checkpoint(path, mmap_mode=None):
    """{"rows", "weights", "state"} of one checkpoint, as numpy.load reads
    them (a file the checkpoint does not have is left out)."""
    path = pathlib.Path(path)
    return {name: np.load(path / f"{name}.npy", mmap_mode=mmap_mode)
            for name in ARRAYS if (path / f"{name}.npy").exists()}


def metadata_checksum(data):
    """The checksum a metadata file's header should carry."""
    return xxh3_64(data[_CHECKSUMMED] + data[_HEADER.size:])


def rewrite_metadata_header(path, magic=None, version=None):
    """Replaces the magic and/or format version of a checkpoint's metadata
    and fixes the checksum, so that only what was changed is wrong."""
    file = pathlib.Path(path) / METADATA
    data = bytearray(file.read_bytes())
    old_magic, old_version, reserved, length, _ = _HEADER.unpack_from(data)
    _HEADER.pack_into(data, 0, old_magic if magic is None else magic,
                      old_version if version is None else version, reserved,
                      length, 0)
    _HEADER.pack_into(data, 0, *_HEADER.unpack_from(data)[:4],
                      metadata_checksum(bytes(data)))
    file.write_bytes(bytes(data))
