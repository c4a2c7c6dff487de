"""The Prometheus endpoint of the real server (issue 12): after a known
sequence of calls (successes, failures, stream messages) the counters on
/metrics equal the calls made, every histogram adds up, the per-table and
auth counters match what was sent, and the whole page parses as Prometheus
text (tests/security/promtext.py; also `promtool check metrics` when
Debian's prometheus package is installed)."""

import math
import shutil
import struct
import subprocess
import urllib.request

import grpc
import pytest

from embedding.v1 import embedding_service_pb2 as pb
from tests.security import promtext
from tests.security.conftest import bearer, code_of, stub
from tests.testing.binaries import server_binary
from tests.testing.server_process import open_channel

SERVICE = "embedding.v1.EmbeddingService"
HEALTH = "grpc.health.v1.Health"
TABLE = "metrics_t"
ROWS, DIM = 100, 4
STREAM_REQUESTS = 6
READ_ROWS_PER_MESSAGE = 30
CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
         "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
         "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
         "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
         "DATA_LOSS", "UNAUTHENTICATED")
METHOD_TYPES = {
    "CreateTable": "unary", "GetTable": "unary", "ListTables": "unary",
    "DeleteTable": "unary", "Lookup": "unary", "LookupStream": "bidi_stream",
    "LookupBag": "unary", "PushGradients": "unary",
    "PushBagGradients": "unary", "WriteRows": "unary",
    "ReadRows": "server_stream", "SetOptimizer": "unary",
    "SaveCheckpoint": "unary"}


def _floats(*shape, value=0.5):
    count = math.prod(shape)
    return pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=list(shape),
                     data=struct.pack(f"<{count}f", *[value] * count))


def _scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


def _start(start_server, tmp_path, *flags, **kwargs):
    """A server with metrics on a free port; returns (server, metrics port)."""
    port_file = tmp_path / "metrics_port"
    server = start_server("--metrics_address=127.0.0.1:0",
                          f"--metrics_port_file={port_file}", *flags,
                          **kwargs)
    return server, int(port_file.read_text())


def _check_page(text, tmp_path):
    """Parses the page (raises on bad text), checks HELP on our families,
    and runs promtool on it when installed. Returns the families."""
    families = promtext.parse(text)
    for name, family in families.items():
        if name.startswith(("grpc_server_", "embedding_")):
            assert family.help, f"{name} has no HELP"
            assert family.type != "untyped", f"{name} has no TYPE"
    promtool = shutil.which("promtool")
    if promtool:
        page = tmp_path / "metrics.txt"
        page.write_text(text)
        with page.open() as stdin:
            result = subprocess.run([promtool, "check", "metrics"],
                                    stdin=stdin, capture_output=True,
                                    text=True, timeout=60)
        # Lint notes go to stdout with exit 0; a parse error exits non-zero.
        assert result.returncode == 0, result.stdout + result.stderr
    return families


def _rpc(families, metric, method, service=SERVICE, **labels):
    return promtext.value(families, metric, grpc_service=service,
                          grpc_method=method, **labels)


def _handled(families, method, code, service=SERVICE):
    return _rpc(families, "grpc_server_handled_total", method,
                service=service, grpc_code=code)


def _table(families, metric, table=TABLE):
    return promtext.value(families, metric, table=table)


