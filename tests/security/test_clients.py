"""The clients against the real embedding_server with TLS and token roles
(issue 12): the CLI (one server and a two-shard cluster), the Python
client, RemoteEmbedding, and mutual TLS with a certificate mapped to a
role. Certificates come from openssl (tests/testing/certs.py); the tokens
file gives one token per role and maps the client certificate's common name
to `trainer`.

Each refused call is checked to have changed nothing."""

import contextlib
import json
import os
import secrets
import subprocess

import grpc
import numpy as np
import pytest

from embedding_client import (SGD, Constant, EmbeddingClient,
                              PermissionDeniedError, TlsOptions,
                              UnauthenticatedError, UnavailableError)
from tests.e2e.cli_runner import Cli, parse_rows
from tests.testing.binaries import bench_binary
from tests.testing.certs import make_pki
from tests.testing.fixtures import table  # noqa: F401
from tests.testing.server_process import ServerProcess

TOKEN_VARIABLE = "EMBEDDING_TOKEN"
TOKENS = {role: f"{role}-{secrets.token_urlsafe(12)}"
          for role in ("reader", "trainer", "admin")}
# The subject common name of make_pki's client certificate.
CLIENT_CN = "trainer-1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    """The server's tokens file and one token file per role (token.ROLE)."""
    directory = tmp_path_factory.mktemp("tokens")
    lines = ["# roles of tests/security/test_clients.py", ""]
    lines += [f"{role} {token}" for role, token in TOKENS.items()]
    lines.append(f"trainer cn:{CLIENT_CN}")
    (directory / "tokens").write_text("\n".join(lines) + "\n")
    for role, token in TOKENS.items():
        (directory / f"token.{role}").write_text(token + "\n")
    return directory


def _tls_flags(pki, client_certificate=False):
    flags = [f"--tls_ca_file={pki.ca.cert}"]
    if client_certificate:
        flags += [f"--tls_cert_file={pki.client.cert}",
                  f"--tls_key_file={pki.client.key}"]
    return flags


def _server(pki, secrets_dir, *flags, client_certificate=False):
    """A TLS + token server; `with` starts it and waits until it is
    SERVING (its health probed over TLS)."""
    client_pair = ((pki.client.key.read_bytes(), pki.client.cert.read_bytes())
                   if client_certificate else ())
    server = ServerProcess(f"--tls_cert_file={pki.server.cert}",
                           f"--tls_key_file={pki.server.key}",
                           f"--auth_tokens_file={secrets_dir / 'tokens'}",
                           *flags,
                           tls=grpc.ssl_channel_credentials(
                               pki.ca.cert.read_bytes(), *client_pair))
    return server


@pytest.fixture(scope="module")
def tls_server(pki, secrets_dir):
    with _server(pki, secrets_dir) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(pki, secrets_dir):
    with _server(pki, secrets_dir, f"--tls_client_ca_file={pki.ca.cert}",
                 client_certificate=True) as server:
        yield server


def _cli(address, pki, role=None, *, token_file=None,
         client_certificate=False):
    """The CLI over TLS with role's token in $EMBEDDING_TOKEN (None: no
    token) and, if given, --token_file=token_file."""
    flags = _tls_flags(pki, client_certificate)
    if token_file is not None:
        flags.append(f"--token_file={token_file}")
    return Cli(address, *flags,
               env={TOKEN_VARIABLE: TOKENS[role] if role else None})


# ---- CLI ------------------------------------------------------------------

def _check_cli_roles(address, pki, secrets_dir, table):
    """Admin creates (token file), reader looks up ($EMBEDDING_TOKEN), a
    reader's push is refused and changes nothing."""
    admin = _cli(address, pki, token_file=secrets_dir / "token.admin")
    admin.ok("create-table", table, "--num_embeddings=8", "--embedding_dim=2",
             "--initializer=constant:0.5")
    reader = _cli(address, pki, "reader")
    shape, rows = parse_rows(reader.ok("lookup", table, "--indices=1,6"))
    assert shape == [2, 2]
    assert rows == [("1", [0.5, 0.5]), ("6", [0.5, 0.5])]
    message = reader.fails("push", table, "--indices=1", "--grad=1,1",
                           code="PERMISSION_DENIED")
    assert message and TOKENS["reader"] not in message
    assert parse_rows(reader.ok("lookup", table, "--indices=1"))[1] == [
        ("1", [0.5, 0.5])]


