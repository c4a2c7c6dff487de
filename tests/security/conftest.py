"""Shared pieces of the security tests: certificates made by openssl in a
temporary directory (tests/testing/certs.py), a tokens file with one random
token per role, real embedding_server processes stopped after each test,
and channels carrying a bearer token.

    server = start_server(f"--auth_tokens_file={tokens_file}")
    api = stub(open_channel(server.address))
    api.ListTables(pb.ListTablesRequest(), metadata=bearer(tokens["reader"]))
"""

import os
import secrets

import grpc
import pytest

from embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.testing.certs import make_pki
from tests.testing.server_process import ServerProcess, open_channel

ROLES = ("reader", "trainer", "admin")


def new_tokens():
    """role -> a fresh random token (a test that finds one in a log found a
    real leak, not a coincidence)."""
    return {role: f"{role}-{secrets.token_urlsafe(18)}" for role in ROLES}


# The tokens of the tokens_file fixture: random once per test process.
# pytest imports this file as its conftest and the tests import it again as
# tests.security.conftest, so the random part lives in the environment
# where both imports find the same one.
_SALT = os.environ.setdefault("EMBEDDING_TEST_TOKEN_SALT",
                              secrets.token_urlsafe(18))
TOKENS = {role: f"{role}-{_SALT}" for role in ROLES}


def bearer(token):
    """Call metadata carrying `token` (none for None)."""
    return () if token is None else (("authorization", f"Bearer {token}"),)


def write_tokens(path, tokens, extra_lines=()):
    """A tokens file: `tokens` (role -> token), then `extra_lines` as they
    are."""
    lines = ["# issue 12 test tokens", ""]
    lines += [f"{role} {token}" for role, token in tokens.items()]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n")
    return path


def stub(channel):
    return pb_grpc.EmbeddingServiceStub(channel)


def tls_credentials(ca=None, client=None):
    """Channel credentials trusting `ca` (a KeyPair), presenting `client`
    (a KeyPair) when given."""
    return grpc.ssl_channel_credentials(
        ca.cert.read_bytes() if ca else None,
        client.key.read_bytes() if client else None,
        client.cert.read_bytes() if client else None)


def code_of(call):
    """The status code `call()` ends with (OK when it returns; a streaming
    call must be consumed inside `call`)."""
    try:
        call()
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


@pytest.fixture
def tokens():
    """role -> token of tokens_file (TOKENS)."""
    return TOKENS


@pytest.fixture
def tokens_file(tmp_path, tokens):
    return write_tokens(tmp_path / "tokens", tokens)


@pytest.fixture
def start_server():
    """start(*flags, **ServerProcess kwargs): a started server; all are
    closed after the test."""
    started = []

    def start(*flags, **kwargs):
        server = ServerProcess(*flags, **kwargs)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.close()


__all__ = ["ROLES", "TOKENS", "bearer", "code_of", "new_tokens", "open_channel", "stub",
           "tls_credentials", "write_tokens"]
