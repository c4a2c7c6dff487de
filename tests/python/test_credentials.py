"""The Python client's token and TLS options (client/CONTRACT.md,
"Security"): their checks, the token on every call (unary, retried,
streamed, each shard of a cluster), UNAUTHENTICATED and PERMISSION_DENIED
as their own never-retried errors, and TLS and mutual TLS against an
in-process gRPC server with certificates from tests/testing/certs.py.

An in-process server, because it can show the metadata each call carried;
tests/security/test_clients.py runs the clients against the real server
with TLS and token roles."""

import collections
from concurrent import futures

import grpc
import numpy as np
import pytest

from embedding_client import (TOKEN_ENVIRONMENT_VARIABLE, EmbeddingClient,
                              FailedPreconditionError,
                              InvalidArgumentError, PermissionDeniedError,
                              TlsOptions, UnauthenticatedError,
                              UnavailableError, tensors)
from embedding_client._stubs import pb, pb_grpc
from tests.testing.certs import make_pki

# A request's indices, in either wire form (indices or indices_le).
_indices = tensors.indices_of_request

DIM = 2
TABLE = pb.TableInfo(spec=pb.TableSpec(name="t", num_embeddings=8,
                                       embedding_dim=DIM), local_rows=8)


def _rows(indices):
    return tensors.to_tensor(np.ones((len(indices), DIM), np.float32))


class RecordingService(pb_grpc.EmbeddingServiceServicer):
    """Answers a few RPCs; records each call's metadata by method, and
    fails every call with `code` when it is set."""

    def __init__(self):
        self.metadata = collections.defaultdict(list)
        self.code = None

    def _begin(self, method, context):
        self.metadata[method].append(dict(context.invocation_metadata()))
        if self.code is not None:
            context.abort(self.code, f"{method} refused by the test")

    def authorizations(self, method):
        return [call.get("authorization") for call in self.metadata[method]]

    def GetTable(self, request, context):
        self._begin("GetTable", context)
        return TABLE

    def ListTables(self, request, context):
        self._begin("ListTables", context)
        return pb.ListTablesResponse(tables=[TABLE])

    def Lookup(self, request, context):
        self._begin("Lookup", context)
        return pb.LookupResponse(embeddings=_rows(_indices(request)))

    def LookupStream(self, requests, context):
        self._begin("LookupStream", context)
        for request in requests:
            yield pb.LookupResponse(embeddings=_rows(_indices(request)))

    def PushGradients(self, request, context):
        self._begin("PushGradients", context)
        return pb.PushGradientsResponse(rows_updated=len(_indices(request)))

    def ReadRows(self, request, context):
        self._begin("ReadRows", context)
        yield pb.ReadRowsResponse(indices=[0], values=_rows([0]))


