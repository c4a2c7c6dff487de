"""Keeps the client's large buffers in glibc's heap.

A lookup of 4096 rows of 64 floats moves 1 MiB each way, in buffers that
grpcio, protobuf and numpy allocate and free on every call. With glibc's
defaults those come from mmap (or are trimmed back to the kernel) and every
call faults its pages in again: measured ~500 minor faults and 7-14 ms of
client CPU per RemoteEmbedding step at batch 4096, against 1-2 faults and
~2.5 ms with the thresholds below (BENCHMARKS.md, "Performance II").

`tune_once()` raises glibc's mmap threshold to 32 MiB and its trim threshold
to 64 MiB, once per process, when the first client is made. It is process
wide, as malloc is: the cost is that up to 64 MiB freed at the top of a heap
stays resident. It does nothing when the process chose its own malloc
settings (GLIBC_TUNABLES with glibc.malloc, MALLOC_MMAP_THRESHOLD_ or
MALLOC_TRIM_THRESHOLD_), when malloc is not glibc's, or when
EMBEDDING_CLIENT_TUNE_MALLOC=0.
"""

import ctypes
import os
import platform
import threading

MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 64 << 20

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_decided = False
_tuned = False


def _process_chose_its_own(environ):
    if environ.get("EMBEDDING_CLIENT_TUNE_MALLOC") == "0":
        return True
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return True
    return any(name in environ for name in
               ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))


def tune_once(environ=os.environ):
    """Sets the thresholds the first time it is called; returns whether
    they are set (by this or an earlier call)."""
    global _decided, _tuned
    with _lock:
        if _decided:
            return _tuned
        _decided = True
        if _process_chose_its_own(environ):
            return False
        if platform.libc_ver()[0] != "glibc":
            return False
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
        if mallopt is None:
            return False
        # mallopt returns 1 on success, 0 on error.
        _tuned = (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and
                  mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
        return _tuned
