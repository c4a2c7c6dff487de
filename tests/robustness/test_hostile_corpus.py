"""An over-the-wire hostile corpus (issue 10): at least 10,000 generated
requests (hostile.py) against one running server with a few known tables:
random bytes as messages to every method, raw and inside LookupStream;
indices out of range and negative; huge and deep shapes; mismatched sizes;
NaN and Inf; oversized batches and messages; long names and client ids;
unknown tables; bad dtypes, modes, offsets, ranges and specs; and valid
requests among them.

Every answer must have the code its case expects (never UNKNOWN or
INTERNAL); at the end the server still runs and says SERVING, the known
tables are exactly as before (rows, version, step, spec), no table was
added, and the peak RSS stayed under the documented bound.

The seed is printed, and EMBEDDING_HOSTILE_SEED=<seed> replays a run;
EMBEDDING_HOSTILE_REQUESTS sets the count (10,000 by default, in the
release and the sanitizer build alike: about 25 s and 35 s on two cores).
"""

import collections
import concurrent.futures
import os
import random
import threading

import grpc

from embedding.v1 import embedding_service_pb2 as pb
from tests.robustness import hostile, limits
from tests.robustness.wire import (NEVER, open_channel, raw_lookup_stream,
                                   raw_unary, stub, unary_code)
from tests.testing.server_process import SERVING, health_status

REQUESTS = int(os.environ.get("EMBEDDING_HOSTILE_REQUESTS", "10000"))
SEED = int(os.environ.get("EMBEDDING_HOSTILE_SEED") or
           random.SystemRandom().getrandbits(32))
THREADS = 4
# Generous: a 64 MiB message under ASan on a busy machine.
CALL_TIMEOUT_SECONDS = 120


def run_case(channel, case):
    """Sends a case; returns (code, details, responses streamed)."""
    if case.method != "LookupStream":
        code, details = unary_code(raw_unary(channel, case.method),
                                   case.payload,
                                   timeout=CALL_TIMEOUT_SECONDS)
        return code, details, 0
    replies = raw_lookup_stream(channel)(iter(case.payload),
                                         timeout=CALL_TIMEOUT_SECONDS)
    answers = 0
    try:
        for _ in replies:
            answers += 1
        return grpc.StatusCode.OK, "", answers
    except grpc.RpcError as error:
        return error.code(), error.details() or "", answers


def snapshot(api, table):
    """A known table's info and every row, to compare before and after."""
    info = api.GetTable(pb.GetTableRequest(name=table.name))
    rows = [(list(reply.indices), reply.values.data)
            for reply in api.ReadRows(pb.ReadRowsRequest(table=table.name))]
    return info.SerializeToString(), rows


def test_hostile_corpus(start_server):
    print(f"hostile corpus: seed {SEED}, {REQUESTS} requests; "
          f"EMBEDDING_HOSTILE_SEED={SEED} replays it")
    server = start_server()
    with open_channel(server.address) as channel:
        api = stub(channel)
        for table in hostile.TABLES:
            api.CreateTable(pb.CreateTableRequest(spec=table.spec()))
        before = {t.name: snapshot(api, t) for t in hostile.KNOWN}

    local = threading.local()
    channels = []

    def run(i):
        if not hasattr(local, "channel"):
            local.channel = open_channel(server.address)
            channels.append(local.channel)
        case = hostile.make_case(random.Random(f"{SEED}/{i}"))
        code, details, answers = run_case(local.channel, case)
        case.payload = None  # Up to 64 MiB; only the outcome is kept.
        return i, case, code, details, answers

    wrong = []
    codes = collections.Counter()
    # Four threads of large hostile requests can fill the in-flight account:
    # any call may then be refused by it, since a request is reserved for
    # before it is parsed, so before its content can be checked (content is
    # checked before the response is reserved). Allowed, but only now and
    # then: a leak in the account would refuse everything.
    refused_at_the_limit = 0
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for i, case, code, details, answers in pool.map(run,
                                                        range(REQUESTS)):
            codes[code.name] += 1
            if (code not in case.expected and code == hostile.EXHAUSTED
                    and "--max_inflight_bytes" in details):
                refused_at_the_limit += 1
                continue
            if (code not in case.expected or code in NEVER
                    or answers != case.answers):
                wrong.append(
                    f"case {i} ({case.what}): {case.method} got "
                    f"{code.name} after {answers} answers, expected "
                    f"{'/'.join(sorted(c.name for c in case.expected))} "
                    f"after {case.answers}: {details[:200]!r}")
    for channel in channels:
        channel.close()
    print(f"codes: {dict(sorted(codes.items()))}; refused by the in-flight "
          f"account instead of the expected code: {refused_at_the_limit}")

    context = f"seed {SEED}; server log tail:\n{server.log()[-3000:]}"
    assert server.running(), context
    assert not wrong, (f"{len(wrong)} of {REQUESTS} wrong (seed {SEED}):\n"
                       + "\n".join(wrong[:int(os.environ.get(
                           "EMBEDDING_HOSTILE_SHOW", "25"))]))
    assert refused_at_the_limit <= REQUESTS // 50, (
        f"{refused_at_the_limit} of {REQUESTS} refused by the in-flight "
        f"account (seed {SEED})")
    assert health_status(server.address) == SERVING
    with open_channel(server.address) as channel:
        api = stub(channel)
        after = {t.name: snapshot(api, t) for t in hostile.KNOWN}
        names = [t.spec.name for t in
                 api.ListTables(pb.ListTablesRequest()).tables]
    for table in hostile.KNOWN:
        assert after[table.name] == before[table.name], (
            f"table {table.name} changed (seed {SEED})")
    assert sorted(names) == sorted(t.name for t in hostile.TABLES), names
    limits.assert_peak_rss_under_bound(server,
                                       what=f"hostile corpus, seed {SEED}")
