"""Issue 10, defect 3: each open LookupStream held a server thread, so 8000
idle streams made 8009 threads (265 MB) and a client could exhaust the
server with them. Now RPC threads are capped (--worker_threads, 64) and so
are open streams (--max_open_streams, 32): the streams beyond get
RESOURCE_EXHAUSTED, and unary calls are still served meanwhile."""

import asyncio
import collections
import time

import grpc
import grpc.aio

from embedding.v1 import embedding_service_pb2 as pb
from embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.robustness import limits
from tests.robustness.wire import open_channel, stub

STREAMS = 8000
# What gRPC's synchronous server answers when its thread quota
# (--worker_threads) has no thread for a new call.
GRPC_THREADS_EXHAUSTED = "Server Threadpool Exhausted"
# Streams are spread over this many connections, so that a per-connection
# stream limit queues them in the client rather than in one connection.
CHANNELS = 16


async def open_idle_streams(address, request, settle_seconds):
    """Opens STREAMS LookupStreams, each sending `request` and then idle;
    waits up to `settle_seconds` for each one's first answer. Returns
    (calls, channels, tasks, outcomes): per stream the response, the
    grpc.aio.AioRpcError it ended with, or None if still waiting."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(CHANNELS)]
    stubs = [pb_grpc.EmbeddingServiceStub(channel) for channel in channels]
    calls = [stubs[i % CHANNELS].LookupStream() for i in range(STREAMS)]

    async def first_answer(call):
        try:
            await call.write(request)
            return await call.read()
        except grpc.aio.AioRpcError as error:
            return error

    tasks = [asyncio.ensure_future(first_answer(call)) for call in calls]
    await asyncio.wait(tasks, timeout=settle_seconds)
    outcomes = [task.result() if task.done() else None for task in tasks]
    return calls, channels, tasks, outcomes


async def close_streams(calls, channels, tasks):
    """Ends the streams from the client's side (a half-close: cancelling
    thousands of grpc.aio calls leaves tasks that hang the event loop's
    exit), waits until each has its status, closes the channels."""
    async def end(call):
        try:
            await call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # Over already.
        return await call.code()

    await asyncio.wait(tasks, timeout=30)
    await asyncio.wait([asyncio.ensure_future(end(call)) for call in calls],
                       timeout=30)
    for channel in channels:
        await channel.close()


def test_idle_streams_are_capped_and_unary_calls_still_served(server, api):
    api.CreateTable(pb.CreateTableRequest(spec=pb.TableSpec(
        name="t", num_embeddings=100, embedding_dim=4)))
    request = pb.LookupRequest(table="t", indices=[1])
    idle_threads = server.thread_count()

    async def scenario():
        calls, channels, tasks, outcomes = await open_idle_streams(
            server.address, request, settle_seconds=30)
        try:
            threads = 0
            for _ in range(5):  # The most over half a second.
                threads = max(threads, server.thread_count())
                await asyncio.sleep(0.1)
            # A unary call on a connection of its own is served while the
            # streams are open (in a thread: the event loop must keep
            # running the streams).
            started = time.monotonic()
            with open_channel(server.address) as channel:
                reply = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: stub(channel).Lookup(request, timeout=10))
            unary_seconds = time.monotonic() - started
            return threads, reply, unary_seconds, outcomes
        finally:
            await close_streams(calls, channels, tasks)

    threads, reply, unary_seconds, outcomes = asyncio.run(scenario())
    assert list(reply.embeddings.shape) == [1, 4]
    answered = sum(isinstance(o, pb.LookupResponse) for o in outcomes)
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    waiting = outcomes.count(None)
    reasons = collections.Counter(error.details() for error in refused)
    summary = (f"{answered} answered, {len(refused)} refused "
               f"{dict(reasons)}, {waiting} waiting; {threads} server "
               f"threads ({idle_threads} idle); unary call "
               f"{unary_seconds:.2f} s")
    print(summary)
    assert threads <= limits.DEFAULT_WORKER_THREADS + limits.EXTRA_THREADS, \
        summary
    assert answered <= limits.DEFAULT_MAX_OPEN_STREAMS, summary
    assert refused, summary
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (
            error.code(), error.details(), summary)
        # The stream cap names its flag; a stream that finds every RPC
        # thread busy is refused by gRPC itself, in its own words.
        assert ("--max_open_streams" in error.details()
                or error.details() == GRPC_THREADS_EXHAUSTED), error.details()
    assert server.running()
    # The streams are over (once the server has seen them end): new ones
    # are served.
    deadline = time.monotonic() + 10
    with open_channel(server.address) as channel:
        while True:
            try:
                answers = stub(channel).LookupStream(iter([request] * 3),
                                                     timeout=30)
                assert len(list(answers)) == 3
                break
            except grpc.RpcError as error:
                if (error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
                        or time.monotonic() > deadline):
                    raise
                time.sleep(0.2)
