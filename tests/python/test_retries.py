"""The retry rules of client/CONTRACT.md, against a fake service that fails
chosen calls: only UNAVAILABLE is retried, only by the methods that are safe
to repeat, DEFAULT_MAX_RETRIES times with RETRY_BACKOFF_SECONDS * 2**k waits;
a retried push carries the same client_id and sequence, and ReadRows starts
the whole read again. A fake, because the real server cannot be made to
answer UNAVAILABLE on demand."""

import collections
import types
from concurrent import futures

import grpc
import numpy as np
import pytest

from embedding_client import SGD, EmbeddingClient, EmbeddingError
from embedding_client import client as client_module
from embedding_client import tensors
from embedding_client._stubs import pb, pb_grpc

ROWS, DIM = 6, 3
WEIGHTS = np.arange(ROWS * DIM, dtype=np.float32).reshape(ROWS, DIM)
TABLE = pb.TableInfo(spec=pb.TableSpec(name="t", num_embeddings=ROWS,
                                       embedding_dim=DIM), local_rows=ROWS)
PUSHED = pb.PushGradientsResponse(rows_updated=1, version=1)

# Each unary RPC the client makes: its answer to a request.
ANSWERS = {
    "CreateTable": lambda request: TABLE,
    "GetTable": lambda request: TABLE,
    "ListTables": lambda request: pb.ListTablesResponse(tables=[TABLE]),
    "DeleteTable": lambda request: pb.DeleteTableResponse(),
    "SetOptimizer": lambda request: TABLE,
    "Lookup": lambda request: pb.LookupResponse(embeddings=tensors.to_tensor(
        WEIGHTS[tensors.indices_of_request(request)])),
    "LookupBag": lambda request: pb.LookupBagResponse(
        embeddings=tensors.to_tensor(WEIGHTS[:len(request.offsets)])),
    "PushGradients": lambda request: PUSHED,
    "PushBagGradients": lambda request: PUSHED,
    "WriteRows": lambda request: pb.WriteRowsResponse(
        rows_written=request.values.shape[0]),
}


class FlakyService(pb_grpc.EmbeddingServiceServicer):
    """Fails the first `times` calls of one method with `code`, answers the
    rest; keeps every request it gets, by method."""

    def __init__(self):
        self.requests = collections.defaultdict(list)
        self._failing = {}
        for method, answer in ANSWERS.items():
            setattr(self, method, self._unary(method, answer))

    def fail(self, method, times, code=grpc.StatusCode.UNAVAILABLE):
        self._failing[method] = (times, code)

    def _attempt(self, method, request):
        """Records a call; returns the code it must fail with, or None."""
        self.requests[method].append(request)
        times, code = self._failing.get(method, (0, None))
        return code if len(self.requests[method]) <= times else None

    def _unary(self, method, answer):
        def handle(request, context):
            code = self._attempt(method, request)
            if code is not None:
                context.abort(code, f"{method} made to fail")
            return answer(request)
        return handle

    def ReadRows(self, request, context):
        """Two rows per reply; a failing call fails after its first reply,
        so a client that resumed instead of restarting would repeat it."""
        code = self._attempt("ReadRows", request)
        for begin in range(0, ROWS, 2):
            yield pb.ReadRowsResponse(
                indices=range(begin, begin + 2),
                values=tensors.to_tensor(WEIGHTS[begin:begin + 2]))
            if code is not None:
                context.abort(code, "ReadRows made to fail")


@pytest.fixture
def service():
    """A FlakyService on a free loopback port (its address in .address)."""
    flaky = FlakyService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_EmbeddingServiceServicer_to_server(flaky, server)
    flaky.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    yield flaky
    server.stop(None)


@pytest.fixture
def waits(monkeypatch):
    """The client's backoff waits in seconds, recorded instead of slept."""
    recorded = []
    monkeypatch.setattr(client_module, "time",
                        types.SimpleNamespace(sleep=recorded.append))
    return recorded


@pytest.fixture
def client(service):
    with EmbeddingClient(service.address, timeout=10) as connection:
        yield connection


