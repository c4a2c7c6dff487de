"""Token roles on the real server (issue 12): every EmbeddingService RPC x
{no token, bad token, reader, trainer, admin} ends with the exact code, and
a refused call changes nothing; health needs no token; mutual TLS maps a
certificate's common name to a role; tokens never reach the log."""

import json
import struct

import grpc
import pytest

from embedding.v1 import embedding_service_pb2 as pb
from tests.security.conftest import (ROLES, bearer, code_of,
                                     open_channel, stub, tls_credentials,
                                     write_tokens)
from tests.testing.server_process import SERVING, ProbeTls, health_status

TABLE = "auth_matrix"
ROWS, DIM = 8, 4
ROLE_RANK = {"reader": 1, "trainer": 2, "admin": 3}
OK = grpc.StatusCode.OK


def _floats(*shape, value=0.0):
    count = 1
    for size in shape:
        count *= size
    return pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=list(shape),
                     data=struct.pack(f"<{count}f", *[value] * count))


def _lookup_stream(api, metadata):
    return list(api.LookupStream(
        iter([pb.LookupRequest(table=TABLE, indices=[1])]),
        metadata=metadata, timeout=10))


# Method -> (role it needs, the call, the code once past authentication).
# Allowed calls are chosen to end the same way whatever ran before them.
def _calls(role_label):
    new_table = f"created_by_{role_label}"
    return {
        "CreateTable": ("admin", lambda api, md: api.CreateTable(
            pb.CreateTableRequest(spec=pb.TableSpec(
                name=new_table, num_embeddings=2, embedding_dim=DIM)),
            metadata=md, timeout=10), OK),
        "GetTable": ("reader", lambda api, md: api.GetTable(
            pb.GetTableRequest(name=TABLE), metadata=md, timeout=10), OK),
        "ListTables": ("reader", lambda api, md: api.ListTables(
            pb.ListTablesRequest(), metadata=md, timeout=10), OK),
        "DeleteTable": ("admin", lambda api, md: api.DeleteTable(
            pb.DeleteTableRequest(name="no_such_table"), metadata=md,
            timeout=10), grpc.StatusCode.NOT_FOUND),
        "Lookup": ("reader", lambda api, md: api.Lookup(
            pb.LookupRequest(table=TABLE, indices=[0, 3]), metadata=md,
            timeout=10), OK),
        "LookupStream": ("reader", _lookup_stream, OK),
        "LookupBag": ("reader", lambda api, md: api.LookupBag(
            pb.LookupBagRequest(table=TABLE, indices=[0, 1, 2],
                                offsets=[0, 2]), metadata=md, timeout=10),
            OK),
        "PushGradients": ("trainer", lambda api, md: api.PushGradients(
            pb.PushGradientsRequest(table=TABLE, indices=[1],
                                    grad=_floats(1, DIM, value=0.5)),
            metadata=md, timeout=10), OK),
        "PushBagGradients": ("trainer", lambda api, md: api.PushBagGradients(
            pb.PushBagGradientsRequest(table=TABLE, indices=[1, 2],
                                       offsets=[0],
                                       grad=_floats(1, DIM, value=0.5)),
            metadata=md, timeout=10), OK),
        "WriteRows": ("trainer", lambda api, md: api.WriteRows(
            pb.WriteRowsRequest(table=TABLE, indices=[2],
                                values=_floats(1, DIM, value=7.0)),
            metadata=md, timeout=10), OK),
        "ReadRows": ("reader", lambda api, md: list(api.ReadRows(
            pb.ReadRowsRequest(table=TABLE, indices=[0, 1]), metadata=md,
            timeout=10)), OK),
        "SetOptimizer": ("admin", lambda api, md: api.SetOptimizer(
            pb.SetOptimizerRequest(table=TABLE, optimizer=pb.Optimizer(
                sgd=pb.SgdOptions(lr=0.5))), metadata=md, timeout=10), OK),
        # No --checkpoint_dir: past authentication it is refused for that.
        "SaveCheckpoint": ("admin", lambda api, md: api.SaveCheckpoint(
            pb.SaveCheckpointRequest(), metadata=md, timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION),
    }


def _state(api, admin_token):
    """Every table's info and rows, as the admin sees them."""
    admin = bearer(admin_token)
    tables = api.ListTables(pb.ListTablesRequest(), metadata=admin,
                            timeout=10).tables
    rows = {}
    for info in tables:
        name = info.spec.name
        rows[name] = [(list(m.indices), m.values.data) for m in api.ReadRows(
            pb.ReadRowsRequest(table=name, start_row=0,
                               end_row=info.spec.num_embeddings),
            metadata=admin, timeout=10)]
    return sorted(t.SerializeToString(deterministic=True)
                  for t in tables), rows


@pytest.fixture
def auth_server(start_server, tokens_file, tokens):
    server = start_server(f"--auth_tokens_file={tokens_file}",
                          "--log_level=debug")
    with open_channel(server.address) as channel:
        api = stub(channel)
        api.CreateTable(pb.CreateTableRequest(spec=pb.TableSpec(
            name=TABLE, num_embeddings=ROWS, embedding_dim=DIM)),
            metadata=bearer(tokens["admin"]), timeout=10)
        yield server, api


def test_every_method_and_credential_gets_its_exact_code(auth_server,
                                                         tokens):
    server, api = auth_server
    credentials = {"no token": None, "bad token": "not-a-known-token",
                   **{role: tokens[role] for role in ROLES}}
    methods = set(pb.DESCRIPTOR.services_by_name["EmbeddingService"]
                  .methods_by_name)
    for label, token in credentials.items():
        calls = _calls(label.replace(" ", "_"))
        assert set(calls) == methods, "a method is missing from the matrix"
        for method, (needed, call, allowed_code) in calls.items():
            if token is None or token not in tokens.values():
                expected = grpc.StatusCode.UNAUTHENTICATED
            elif ROLE_RANK[label] < ROLE_RANK[needed]:
                expected = grpc.StatusCode.PERMISSION_DENIED
            else:
                expected = allowed_code
            before = (_state(api, tokens["admin"])
                      if expected != allowed_code else None)
            code = code_of(lambda: call(api, bearer(token)))
            assert code == expected, (method, label)
            if before is not None:
                assert _state(api, tokens["admin"]) == before, f"{method} with {label} " \
                                              "changed the tables"
    assert "not-a-known-token" not in server.log()


def test_refusals_say_what_is_missing_or_needed(auth_server, tokens):
    _, api = auth_server
    request = pb.WriteRowsRequest(table=TABLE, indices=[2],
                                  values=_floats(1, DIM))
    with pytest.raises(grpc.RpcError) as missing:
        api.WriteRows(request, timeout=10)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer TOKEN" in missing.value.details()
    with pytest.raises(grpc.RpcError) as malformed:
        api.WriteRows(request, metadata=(("authorization",
                                          tokens["admin"]),), timeout=10)
    assert malformed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "malformed" in malformed.value.details()
    assert tokens["admin"] not in malformed.value.details()
    with pytest.raises(grpc.RpcError) as unknown:
        api.WriteRows(request, metadata=bearer("guess"), timeout=10)
    assert unknown.value.details() == (
        "unknown bearer token (not in the server's token file)")
    with pytest.raises(grpc.RpcError) as denied:
        api.WriteRows(request, metadata=bearer(tokens["reader"]), timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert denied.value.details() == (
        "WriteRows needs role trainer or higher; the caller has role reader")


def test_health_needs_no_token(auth_server):
    server, _ = auth_server
    assert health_status(server.address) == SERVING


def test_tokens_never_reach_the_log_and_failures_are_logged(auth_server,
                                                           tokens):
    server, api = auth_server
    for token in [*tokens.values(), "wrong-token-123"]:
        code_of(lambda: api.DeleteTable(pb.DeleteTableRequest(name="x"),
                                        metadata=bearer(token), timeout=10))
    code_of(lambda: api.GetTable(pb.GetTableRequest(name="missing_table"),
                                 metadata=bearer(tokens["reader"]),
                                 timeout=10))
    log = server.log()
    for token in [*tokens.values(), "wrong-token-123"]:
        assert token not in log
    # One debug line per failed call: method, code, peer, table.
    assert "DeleteTable failed: PERMISSION_DENIED" in log
    assert "DeleteTable failed: UNAUTHENTICATED" in log
    failed_get = [line for line in log.splitlines()
                  if "GetTable failed: NOT_FOUND" in line
                  and ", table \"missing_table\")" in line]
    assert failed_get and "peer ipv4:127.0.0.1:" in failed_get[0]
    assert "authentication " in log and "3 tokens (1 reader, 1 trainer, " \
                                        "1 admin)" in log


def test_reflection_is_off_unless_enabled(start_server, tokens_file):
    reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    for flags, expected in (((), grpc.StatusCode.UNIMPLEMENTED),
                            (("--enable_reflection",), OK)):
        server = start_server(*flags)
        with open_channel(server.address) as channel:
            # list_services: field 7 (string) = "".
            call = channel.stream_stream(reflection)
            assert code_of(lambda: list(call(iter([b"\x3a\x00"]),
                                             timeout=10))) == expected


def _mtls_channel(start_server, pki, tokens_file):
    """A mutual TLS server with `tokens_file`, and a channel to it presenting
    make_pki's client certificate (CN=trainer-1)."""
    client = ProbeTls(tls_credentials(pki.ca, pki.client))
    server = start_server(f"--tls_cert_file={pki.server.cert}",
                          f"--tls_key_file={pki.server.key}",
                          f"--tls_client_ca_file={pki.ca.cert}",
                          f"--auth_tokens_file={tokens_file}", tls=client)
    return client.channel(server.address)


def test_mutual_tls_common_name_gets_its_role(start_server, pki, tmp_path,
                                             tokens):
    tokens_file = write_tokens(tmp_path / "cn_tokens", tokens,
                               extra_lines=["trainer cn:trainer-1"])
    with _mtls_channel(start_server, pki, tokens_file) as channel:
        api = stub(channel)
        create = pb.CreateTableRequest(spec=pb.TableSpec(
            name=TABLE, num_embeddings=ROWS, embedding_dim=DIM))
        # The certificate alone: trainer.
        with pytest.raises(grpc.RpcError) as denied:
            api.CreateTable(create, timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "caller has role trainer" in denied.value.details()
        # A token too: the higher of the two roles.
        api.CreateTable(create, metadata=bearer(tokens["admin"]), timeout=10)
        reply = api.PushGradients(pb.PushGradientsRequest(
            table=TABLE, indices=[1], grad=_floats(1, DIM, value=1.0)),
            timeout=10)
        assert reply.rows_updated == 1
        # A reader token does not lower the certificate's role.
        api.WriteRows(pb.WriteRowsRequest(table=TABLE, indices=[2],
                                          values=_floats(1, DIM)),
                      metadata=bearer(tokens["reader"]), timeout=10)
        # A wrong token is refused even with a good certificate.
        assert code_of(lambda: api.GetTable(
            pb.GetTableRequest(name=TABLE), metadata=bearer("nope"),
            timeout=10)) == grpc.StatusCode.UNAUTHENTICATED


def test_mutual_tls_unmapped_common_name_needs_a_token(start_server, pki,
                                                      tokens_file, tokens):
    with _mtls_channel(start_server, pki, tokens_file) as channel:
        api = stub(channel)
        assert code_of(lambda: api.ListTables(
            pb.ListTablesRequest(), timeout=10)) == \
            grpc.StatusCode.UNAUTHENTICATED
        api.ListTables(pb.ListTablesRequest(),
                       metadata=bearer(tokens["reader"]), timeout=10)


def test_json_log_is_one_escaped_object_per_line(start_server, tokens_file,
                                                 tokens):
    server = start_server(f"--auth_tokens_file={tokens_file}",
                          "--log_format=json", "--log_level=debug")
    with open_channel(server.address) as channel:
        api = stub(channel)
        odd_name = 'quote"back\\slash\nnewline'
        assert code_of(lambda: api.GetTable(
            pb.GetTableRequest(name=odd_name),
            metadata=bearer(tokens["reader"]), timeout=10)) != OK
        assert code_of(lambda: api.ListTables(
            pb.ListTablesRequest(), timeout=10)) == \
            grpc.StatusCode.UNAUTHENTICATED
    server.stop()
    records = [json.loads(line) for line in server.log().splitlines()]
    assert all(set(r) == {"time", "level", "logger", "message"}
               for r in records)
    messages = [r["message"] for r in records]
    assert any(m.startswith("transport plaintext; authentication ")
               for m in messages)
    # QuoteForMessage escapes the name; JSON escapes the message again.
    failed = [r for r in records if r["message"].startswith("GetTable failed")
              and r["message"].endswith(
                  ', table "quote\\"back\\\\slash\\nnewline")')]
    assert failed and failed[0]["level"] == "debug"
    assert any(m.startswith("ListTables failed: UNAUTHENTICATED")
               for m in messages)
