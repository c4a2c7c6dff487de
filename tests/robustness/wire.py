"""gRPC as a hostile client speaks it: raw bytes to any method, the codes
calls end with, and requests built without the generated classes' help.

    channel = open_channel(server.address)      # no client-side size limits
    code, details = unary_code(raw_unary(channel, "Lookup"), b"\\xff\\xff")
    code, details = unary_code(stub(channel).GetTable,
                               pb.GetTableRequest(name="x" * 10_000))
    code, details = code_of(lambda: stub(channel).ListTables(request))
"""

import grpc

from embedding.v1 import embedding_service_pb2 as pb
from embedding.v1 import embedding_service_pb2_grpc as pb_grpc

SERVICE = "/embedding.v1.EmbeddingService/"

# Method -> (request type, response type, response streamed).
METHODS = {
    "CreateTable": (pb.CreateTableRequest, pb.TableInfo, False),
    "GetTable": (pb.GetTableRequest, pb.TableInfo, False),
    "ListTables": (pb.ListTablesRequest, pb.ListTablesResponse, False),
    "DeleteTable": (pb.DeleteTableRequest, pb.DeleteTableResponse, False),
    "Lookup": (pb.LookupRequest, pb.LookupResponse, False),
    "LookupBag": (pb.LookupBagRequest, pb.LookupBagResponse, False),
    "PushGradients": (pb.PushGradientsRequest, pb.PushGradientsResponse,
                      False),
    "PushBagGradients": (pb.PushBagGradientsRequest,
                         pb.PushGradientsResponse, False),
    "WriteRows": (pb.WriteRowsRequest, pb.WriteRowsResponse, False),
    "ReadRows": (pb.ReadRowsRequest, pb.ReadRowsResponse, True),
    "SetOptimizer": (pb.SetOptimizerRequest, pb.TableInfo, False),
    "SaveCheckpoint": (pb.SaveCheckpointRequest, pb.SaveCheckpointResponse,
                       False),
}

# Codes a call may never end with, whatever it sent.
NEVER = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)

# Client channel options: no client-side message limit (the server's is the
# one under test) and room for long error messages in the trailers.
UNLIMITED = (("grpc.max_send_message_length", -1),
             ("grpc.max_receive_message_length", -1))


def open_channel(address, options=()):
    """An insecure channel without client-side message size limits."""
    return grpc.insecure_channel(address, options=[*UNLIMITED, *options])


def stub(channel):
    return pb_grpc.EmbeddingServiceStub(channel)


def raw_unary(channel, method):
    """A unary-request callable for `method` that sends bytes as they are
    and returns the reply's bytes (a streamed reply: the list of them)."""
    _, _, streamed = METHODS[method]
    if streamed:
        return channel.unary_stream(SERVICE + method)
    return channel.unary_unary(SERVICE + method)


def raw_lookup_stream(channel):
    """LookupStream taking raw request bytes and parsing the replies."""
    return channel.stream_stream(
        SERVICE + "LookupStream", request_serializer=lambda b: b,
        response_deserializer=pb.LookupResponse.FromString)


def code_of(call):
    """Runs call() and returns (code, details) of the RPC it makes; a
    streamed reply is read to its end. details is "" on OK."""
    try:
        reply = call()
        if hasattr(reply, "__next__"):  # A streamed reply.
            for _ in reply:
                pass
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as error:
        return error.code(), error.details() or ""


def unary_code(method, request, timeout=30, **kwargs):
    """(code, details) of method(request) (see code_of)."""
    return code_of(lambda: method(request, timeout=timeout, **kwargs))


def packed_varints(values):
    """The protobuf encoding of non-negative ints as a packed field body."""
    out = bytearray()
    for value in values:
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def field_bytes(number, payload):
    """A length-delimited field (wire type 2): tag, length, payload."""
    return (packed_varints([number << 3 | 2]) + packed_varints([len(payload)])
            + payload)
