"""Issue 10, defect 1: a sharded CreateTable of 2**63 - 1 rows overflowed
the local row count, threw, returned UNKNOWN and left its reservation in
the registry: the name stuck (ALREADY_EXISTS to create, NOT_FOUND to the
rest) and the memory budget wrong (over-admitting with 8 shards, refusing
everything with 4)."""

import grpc
import pytest

from embedding.v1 import embedding_service_pb2 as pb
from tests.robustness import limits
from tests.robustness.wire import open_channel, stub, unary_code

BUDGET = 100_000_000
# Rows of this server's shard that fill 3/4 and 1/2 of the budget (SGD:
# 4 bytes per float32 weight, no state).
THREE_QUARTERS_ROWS = BUDGET * 3 // 4 // 4
HALF_ROWS = BUDGET // 2 // 4


def spec(name, rows, dim=1):
    return pb.TableSpec(
        name=name, num_embeddings=rows, embedding_dim=dim,
        initializer=pb.Initializer(constant=pb.Initializer.Constant(value=0)))


@pytest.mark.parametrize("shard_count", [8, 4, 1])
def test_sharded_create_of_2_63_rows_fails_precisely_and_leaves_no_trace(
        start_server, shard_count):
    server = start_server(*limits.server_flags(budget=BUDGET),
                          f"--shard_count={shard_count}", "--shard_index=0")
    with open_channel(server.address) as channel:
        api = stub(channel)
        huge = pb.CreateTableRequest(spec=spec("huge", 2**63 - 1))
        code, details = unary_code(api.CreateTable, huge)
        # More than the budget (RESOURCE_EXHAUSTED), or a size past 64 bits
        # (INVALID_ARGUMENT): either way said, never UNKNOWN.
        assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED,
                        grpc.StatusCode.INVALID_ARGUMENT), (code, details)
        assert details, code

        # The name is free: the same error again, unknown to the rest, and
        # a table of a normal size can take it.
        assert unary_code(api.CreateTable, huge) == (code, details)
        assert unary_code(api.GetTable, pb.GetTableRequest(name="huge"))[0] \
            == grpc.StatusCode.NOT_FOUND
        assert unary_code(api.DeleteTable,
                          pb.DeleteTableRequest(name="huge"))[0] \
            == grpc.StatusCode.NOT_FOUND
        assert not api.ListTables(pb.ListTablesRequest()).tables
        api.CreateTable(pb.CreateTableRequest(spec=spec("huge", 1000, 4)))
        assert api.GetTable(pb.GetTableRequest(name="huge")).local_rows == \
            -(-1000 // shard_count)
        api.DeleteTable(pb.DeleteTableRequest(name="huge"))

        # The budget is whole: 3/4 of it fits, another half then does not,
        # and does once the first is gone.
        big = api.CreateTable(pb.CreateTableRequest(
            spec=spec("big", THREE_QUARTERS_ROWS * shard_count)))
        assert big.memory_bytes <= BUDGET
        half = pb.CreateTableRequest(spec=spec("half",
                                               HALF_ROWS * shard_count))
        code, details = unary_code(api.CreateTable, half)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        api.DeleteTable(pb.DeleteTableRequest(name="big"))
        api.CreateTable(half)
    assert server.running()
