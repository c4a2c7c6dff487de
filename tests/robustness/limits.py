"""The limits the robustness tests hold the server process to, in one place.

The README's Guarantees > Limits documents the same numbers: the server's
resident memory stays under

    memory_budget_bytes + max_inflight_bytes + FIXED_OVERHEAD_BYTES

whatever clients send, and its threads under worker_threads plus a few.

    with ServerProcess(*server_flags()) as server:
        ...hostile requests...
        assert_peak_rss_under_bound(server)

The servers here run with a small budget and in-flight cap so that a
request which escapes the account shows up at once. Under the sanitizer
build (binaries.sanitized()) the RSS checks are skipped: ASan's shadow
memory and quarantine are not the release binary's footprint.
"""

from tests.testing.binaries import sanitized

MiB = 1 << 20

# What the server holds whatever the clients do: code, gRPC's own buffers,
# thread stacks, allocator slack. Peaks measured by these tests: 200 to 480
# MiB in all with in-flight caps of 256 and 512 MiB (README Guarantees >
# Limits quotes this number).
FIXED_OVERHEAD_BYTES = 300 * MiB

# Threads the server runs besides its RPC workers (main, gRPC's pollers,
# executor and timer threads, the checkpoint thread).
EXTRA_THREADS = 32

# The defaults the README documents; the tests that check a default rely on
# the server's own and pass no flag.
DEFAULT_WORKER_THREADS = 64
DEFAULT_MAX_OPEN_STREAMS = 32
MAX_EMBEDDING_DIM = 65536
MAX_SHAPE_RANK = 16
MAX_CLIENT_ID_BYTES = 256
MAX_MESSAGE_BYTES = 64 * MiB
MAX_INDICES_PER_REQUEST = 1 << 22

# The budget and in-flight cap of the test servers: small enough that one
# request escaping the account passes the bound.
BUDGET_BYTES = 200_000_000
INFLIGHT_BYTES = 256 * MiB


def server_flags(budget=BUDGET_BYTES, inflight=INFLIGHT_BYTES, *extra):
    """Flags of a test server with this budget and in-flight cap."""
    return (f"--memory_budget_bytes={budget}",
            f"--max_inflight_bytes={inflight}", *extra)


def memory_bound(budget=BUDGET_BYTES, inflight=INFLIGHT_BYTES):
    """The most RSS a server with these flags may ever reach."""
    return budget + inflight + FIXED_OVERHEAD_BYTES


def assert_peak_rss_under_bound(server, budget=BUDGET_BYTES,
                                inflight=INFLIGHT_BYTES, what=""):
    """Fails when the server's peak RSS (VmHWM) passed memory_bound();
    returns the peak. Checks nothing under the sanitizer build."""
    peak = server.peak_rss_bytes()
    bound = memory_bound(budget, inflight)
    print(f"{what}: peak RSS {peak / MiB:.0f} MiB, bound {bound / MiB:.0f} "
          f"MiB")
    if sanitized():
        return peak
    assert peak <= bound, (
        f"{what}: peak RSS {peak / MiB:.0f} MiB passed the bound "
        f"{bound / MiB:.0f} MiB = budget {budget / MiB:.0f} + in-flight "
        f"{inflight / MiB:.0f} + overhead {FIXED_OVERHEAD_BYTES / MiB:.0f}")
    return peak