def test_cli_token_roles_over_tls(tls_server, pki, secrets_dir, table):
    _check_cli_roles(tls_server.address, pki, secrets_dir, table)


def test_cli_token_roles_over_a_tls_cluster(pki, secrets_dir, table):
    with contextlib.ExitStack() as stack:
        shards = [stack.enter_context(_server(
            pki, secrets_dir, f"--shard_index={k}", "--shard_count=2"))
            for k in range(2)]
        _check_cli_roles(",".join(s.address for s in shards), pki,
                         secrets_dir, table)


def test_cli_without_token_is_unauthenticated_but_health_is_open(
        tls_server, pki):
    anonymous = _cli(tls_server.address, pki)
    anonymous.fails("list", code="UNAUTHENTICATED")
    assert anonymous.ok("health") == f"{tls_server.address}: SERVING\n"


def test_cli_token_file_wins_over_the_environment(tls_server, pki,
                                                  secrets_dir, table):
    both = _cli(tls_server.address, pki, "reader",
                token_file=secrets_dir / "token.admin")
    both.ok("create-table", table, "--num_embeddings=4", "--embedding_dim=2")
    both.ok("delete", table)


def test_cli_bad_token_file_and_plaintext_are_clean_errors(tls_server, pki):
    missing = Cli(tls_server.address, *_tls_flags(pki),
                  "--token_file=/nonexistent/token")
    assert missing.fails("list", code="INVALID_ARGUMENT") == (
        "cannot read token file /nonexistent/token: No such file or "
        "directory")
    plaintext = Cli(tls_server.address, env={TOKEN_VARIABLE: TOKENS["admin"]})
    plaintext.fails("list", code="UNAVAILABLE")


# ---- embedding_bench ------------------------------------------------------

