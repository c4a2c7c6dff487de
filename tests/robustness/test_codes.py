"""Issue 10, defect 4: wrong or missing codes. A malformed message inside a
LookupStream ended the stream with OK; error messages echoed client
strings whole, so a 10000-character table name came back as
RESOURCE_EXHAUSTED (the reply's metadata passed the client's limit) instead
of NOT_FOUND; finite initializer parameters gave infinite weights."""

import queue
import random
import warnings

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError

from embedding.v1 import embedding_service_pb2 as pb
from tests.robustness.wire import (METHODS, code_of, raw_lookup_stream,
                                   raw_unary, unary_code)

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
# Error details longer than this quote client strings whole.
SHORT_DETAILS = 1000
DIM = 4


# Bytes no protobuf parser takes as any message: a varint past 10 bytes, a
# field cut short, field number 0.
BROKEN_WIRE_FORMAT = [b"\xff" * 11, b"\x0a\x05ab", b"\x00\x01"]
# And as a LookupRequest: invalid UTF-8 in the table name, a packed index
# cut short.
BROKEN_LOOKUP = [b"\x0a\x02\xc3\x28", b"\x12\x03\x80\x80\x80"]


def malformed(request_type, seed=10, count=4):
    """BROKEN_WIRE_FORMAT and `count` seeded random byte strings that
    `request_type` does not parse."""
    rng = random.Random(seed)
    found = []
    while len(found) < count:
        candidate = rng.randbytes(rng.randrange(1, 64))
        try:
            with warnings.catch_warnings():
                # upb warns of some bytes it parses only in part.
                warnings.simplefilter("ignore", RuntimeWarning)
                request_type.FromString(candidate)
        except DecodeError:
            found.append(candidate)
    return BROKEN_WIRE_FORMAT + found


@pytest.fixture
def table(api):
    api.CreateTable(pb.CreateTableRequest(spec=pb.TableSpec(
        name="t", num_embeddings=100, embedding_dim=DIM)))
    return "t"


@pytest.mark.parametrize("garbage",
                         malformed(pb.LookupRequest) + BROKEN_LOOKUP,
                         ids=lambda b: b.hex()[:16])
@pytest.mark.parametrize("after_valid", [True, False],
                         ids=["after_a_valid_one", "first"])
def test_malformed_message_in_lookup_stream_is_invalid_argument(
        channel, table, garbage, after_valid):
    valid = pb.LookupRequest(table=table, indices=[1, 2]).SerializeToString()
    sent = queue.Queue()

    def requests():
        while (request := sent.get()) is not None:
            yield request

    replies = raw_lookup_stream(channel)(requests(), timeout=30)
    try:
        if after_valid:
            sent.put(valid)
            assert list(next(replies).embeddings.shape) == [2, DIM]
        sent.put(garbage)
        sent.put(valid)  # Never answered: the stream ended before it.
        with pytest.raises(grpc.RpcError) as error:
            next(replies)
    finally:
        sent.put(None)
        replies.cancel()
    assert error.value.code() == INVALID_ARGUMENT, error.value.details()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_malformed_unary_request_is_invalid_argument(channel, table, method):
    # gRPC's own answer to a request it cannot parse is INTERNAL ("a bug in
    # the server"); the bug is the client's.
    for garbage in malformed(METHODS[method][0]):
        code, details = unary_code(raw_unary(channel, method), garbage)
        assert code == INVALID_ARGUMENT, (garbage, code, details)


LONG = "n" * 10_000
GRAD = pb.Tensor(shape=[1, DIM], data=np.ones(DIM, np.float32).tobytes())

# Each method with a 10000-character table name in an otherwise valid
# request, and the code it must get.
LONG_NAME_REQUESTS = {
    "GetTable": (pb.GetTableRequest(name=LONG), NOT_FOUND),
    "DeleteTable": (pb.DeleteTableRequest(name=LONG), NOT_FOUND),
    "Lookup": (pb.LookupRequest(table=LONG, indices=[0]), NOT_FOUND),
    "LookupBag": (pb.LookupBagRequest(table=LONG, indices=[0], offsets=[0]),
                  NOT_FOUND),
    "PushGradients": (pb.PushGradientsRequest(table=LONG, indices=[0],
                                              grad=GRAD), NOT_FOUND),
    "PushBagGradients": (pb.PushBagGradientsRequest(
        table=LONG, indices=[0], offsets=[0], grad=GRAD), NOT_FOUND),
    "WriteRows": (pb.WriteRowsRequest(table=LONG, indices=[0], values=GRAD),
                  NOT_FOUND),
    "ReadRows": (pb.ReadRowsRequest(table=LONG), NOT_FOUND),
    "SetOptimizer": (pb.SetOptimizerRequest(
        table=LONG, optimizer=pb.Optimizer(sgd=pb.SgdOptions(lr=0.1))),
        NOT_FOUND),
    "CreateTable": (pb.CreateTableRequest(spec=pb.TableSpec(
        name=LONG, num_embeddings=10, embedding_dim=DIM)), INVALID_ARGUMENT),
}