def _known_calls(api):
    """Makes a known set of calls; returns the codes expected per method
    (method -> {code: count}) and the per-table rows they move."""
    expected = {}

    def run(method, call, code):
        got = code_of(call)
        assert got == code, f"{method}: {got}"
        counts = expected.setdefault(method, {})
        counts[code.name] = counts.get(code.name, 0) + 1

    ok = grpc.StatusCode.OK
    spec = pb.TableSpec(name=TABLE, num_embeddings=ROWS, embedding_dim=DIM)
    run("CreateTable", lambda: api.CreateTable(
        pb.CreateTableRequest(spec=spec), timeout=10), ok)
    run("CreateTable", lambda: api.CreateTable(
        pb.CreateTableRequest(spec=spec), timeout=10),
        grpc.StatusCode.ALREADY_EXISTS)
    for _ in range(2):
        run("GetTable", lambda: api.GetTable(
            pb.GetTableRequest(name="missing"), timeout=10),
            grpc.StatusCode.NOT_FOUND)
    for _ in range(3):
        run("Lookup", lambda: api.Lookup(
            pb.LookupRequest(table=TABLE, indices=[1, 2, 3]), timeout=10), ok)
    run("Lookup", lambda: api.Lookup(
        pb.LookupRequest(table=TABLE, indices=[1, ROWS]), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT)
    run("LookupBag", lambda: api.LookupBag(
        pb.LookupBagRequest(table=TABLE, indices=[0, 1, 2, 3, 4],
                            offsets=[0, 2]), timeout=10), ok)
    push = pb.PushGradientsRequest(table=TABLE, indices=[1, 1, 2],
                                   grad=_floats(3, DIM), client_id="c1",
                                   sequence=1)
    run("PushGradients", lambda: api.PushGradients(push, timeout=10), ok)
    run("PushGradients", lambda: api.PushGradients(push, timeout=10), ok)
    run("PushGradients", lambda: api.PushGradients(
        pb.PushGradientsRequest(table=TABLE, indices=[1],
                                grad=_floats(1, DIM, value=math.nan)),
        timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
    run("WriteRows", lambda: api.WriteRows(
        pb.WriteRowsRequest(table=TABLE, indices=[10, 11, 12, 13],
                            values=_floats(4, DIM)), timeout=10), ok)
    run("LookupStream", lambda: list(api.LookupStream(
        iter([pb.LookupRequest(table=TABLE, indices=[i, i + 1])
              for i in range(STREAM_REQUESTS)]), timeout=10)), ok)
    chunks = []
    run("ReadRows", lambda: chunks.extend(api.ReadRows(
        pb.ReadRowsRequest(table=TABLE,
                           rows_per_message=READ_ROWS_PER_MESSAGE),
        timeout=10)), ok)
    assert len(chunks) == math.ceil(ROWS / READ_ROWS_PER_MESSAGE)
    run("ListTables", lambda: api.ListTables(pb.ListTablesRequest(),
                                             timeout=10), ok)
    run("SaveCheckpoint", lambda: api.SaveCheckpoint(
        pb.SaveCheckpointRequest(), timeout=10),
        grpc.StatusCode.FAILED_PRECONDITION)
    return expected


def test_counters_equal_the_calls_made(start_server, tmp_path):
    server, port = _start(start_server, tmp_path,
                          f"--memory_budget_bytes={1 << 24}")
    before = _check_page(_scrape(port), tmp_path)
    for method, kind in METHOD_TYPES.items():
        # Every method and code is there from the start, at zero.
        for code in CODES:
            assert _handled(before, method, code) == 0, (method, code)
        assert promtext.value(before, "grpc_server_started_total",
                              grpc_method=method,
                              grpc_type=kind) == 0, method
    api = stub(open_channel(server.address))
    expected = _known_calls(api)
    text = _scrape(port)
    families = _check_page(text, tmp_path)

    for method, kind in METHOD_TYPES.items():
        codes = expected.get(method, {})
        calls = sum(codes.values())
        for code in CODES:
            assert _handled(families, method, code) == codes.get(code, 0), (
                method, code)
        assert _rpc(families, "grpc_server_started_total", method,
                    grpc_type=kind) == calls, method
        assert _rpc(families, "grpc_server_handling_seconds_count",
                    method) == calls, method
        buckets = promtext.samples(families,
                                   "grpc_server_handling_seconds_bucket",
                                   grpc_service=SERVICE, grpc_method=method)
        assert max(s.value for s in buckets) == calls
        if kind == "unary":
            # One request each; a response only when it succeeded.
            assert _rpc(families, "grpc_server_msg_received_total",
                        method) == calls, method
            assert _rpc(families, "grpc_server_msg_sent_total",
                        method) == codes.get("OK", 0), method
    assert _rpc(families, "grpc_server_msg_received_total",
                "LookupStream") == STREAM_REQUESTS
    assert _rpc(families, "grpc_server_msg_sent_total",
                "LookupStream") == STREAM_REQUESTS
    assert _rpc(families, "grpc_server_msg_received_total", "ReadRows") == 1
    assert _rpc(families, "grpc_server_msg_sent_total", "ReadRows") == (
        math.ceil(ROWS / READ_ROWS_PER_MESSAGE))
    # The harness polled health until SERVING.
    assert _handled(families, "Check", "OK", service=HEALTH) >= 1

    # Per table: what the calls above moved.
    assert _table(families, "embedding_table_rows_looked_up_total") == (
        3 * 3 + 5 + 2 * STREAM_REQUESTS)
    assert _table(families, "embedding_table_rows_updated_total") == 2
    assert _table(families, "embedding_table_pushes_total") == 2
    assert _table(families, "embedding_table_duplicate_pushes_total") == 1
    assert _table(families, "embedding_table_rows_written_total") == 4
    assert _table(families, "embedding_table_rows_read_total") == ROWS
    assert _table(families, "embedding_table_rows") == ROWS
    assert _table(families, "embedding_table_memory_bytes") == ROWS * DIM * 4
    assert promtext.value(families, "embedding_memory_budget_bytes") == (
        1 << 24)
    assert promtext.value(families, "embedding_memory_used_bytes") == (
        ROWS * DIM * 4)
    # Nothing is running now, and nothing is held.
    assert promtext.value(families, "embedding_inflight_requests") == 0
    assert promtext.value(families, "embedding_open_streams") == 0
    assert promtext.value(families, "embedding_inflight_bytes") == 0
    assert promtext.value(families, "embedding_inflight_limit_bytes") > 0
    # No auth, no checkpoints: no such metrics.
    assert "embedding_auth_failures_total" not in families
    assert not promtext.samples(families, "embedding_checkpoint_age_seconds")

    # Scraping is not a call; one more lookup moves exactly one count.
    api.Lookup(pb.LookupRequest(table=TABLE, indices=[7]), timeout=10)
    again = promtext.parse(_scrape(port))
    assert _handled(again, "Lookup", "OK") == expected["Lookup"]["OK"] + 1
    assert _table(again, "embedding_table_rows_looked_up_total") == (
        _table(families, "embedding_table_rows_looked_up_total") + 1)


def test_auth_failures_by_reason(start_server, tmp_path, tokens,
                                 tokens_file):
    server, port = _start(start_server, tmp_path,
                          f"--auth_tokens_file={tokens_file}")
    api = stub(open_channel(server.address))
    request = pb.ListTablesRequest()
    for _ in range(2):
        assert code_of(lambda: api.ListTables(request, timeout=10)) == (
            grpc.StatusCode.UNAUTHENTICATED)
    assert code_of(lambda: api.ListTables(
        request, metadata=bearer("not-a-token"), timeout=10)) == (
        grpc.StatusCode.UNAUTHENTICATED)
    create = pb.CreateTableRequest(spec=pb.TableSpec(
        name=TABLE, num_embeddings=2, embedding_dim=DIM))
    assert code_of(lambda: api.CreateTable(
        create, metadata=bearer(tokens["reader"]), timeout=10)) == (
        grpc.StatusCode.PERMISSION_DENIED)
    assert code_of(lambda: api.ListTables(
        request, metadata=bearer(tokens["reader"]), timeout=10)) == (
        grpc.StatusCode.OK)

    families = _check_page(_scrape(port), tmp_path)
    failures = "embedding_auth_failures_total"
    assert promtext.value(families, failures, reason="missing_token") == 2
    assert promtext.value(families, failures, reason="unknown_token") == 1
    assert promtext.value(families, failures, reason="permission_denied") == 1
    assert _handled(families, "ListTables", "UNAUTHENTICATED") == 3
    assert _handled(families, "ListTables", "OK") == 1
    assert _handled(families, "CreateTable", "PERMISSION_DENIED") == 1


def test_checkpoint_age_and_duration(start_server, tmp_path):
    checkpoints = tmp_path / "ck"
    checkpoints.mkdir()
    server, port = _start(start_server, tmp_path,
                          checkpoint_dir=checkpoints)
    api = stub(open_channel(server.address))
    api.CreateTable(pb.CreateTableRequest(spec=pb.TableSpec(
        name=TABLE, num_embeddings=ROWS, embedding_dim=DIM)), timeout=10)
    families = _check_page(_scrape(port), tmp_path)
    # No checkpoint yet: no sample.
    assert _table(families, "embedding_checkpoint_age_seconds") is None
    api.SaveCheckpoint(pb.SaveCheckpointRequest(tables=[TABLE]), timeout=30)
    families = _check_page(_scrape(port), tmp_path)
    assert _table(families, "embedding_checkpoint_age_seconds") >= 0
    assert _table(families, "embedding_checkpoint_duration_seconds") > 0


@pytest.mark.parametrize("flags, text", [
    (["--metrics_address=no-port"],
     'INVALID_ARGUMENT: --metrics_address="no-port" is not HOST:PORT: '
     "no port"),
    (["--metrics_address=127.0.0.1:99999"],
     'INVALID_ARGUMENT: --metrics_address="127.0.0.1:99999" is not '
     "HOST:PORT: the port must be a number in [0, 65535]"),
    (["--metrics_address=[::1]:0"],
     'INVALID_ARGUMENT: --metrics_address="[::1]:0" is not HOST:PORT: the '
     "host must be an IPv4 address or a host name"),
    (["--metrics_port_file=/tmp/x"],
     "--metrics_port_file needs --metrics_address"),
])
def test_bad_metrics_flags_stop_the_start(flags, text):
    result = subprocess.run(
        [str(server_binary()), "--listen_address=127.0.0.1:0", *flags],
        capture_output=True, text=True, timeout=30)
    # A usage error, as for any flag the server refuses.
    assert result.returncode == 2, result.stderr
    assert text in result.stderr


def test_taken_metrics_port_is_refused(start_server, tmp_path):
    _, port = _start(start_server, tmp_path)
    result = subprocess.run(
        [str(server_binary()), "--listen_address=127.0.0.1:0",
         f"--metrics_address=127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert f"--metrics_address=127.0.0.1:{port}" in result.stderr


# The parser itself: it must accept what the format allows and refuse what
# it does not, or the checks above prove nothing.
GOOD_PAGE = """\
# HELP requests_total Requests \\\\ with a backslash\\nand a newline.
# TYPE requests_total counter
requests_total{path="/a\\"b\\\\c\\nd",code="200"} 3
requests_total{path="/",code="500",} 1.5e3 1700000000000
# a plain comment
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 1
latency_seconds_bucket{le="+Inf"} 2
latency_seconds_sum 0.35
latency_seconds_count 2
# TYPE temperature gauge
temperature -Inf
temperature{room="x"} NaN
"""


def test_parser_reads_escapes_types_and_histograms():
    families = promtext.parse(GOOD_PAGE)
    requests = families["requests_total"]
    assert requests.type == "counter"
    assert requests.help == "Requests \\ with a backslash\nand a newline."
    assert requests.samples[0].labels == {"path": '/a"b\\c\nd', "code": "200"}
    assert requests.samples[1].value == 1500
    assert requests.samples[1].timestamp == 1700000000000
    assert promtext.value(families, "latency_seconds_count") == 2
    assert promtext.value(families, "temperature", room="x") != 0
    assert math.isinf(families["temperature"].samples[0].value)


@pytest.mark.parametrize("page", [
    "metric{a=\"1\"} x\n",                          # not a number
    "metric{a=1} 1\n",                              # unquoted value
    "metric{a=\"1\" 1\n",                           # unterminated labels
    "metric{a=\"\\q\"} 1\n",                        # bad escape
    "9metric 1\n",                                  # bad name
    "metric 1\nother 1\nmetric 2\n",                # not contiguous
    "metric 1\nmetric 2\n",                         # series twice
    "# TYPE m counter\nm -1\n",                     # negative counter
    "m 1\n# TYPE m counter\n",                      # TYPE after samples
    "# TYPE m counter\n# TYPE m counter\nm 1\n",   # TYPE twice
    "# TYPE m nonsense\n",                          # unknown type
    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
    "h_sum 1\nh_count 1\n",                         # not cumulative
    "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # +Inf
    "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
])
def test_parser_refuses_bad_pages(page):
    with pytest.raises(promtext.PromTextError):
        promtext.parse(page)