def _bench(server, pki, table, *flags, token=None):
    """Runs embedding_bench briefly over TLS; returns its JSON result."""
    if not bench_binary().exists():
        pytest.skip(f"no embedding_bench at {bench_binary()}")
    environment = {**os.environ, TOKEN_VARIABLE: token or ""}
    result = subprocess.run(
        [str(bench_binary()), "--target=service",
         f"--address={server.address}", f"--table={table}",
         "--table_rows=1000", "--dim=8", "--batch=16", "--duration_s=0.3",
         "--warmup_s=0.1", "--json=-", *_tls_flags(pki), *flags],
        capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_bench_raw_calls_carry_tls_and_the_token(tls_server, pki,
                                                 secrets_dir, table):
    pushed = _bench(tls_server, pki, table, "--workload=push_sgd",
                    f"--token_file={secrets_dir / 'token.admin'}")
    assert pushed["requests"] > 0 and pushed["errors"] == 0, pushed
    looked_up = _bench(tls_server, pki, table, "--nosetup",
                       "--workload=lookup_stream", token=TOKENS["reader"])
    assert looked_up["requests"] > 0 and looked_up["errors"] == 0, looked_up
    refused = _bench(tls_server, pki, table, "--nosetup",
                     "--workload=push_sgd", token=TOKENS["reader"])
    assert refused["errors"] == refused["requests"] > 0, refused
    assert refused["first_error"].startswith("PERMISSION_DENIED: "), refused


# ---- Python ---------------------------------------------------------------

def _client(server, pki, role, **tls):
    return EmbeddingClient(
        server.address, token=TOKENS[role] if role else "", max_retries=0,
        tls=TlsOptions(ca_file=str(pki.ca.cert), **tls))


def test_python_client_roles_over_tls(tls_server, pki, table):
    rows = np.arange(18, dtype=np.float32).reshape(6, 3) / 8
    with _client(tls_server, pki, "admin") as admin:
        admin.create_table(table, 6, 3, optimizer=SGD(lr=0.5))
    with _client(tls_server, pki, "trainer") as trainer:
        trainer.write_rows(table, rows)
        np.testing.assert_array_equal(
            trainer.lookup(table, [[0, 5], [2, 2]]), rows[[[0, 5], [2, 2]]])
        trainer.push_gradients(table, [1], np.ones((1, 3), np.float32))
        expected = rows.copy()
        expected[1] -= 0.5  # SGD, lr 0.5, gradient 1: exact in float32.
        np.testing.assert_array_equal(trainer.read_rows(table), expected)
        with pytest.raises(PermissionDeniedError):
            trainer.delete_table(table)
    with _client(tls_server, pki, "reader") as reader:
        with pytest.raises(PermissionDeniedError) as raised:
            reader.push_gradients(table, [1], np.ones((1, 3), np.float32))
        assert raised.value.message
        with pytest.raises(PermissionDeniedError):
            reader.write_rows(table, np.zeros((6, 3), np.float32))
        np.testing.assert_array_equal(reader.read_rows(table), expected)
    for token in ("", "not-a-known-token"):
        with EmbeddingClient(tls_server.address, token=token,
                             tls=TlsOptions(ca_file=str(pki.ca.cert))) as c:
            with pytest.raises(UnauthenticatedError):
                c.list_tables()


def test_python_client_token_from_the_environment(tls_server, pki, table,
                                                  monkeypatch):
    monkeypatch.setenv(TOKEN_VARIABLE, TOKENS["admin"])
    with EmbeddingClient(tls_server.address,
                         tls=TlsOptions(ca_file=str(pki.ca.cert))) as admin:
        admin.create_table(table, 4, 2)
        assert table in [info.name for info in admin.list_tables()]
        admin.delete_table(table)


def test_python_client_wrong_ca_or_server_name_is_a_clear_error(
        tls_server, pki):
    with pytest.raises(UnavailableError, match="certificate verify failed"):
        with EmbeddingClient(tls_server.address, token=TOKENS["reader"],
                             max_retries=0,
                             tls=TlsOptions(ca_file=str(pki.other_ca.cert))
                             ) as client:
            client.list_tables()
    with pytest.raises(UnavailableError,
                       match="Peer name other.example is not in peer "
                             "certificate"):
        with _client(tls_server, pki, "reader",
                     server_name="other.example") as client:
            client.list_tables()
    with _client(tls_server, pki, "reader", server_name="localhost") as client:
        client.list_tables()


def test_remote_embedding_trains_over_tls_with_a_token(tls_server, pki,
                                                       table):
    torch = pytest.importorskip("torch")
    from embedding_client import RemoteEmbedding, upload_embedding
    torch.manual_seed(0)
    local = torch.nn.Embedding(10, 4)
    with _client(tls_server, pki, "admin") as admin:
        upload_embedding(admin, table, local, optimizer=SGD(lr=0.1))
    indices = torch.tensor([[1, 2], [2, 3]])
    with _client(tls_server, pki, "trainer") as trainer:
        remote = RemoteEmbedding(trainer, table)
        (remote(indices) * 2).sum().backward()
        optimizer = torch.optim.SGD(local.parameters(), lr=0.1)
        (local(indices) * 2).sum().backward()
        optimizer.step()
        torch.testing.assert_close(remote.to_embedding().weight,
                                   local.weight.detach(), rtol=0, atol=0)


# ---- mutual TLS -----------------------------------------------------------

def test_mutual_tls_certificate_maps_to_its_role(mtls_server, pki, table):
    certificate = dict(cert_file=str(pki.client.cert),
                       key_file=str(pki.client.key))
    with _client(mtls_server, pki, "admin", **certificate) as admin:
        admin.create_table(table, 4, 2, initializer=Constant(1.0),
                           optimizer=SGD(lr=1.0))
    # No token: the certificate's common name is a trainer.
    with _client(mtls_server, pki, None, **certificate) as by_certificate:
        by_certificate.push_gradients(table, [2], np.ones((1, 2), np.float32))
        with pytest.raises(PermissionDeniedError):
            by_certificate.delete_table(table)
    by_cli = _cli(mtls_server.address, pki, client_certificate=True)
    _, rows = parse_rows(by_cli.ok("lookup", table, "--indices=1,2"))
    assert rows == [("1", [1.0, 1.0]), ("2", [0.0, 0.0])]


@pytest.mark.parametrize("certificate", ["none", "other_ca"])
def test_mutual_tls_refuses_clients_without_a_certificate_of_the_ca(
        mtls_server, pki, certificate):
    tls = ({} if certificate == "none" else
           dict(cert_file=str(pki.other_client.cert),
                key_file=str(pki.other_client.key)))
    with pytest.raises(UnavailableError):
        with _client(mtls_server, pki, "admin", **tls) as client:
            client.list_tables()