def _serve(service, credentials=None):
    """Starts `service` on a free loopback port; returns (server, address)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_EmbeddingServiceServicer_to_server(service, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def service():
    recording = RecordingService()
    server, recording.address = _serve(recording)
    yield recording
    server.stop(None)


@pytest.fixture
def no_environment_token(monkeypatch):
    monkeypatch.delenv(TOKEN_ENVIRONMENT_VARIABLE, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


# ---- checks ---------------------------------------------------------------

def test_token_variable_is_embedding_token():
    assert TOKEN_ENVIRONMENT_VARIABLE == "EMBEDDING_TOKEN"


@pytest.mark.parametrize("tls, message", [
    (TlsOptions(), "TlsOptions needs ca_file, the CA that signed the "
     "server's certificate"),
    (TlsOptions(ca_file="ca.crt", cert_file="c.crt"),
     "TlsOptions.cert_file is set without key_file: mutual TLS needs the "
     "client certificate and its key"),
    (TlsOptions(ca_file="ca.crt", key_file="c.key"),
     "TlsOptions.key_file is set without cert_file: mutual TLS needs the "
     "client certificate and its key"),
    (TlsOptions(ca_file="/nonexistent/ca.crt"),
     "cannot read TlsOptions.ca_file /nonexistent/ca.crt: No such file or "
     "directory"),
    ("ca.crt", "tls must be a TlsOptions, got str"),
])
def test_bad_tls_options_are_invalid_argument(tls, message):
    with pytest.raises(InvalidArgumentError) as raised:
        EmbeddingClient("127.0.0.1:1", tls=tls)
    assert raised.value.message.startswith(message), raised.value.message


def test_file_without_pem_block_is_named(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate\n")
    with pytest.raises(InvalidArgumentError,
                       match=f"TlsOptions.ca_file {ca} holds no PEM block"):
        EmbeddingClient("127.0.0.1:1", tls=TlsOptions(ca_file=str(ca)))


def test_tls_and_credentials_together_are_invalid_argument(pki):
    with pytest.raises(InvalidArgumentError,
                       match="tls and credentials are both given"):
        EmbeddingClient("127.0.0.1:1",
                        tls=TlsOptions(ca_file=str(pki.ca.cert)),
                        credentials=grpc.ssl_channel_credentials())


def test_token_a_header_cannot_carry_is_not_quoted():
    with pytest.raises(InvalidArgumentError) as raised:
        EmbeddingClient("127.0.0.1:1", token="secret\nmore")
    assert raised.value.message == (
        "token holds '\\n' at position 6, which a gRPC header cannot carry: "
        "a token is printable ASCII without spaces")
    assert "secret" not in str(raised.value)


def test_environment_token_is_checked_too(monkeypatch):
    monkeypatch.setenv(TOKEN_ENVIRONMENT_VARIABLE, "two words")
    with pytest.raises(InvalidArgumentError,
                       match=r"the token in \$EMBEDDING_TOKEN holds ' ' at "
                             r"position 3"):
        EmbeddingClient("127.0.0.1:1")


def test_sharded_client_checks_before_connecting():
    with pytest.raises(InvalidArgumentError, match="TlsOptions needs ca_file"):
        EmbeddingClient(["127.0.0.1:1", "127.0.0.1:2"], tls=TlsOptions())


# ---- the token on every call ----------------------------------------------

def test_every_call_carries_the_token(service, no_environment_token):
    with EmbeddingClient(service.address, token="T0k3n",
                         metadata=[("x-trainer", "7")]) as client:
        client.get_table("t")
        client.list_tables()
        client.lookup("t", [1, 2])
        list(client.lookup_stream("t", [[1], [2, 3]]))
        client.push_gradients("t", [1], np.ones((1, DIM), np.float32))
        client.read_rows("t", [0])
    for method in ("GetTable", "ListTables", "Lookup", "LookupStream",
                   "PushGradients", "ReadRows"):
        # Some methods ask GetTable first: every call counts.
        calls = service.metadata[method]
        assert calls and all(call.get("authorization") == "Bearer T0k3n" and
                             call.get("x-trainer") == "7"
                             for call in calls), (method, calls)


def test_retried_call_carries_the_token(service, no_environment_token):
    service.code = grpc.StatusCode.UNAVAILABLE
    with EmbeddingClient(service.address, token="T", max_retries=2) as client:
        with pytest.raises(UnavailableError):
            client.get_table("t")
    assert service.authorizations("GetTable") == ["Bearer T"] * 3


def test_token_comes_from_the_environment_unless_given(service, monkeypatch):
    monkeypatch.setenv(TOKEN_ENVIRONMENT_VARIABLE, "env-token")
    with EmbeddingClient(service.address) as client:
        client.list_tables()
    with EmbeddingClient(service.address, token="given") as client:
        client.list_tables()
    with EmbeddingClient(service.address, token="") as client:
        client.list_tables()  # "" turns the environment's off.
    assert service.authorizations("ListTables") == [
        "Bearer env-token", "Bearer given", None]


def test_every_shard_gets_the_token(no_environment_token):
    services = [RecordingService(), RecordingService()]
    servers = [_serve(service) for service in services]
    try:
        addresses = [address for _, address in servers]
        with EmbeddingClient(addresses, token="shard-token") as client:
            with pytest.raises(FailedPreconditionError):
                # The fakes are no cluster (the check fails); both are asked.
                client.get_table("t")
        for service in services:
            assert service.authorizations("GetTable") == ["Bearer shard-token"]
    finally:
        for server, _ in servers:
            server.stop(None)


@pytest.mark.parametrize("code, error", [
    (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
    (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError)])
def test_auth_failures_are_their_own_errors_and_not_retried(
        service, code, error):
    service.code = code
    with EmbeddingClient(service.address, token="T", max_retries=3) as client:
        with pytest.raises(error) as raised:
            client.lookup("t", [1])
    assert raised.value.code == code
    assert raised.value.message == "Lookup refused by the test"
    assert isinstance(raised.value, PermissionError)
    assert len(service.metadata["Lookup"]) == 1


# ---- TLS ------------------------------------------------------------------

def _tls_server(pki, require_client_certificate=False):
    service = RecordingService()
    credentials = grpc.ssl_server_credentials(
        [(pki.server.key.read_bytes(), pki.server.cert.read_bytes())],
        root_certificates=(pki.ca.cert.read_bytes()
                           if require_client_certificate else None),
        require_client_auth=require_client_certificate)
    server, service.address = _serve(service, credentials)
    return server, service


@pytest.fixture
def tls_service(pki):
    server, service = _tls_server(pki)
    yield service
    server.stop(None)


def _list_tables(address, **kwargs):
    with EmbeddingClient(address, max_retries=0, timeout=10,
                         **kwargs) as client:
        return client.list_tables()


def test_tls_client_reaches_the_server_with_its_token(pki, tls_service):
    tables = _list_tables(tls_service.address, token="T",
                          tls=TlsOptions(ca_file=str(pki.ca.cert)))
    assert [table.name for table in tables] == ["t"]
    assert tls_service.authorizations("ListTables") == ["Bearer T"]


def test_server_name_override_is_what_the_certificate_must_name(
        pki, tls_service):
    _list_tables(tls_service.address, tls=TlsOptions(
        ca_file=str(pki.ca.cert), server_name="localhost"))
    with pytest.raises(UnavailableError,
                       match="Peer name other.example is not in peer "
                             "certificate"):
        _list_tables(tls_service.address, tls=TlsOptions(
            ca_file=str(pki.ca.cert), server_name="other.example"))
    assert len(tls_service.metadata["ListTables"]) == 1


def test_plaintext_client_is_refused(tls_service):
    with pytest.raises(UnavailableError):
        _list_tables(tls_service.address)
    assert not tls_service.metadata["ListTables"]


def test_server_certificate_of_another_ca_is_refused(pki, tls_service):
    with pytest.raises(UnavailableError, match="certificate verify failed"):
        _list_tables(tls_service.address,
                     tls=TlsOptions(ca_file=str(pki.other_ca.cert)))
    assert not tls_service.metadata["ListTables"]


def test_mutual_tls_needs_a_certificate_of_the_ca(pki):
    server, service = _tls_server(pki, require_client_certificate=True)
    try:
        ca = str(pki.ca.cert)
        with pytest.raises(UnavailableError):
            _list_tables(service.address, tls=TlsOptions(ca_file=ca))
        with pytest.raises(UnavailableError):
            _list_tables(service.address, tls=TlsOptions(
                ca_file=ca, cert_file=str(pki.other_client.cert),
                key_file=str(pki.other_client.key)))
        _list_tables(service.address, tls=TlsOptions(
            ca_file=ca, cert_file=str(pki.client.cert),
            key_file=str(pki.client.key)))
        assert len(service.metadata["ListTables"]) == 1
    finally:
        server.stop(None)