@pytest.mark.parametrize("method", sorted(LONG_NAME_REQUESTS))
def test_long_table_name_gets_its_code_and_a_short_message(
        channel, table, method):
    # On a channel with gRPC's default 8 KiB metadata limit.
    request, expected = LONG_NAME_REQUESTS[method]
    code, details = unary_code(raw_unary(channel, method),
                               request.SerializeToString())
    assert code == expected, details[:300]
    assert len(details) < SHORT_DETAILS, details[:300]


def test_long_client_id_is_invalid_argument_with_a_short_message(
        api, table):
    code, details = unary_code(api.PushGradients, pb.PushGradientsRequest(
        table=table, indices=[0], grad=GRAD, client_id="c" * 10_000,
        sequence=1))
    assert code == INVALID_ARGUMENT, details[:300]
    assert len(details) < SHORT_DETAILS, details[:300]


INITIALIZERS = {
    "uniform(-3e38, 3e38)": pb.Initializer(
        uniform=pb.Initializer.Uniform(low=-3e38, high=3e38)),
    "uniform(-max, max)": pb.Initializer(uniform=pb.Initializer.Uniform(
        low=-np.finfo(np.float32).max, high=np.finfo(np.float32).max)),
    "normal(0, 3e38)": pb.Initializer(
        normal=pb.Initializer.Normal(mean=0, std=3e38)),
    "normal(3e38, 3e38)": pb.Initializer(
        normal=pb.Initializer.Normal(mean=3e38, std=3e38)),
    "normal(0, 1e30)": pb.Initializer(
        normal=pb.Initializer.Normal(mean=0, std=1e30)),
}


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_finite_initializer_parameters_give_finite_rows_or_are_refused(
        api, name):
    rows = 2000
    code, details = code_of(lambda: api.CreateTable(pb.CreateTableRequest(
        spec=pb.TableSpec(name="t", num_embeddings=rows, embedding_dim=16,
                          initializer=INITIALIZERS[name]))))
    assert code in (grpc.StatusCode.OK, INVALID_ARGUMENT), details
    if code != grpc.StatusCode.OK:
        return
    values = np.concatenate([
        np.frombuffer(reply.values.data, np.float32)
        for reply in api.ReadRows(pb.ReadRowsRequest(table="t"))])
    assert values.size == rows * 16
    bad = np.count_nonzero(~np.isfinite(values))
    assert bad == 0, f"{bad} of {values.size} weights are not finite"
    init = INITIALIZERS[name]
    if init.HasField("uniform"):
        # Within [low, high], and spread over it (not clamped to one end).
        assert values.min() >= init.uniform.low
        assert values.max() <= init.uniform.high
        assert values.min() < 0.9 * init.uniform.low / 2
        assert values.max() > 0.9 * init.uniform.high / 2


def test_sizes_at_the_int64_edge_are_refused_without_wrapping(api, table):
    # Issue 10, defect 5: overflow guards that relied on signed wrap-around
    # (UBSan halts the sanitizer build's server on one). Each of these is
    # refused with its code, and the server lives on.
    edge = 2**63 - 1
    grad = pb.Tensor(shape=[2, DIM], data=np.ones(2 * DIM, np.float32)
                     .tobytes())
    cases = [
        (api.CreateTable, pb.CreateTableRequest(spec=pb.TableSpec(
            name="x", num_embeddings=10, embedding_dim=2**62,
            optimizer=pb.Optimizer(sparse_adam=pb.SparseAdamOptions()))),
         {INVALID_ARGUMENT}),
        (api.CreateTable, pb.CreateTableRequest(spec=pb.TableSpec(
            name="x", num_embeddings=edge, embedding_dim=65536,
            optimizer=pb.Optimizer(ftrl=pb.FtrlOptions()))),
         {INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}),
        (api.WriteRows, pb.WriteRowsRequest(table=table, start_row=edge,
                                            values=grad),
         {INVALID_ARGUMENT}),
        (api.WriteRows, pb.WriteRowsRequest(table=table, start_row=edge - 1,
                                            values=grad),
         {INVALID_ARGUMENT}),
        (api.ReadRows, pb.ReadRowsRequest(table=table, start_row=edge - 1,
                                          end_row=edge),
         {INVALID_ARGUMENT}),
        (api.Lookup, pb.LookupRequest(table=table, indices=[0],
                                      shape=[2**62, 2**62, 4]),
         {INVALID_ARGUMENT}),
        (api.Lookup, pb.LookupRequest(table=table, indices=[edge, -edge]),
         {INVALID_ARGUMENT}),
    ]
    for method, request, expected in cases:
        code, details = unary_code(method, request)
        assert code in expected, (request, code, details)
    assert api.GetTable(pb.GetTableRequest(name=table)).spec.name == table
