"""Issue 10, defect 6 (shutdown): the grace period was not a hard bound (a
CreateTable in progress at SIGTERM delayed the exit past it, and its client
got UNAVAILABLE although the table was created), and calls in flight at
SIGTERM could end CANCELLED, so a client could not tell whether its push
ran. Now the process exits within --shutdown_grace_seconds (plus a second)
and every call ends OK or UNAVAILABLE."""

import concurrent.futures
import itertools
import signal
import threading
import time

import grpc
import numpy as np

from embedding.v1 import embedding_service_pb2 as pb
from tests.robustness import limits
from tests.robustness.wire import code_of, open_channel, stub
from tests.testing.binaries import sanitized

GRACE_SECONDS = 2
# How long past the grace period the process may take to exit: its own
# teardown (and, under ASan, the leak check of a large heap).
EXIT_SLACK_SECONDS = 3.0 if sanitized() else 1.0
OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def sigterm_and_time_exit(server):
    """Sends SIGTERM; returns (exit code, seconds to exit), the code None
    if the process still runs 30 s later."""
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    code = server.wait_exit(30)
    return code, time.monotonic() - started


def assert_exited_in_time(server, exit_code, seconds):
    """The exit was clean and within the grace period plus the slack."""
    assert exit_code == 0, (exit_code, f"{seconds:.1f} s", server.log())
    assert seconds <= GRACE_SECONDS + EXIT_SLACK_SECONDS, (
        f"exited {seconds:.1f} s after SIGTERM with a grace period of "
        f"{GRACE_SECONDS} s:\n{server.log()}")


def test_create_in_progress_at_sigterm_does_not_hold_the_exit(
        start_server, tmp_path):
    # 100M rows, normal initialisation: about 7 s of work in the release
    # build.
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    server = start_server(
        *limits.server_flags(budget=1_000_000_000),
        f"--shutdown_grace_seconds={GRACE_SECONDS}",
        checkpoint_dir=checkpoints)
    with open_channel(server.address) as channel:
        api = stub(channel)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            create = pool.submit(code_of, lambda: api.CreateTable(
                pb.CreateTableRequest(spec=pb.TableSpec(
                    name="big", num_embeddings=100_000_000,
                    embedding_dim=1)), timeout=120))
            time.sleep(0.5)
            assert not create.done(), create.result()
            exit_code, seconds = sigterm_and_time_exit(server)
            code, details = create.result()
    assert_exited_in_time(server, exit_code, seconds)
    assert code in (OK, UNAVAILABLE), details
    server.stop()
    server.start()
    with open_channel(server.address) as channel:
        found, _ = code_of(lambda: stub(channel).GetTable(
            pb.GetTableRequest(name="big")))
    if code == UNAVAILABLE:
        # Refused means not created: not there after a restart either.
        assert found == grpc.StatusCode.NOT_FOUND


def test_calls_in_flight_at_sigterm_end_ok_or_unavailable(start_server):
    server = start_server(*limits.server_flags(),
                          f"--shutdown_grace_seconds={GRACE_SECONDS}")
    dim = 64
    with open_channel(server.address) as channel:
        stub(channel).CreateTable(pb.CreateTableRequest(spec=pb.TableSpec(
            name="t", num_embeddings=100_000, embedding_dim=dim)))
    rng = np.random.default_rng(6)
    indices = rng.integers(0, 100_000, 20_000).tolist()
    lookup = pb.LookupRequest(table="t", indices=indices)
    bag = pb.LookupBagRequest(table="t", indices=indices,
                              offsets=list(range(0, 20_000, 10)))
    grad = pb.Tensor(shape=[len(indices), dim], data=rng.standard_normal(
        (len(indices), dim), np.float32).tobytes())
    sequences = itertools.count(1)
    stop = threading.Event()
    codes = []  # (method, code, details), appended by every thread.

    def unary_calls(worker):
        # A channel per thread: a new connection per worker, as separate
        # clients would have.
        with open_channel(server.address) as channel:
            api = stub(channel)
            calls = [
                ("Lookup", lambda: api.Lookup(lookup, timeout=30)),
                ("LookupBag", lambda: api.LookupBag(bag, timeout=30)),
                ("PushGradients", lambda: api.PushGradients(
                    pb.PushGradientsRequest(
                        table="t", indices=indices, grad=grad,
                        client_id=f"worker-{worker}",
                        sequence=next(sequences)), timeout=30)),
            ]
            for method, call in itertools.cycle(calls):
                code, details = code_of(call)
                codes.append((method, code, details))
                if stop.is_set() or code != OK:
                    return

    def stream_calls(_):
        with open_channel(server.address) as channel:
            replies = stub(channel).LookupStream(
                itertools.takewhile(lambda _: not stop.is_set(),
                                    itertools.repeat(lookup)), timeout=60)
            code, details = code_of(lambda: replies)
            codes.append(("LookupStream", code, details))

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        workers = [pool.submit(unary_calls, i) for i in range(4)]
        workers += [pool.submit(stream_calls, i) for i in range(2)]
        time.sleep(1.0)
        exit_code, seconds = sigterm_and_time_exit(server)
        stop.set()
        for worker in workers:
            worker.result()
    assert any(code == OK for _, code, _ in codes)
    wrong = [c for c in codes if c[1] not in (OK, UNAVAILABLE)]
    assert not wrong, wrong[:10]
    assert_exited_in_time(server, exit_code, seconds)
