"""Issue 10, defect 6 (deadlines): a lookup whose deadline had passed kept
burning CPU to the end (4M indices with a 20 ms deadline still used about
150 ms of CPU). Long requests now notice the cancellation and stop.

CPU time is the server's utime + stime from /proc, compared as ratios
within the test: what a full lookup costs beyond receiving and parsing its
request (a lookup of the same indices on an unknown table), against what
the lookup cut off by its deadline costs beyond that."""

import time

import grpc
import numpy as np

from embedding.v1 import embedding_service_pb2 as pb
from tests.robustness import limits
from tests.robustness.limits import MiB
from tests.robustness.wire import open_channel, raw_unary, stub, unary_code

ROWS = limits.MAX_INDICES_PER_REQUEST
DIM = 4
DEADLINE_SECONDS = 0.02
# The cut-off lookups may cost at most this share of a full one's work.
MOST_WORK_SHARE = 0.25


def settled_cpu_seconds(server, quiet_seconds=0.2, timeout=30):
    """The server's CPU time once it has stopped growing for
    `quiet_seconds` (what it was still doing for a call has ended)."""
    last = server.cpu_seconds()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        now = server.cpu_seconds()
        if now == last:
            return now
        last = now
    return last


def cpu_of(server, call):
    """(result of call(), server CPU seconds it cost)."""
    before = settled_cpu_seconds(server)
    result = call()
    return result, settled_cpu_seconds(server) - before


def test_lookup_past_its_deadline_stops_using_cpu(start_server):
    # 4M random rows of 16 bytes: a 64 MiB response, so the message limit
    # (and the in-flight cap) are raised for it.
    server = start_server(
        *limits.server_flags(budget=400_000_000, inflight=1024 * MiB),
        f"--max_message_bytes={256 * MiB}")
    with open_channel(server.address) as channel:
        stub(channel).CreateTable(pb.CreateTableRequest(spec=pb.TableSpec(
            name="t", num_embeddings=ROWS, embedding_dim=DIM,
            initializer=pb.Initializer(
                constant=pb.Initializer.Constant(value=1)))))
        indices = np.random.default_rng(7).integers(0, ROWS, ROWS).tolist()
        request = pb.LookupRequest(table="t", indices=indices)
        full = request.SerializeToString()
        request.table = "u"
        unknown = request.SerializeToString()
        lookup = raw_unary(channel, "Lookup")

        # Warm up: the connection's flow-control window grows, the
        # server's allocator has its buffers.
        assert unary_code(lookup, full, timeout=120)[0] == grpc.StatusCode.OK
        (code, _), full_cpu = cpu_of(
            server, lambda: unary_code(lookup, full, timeout=120))
        assert code == grpc.StatusCode.OK
        (code, _), parse_cpu = cpu_of(
            server, lambda: unary_code(lookup, unknown, timeout=120))
        assert code == grpc.StatusCode.NOT_FOUND
        work = full_cpu - parse_cpu
        # Several tries: a deadline may pass before the request is even in.
        cut_off = []
        for _ in range(3):
            (code, details), cpu = cpu_of(server, lambda: unary_code(
                lookup, full, timeout=DEADLINE_SECONDS))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED, details
            cut_off.append(cpu - parse_cpu)
    summary = (f"full lookup {full_cpu:.3f} s CPU, of which parsing "
               f"{parse_cpu:.3f} s; cut off by the deadline, beyond parsing: "
               f"{', '.join(f'{c:.3f}' for c in cut_off)} s")
    print(summary)
    assert work > 0.1, summary  # Enough to tell apart.
    assert max(cut_off) < MOST_WORK_SHARE * work, summary
