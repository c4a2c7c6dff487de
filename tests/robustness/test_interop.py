"""Issue 10, defect 7: interop rough edges. A client sending keepalive
pings every few seconds (grpc-js, or any gRPC client configured so) had its
idle LookupStream closed with GOAWAY "too_many_pings", because the server
kept gRPC's default ping policy (one ping per 5 minutes without calls);
`embedding_server --help` printed "No flags matched"."""

import queue
import subprocess
import time

from embedding.v1 import embedding_service_pb2 as pb
from tests.robustness.wire import open_channel, stub
from tests.testing.binaries import server_binary

# The client settings the README's Limits table recommends: a ping every
# second even without calls, and no cap on pings without data.
KEEPALIVE_OPTIONS = (("grpc.keepalive_time_ms", 1000),
                     ("grpc.keepalive_permit_without_calls", 1),
                     ("grpc.http2.max_pings_without_data", 0))
IDLE_SECONDS = 12


def test_keepalive_pings_every_second_keep_an_idle_stream_open(server):
    with open_channel(server.address) as channel:
        stub(channel).CreateTable(pb.CreateTableRequest(spec=pb.TableSpec(
            name="t", num_embeddings=10, embedding_dim=2)))
    request = pb.LookupRequest(table="t", indices=[1])
    with open_channel(server.address, KEEPALIVE_OPTIONS) as channel:
        sent = queue.Queue()

        def requests():
            while (next_request := sent.get()) is not None:
                yield next_request

        replies = stub(channel).LookupStream(requests(),
                                             timeout=IDLE_SECONDS + 30)
        try:
            sent.put(request)
            assert list(next(replies).embeddings.shape) == [1, 2]
            time.sleep(IDLE_SECONDS)
            # Still the same stream: an answer, not GOAWAY's UNAVAILABLE
            # ("Too many pings") or RESOURCE_EXHAUSTED.
            sent.put(request)
            assert list(next(replies).embeddings.shape) == [1, 2]
        finally:
            sent.put(None)
            replies.cancel()
    assert "too_many_pings" not in server.log()


def test_help_lists_the_flags():
    result = subprocess.run([str(server_binary()), "--help"],
                            capture_output=True, text=True, timeout=60)
    text = result.stdout + result.stderr
    assert "No flags matched" not in text, text
    for flag in ("--listen_address", "--max_inflight_bytes",
                 "--memory_budget_bytes", "--max_open_streams",
                 "--worker_threads", "--exactly_once_idle_seconds"):
        assert flag in text, (flag, text)