RETRIED = {
    "GetTable": lambda c: c.get_table("t"),
    "ListTables": lambda c: c.list_tables(),
    "Lookup": lambda c: c.lookup("t", [1, 2]),
    "LookupBag": lambda c: c.lookup_bag("t", [1, 2], [0]),
    "ReadRows": lambda c: c.read_rows("t"),
    "PushGradients": lambda c: c.push_gradients("t", [1], np.ones((1, DIM))),
    "PushBagGradients": lambda c: c.push_bag_gradients(
        "t", [1, 2], [0], np.ones((1, DIM))),
}
NOT_RETRIED = {
    "CreateTable": lambda c: c.create_table("t", ROWS, DIM),
    "DeleteTable": lambda c: c.delete_table("t"),
    "WriteRows": lambda c: c.write_rows("t", np.ones((1, DIM)), [1]),
    "SetOptimizer": lambda c: c.set_optimizer("t", SGD()),
}
BACKOFF = [client_module.RETRY_BACKOFF_SECONDS * 2**k
           for k in range(client_module.DEFAULT_MAX_RETRIES)]


@pytest.mark.parametrize("method", RETRIED)
def test_unavailable_is_retried_with_exponential_backoff(service, client,
                                                         waits, method):
    service.fail(method, client_module.DEFAULT_MAX_RETRIES)
    RETRIED[method](client)
    assert len(service.requests[method]) == 1 + len(BACKOFF)
    assert waits == pytest.approx(BACKOFF)


@pytest.mark.parametrize("method", RETRIED)
def test_unavailable_after_the_last_retry_is_raised(service, client, waits,
                                                    method):
    service.fail(method, 1 + client_module.DEFAULT_MAX_RETRIES)
    with pytest.raises(EmbeddingError) as error:
        RETRIED[method](client)
    assert error.value.code == grpc.StatusCode.UNAVAILABLE
    assert error.value.message == f"{method} made to fail"
    assert len(service.requests[method]) == 1 + len(BACKOFF)


@pytest.mark.parametrize("method", NOT_RETRIED)
def test_calls_that_cannot_be_repeated_safely_are_not_retried(
        service, client, waits, method):
    service.fail(method, 1)
    with pytest.raises(EmbeddingError) as error:
        NOT_RETRIED[method](client)
    assert error.value.code == grpc.StatusCode.UNAVAILABLE
    assert len(service.requests[method]) == 1 and waits == []


@pytest.mark.parametrize("code", [
    grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN])
def test_only_unavailable_is_retried(service, client, waits, code):
    service.fail("Lookup", 1, code)
    with pytest.raises(EmbeddingError) as error:
        client.lookup("t", [1])
    assert (error.value.code, error.value.message) == (
        code, "Lookup made to fail")
    assert len(service.requests["Lookup"]) == 1 and waits == []


@pytest.mark.parametrize("method", ["PushGradients", "PushBagGradients"])
def test_a_retried_push_keeps_its_client_id_and_sequence(service, client,
                                                         waits, method):
    service.fail(method, 2)
    RETRIED[method](client)
    RETRIED[method](client)
    sent = [(r.client_id, r.sequence) for r in service.requests[method]]
    assert sent == [(client.client_id, 1)] * 3 + [(client.client_id, 2)]


def test_a_callers_sequence_is_kept_on_every_retry(service, client, waits):
    service.fail("PushGradients", 1)
    client.push_gradients("t", [1], np.ones((1, DIM)), sequence=77)
    assert [r.sequence for r in service.requests["PushGradients"]] == [77, 77]


def test_client_id_is_random_128_bits_unless_given(service):
    with EmbeddingClient(service.address) as first, \
            EmbeddingClient(service.address) as second, \
            EmbeddingClient(service.address, client_id="trainer-7") as given:
        assert len(first.client_id) == 32 and int(first.client_id, 16) >= 0
        assert first.client_id != second.client_id
        assert given.client_id == "trainer-7"


def test_read_rows_starts_the_whole_read_again(service, client, waits):
    service.fail("ReadRows", 1)
    ids, rows = client.read_rows("t", return_indices=True)
    np.testing.assert_array_equal(ids, np.arange(ROWS))
    np.testing.assert_array_equal(rows, WEIGHTS)
    assert len(service.requests["ReadRows"]) == 2 and waits == BACKOFF[:1]
