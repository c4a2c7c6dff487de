"""TLS and mutual TLS on the real server (issue 12), with certificates made
by openssl in each test: the right clients connect; a plaintext client, a
client expecting another server name, one without a client certificate and
one with a certificate of another CA are refused; a rotated certificate is
served without a restart; plaintext off loopback needs --allow_insecure;
unusable TLS files stop the start with a precise message."""

import os
import shutil
import subprocess
import time

import grpc
import pytest

from embedding.v1 import embedding_service_pb2 as pb
from tests.security.conftest import code_of, open_channel, stub, \
    tls_credentials
from tests.testing.binaries import server_binary
from tests.testing.certs import issue
from tests.testing.server_process import SERVING, ProbeTls, health_status

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
OK = grpc.StatusCode.OK


def _list_tables_code(address, tls):
    """How ListTables ends over a fresh channel (plaintext for tls=None)."""
    with open_channel(address, tls) as channel:
        return code_of(lambda: stub(channel).ListTables(
            pb.ListTablesRequest(), timeout=5))


def _tls_flags(pair, client_ca=None, *extra):
    flags = [f"--tls_cert_file={pair.cert}", f"--tls_key_file={pair.key}"]
    if client_ca is not None:
        flags.append(f"--tls_client_ca_file={client_ca.cert}")
    return [*flags, *extra]


def test_tls_server_takes_tls_clients_of_its_ca_only(start_server, pki):
    trusted = ProbeTls(tls_credentials(pki.ca))
    server = start_server(*_tls_flags(pki.server), tls=trusted)
    assert _list_tables_code(server.address, trusted) == OK
    # The certificate names localhost as well as 127.0.0.1.
    assert _list_tables_code(f"localhost:{server.port}", trusted) == OK
    assert _list_tables_code(server.address, None) == UNAVAILABLE
    assert _list_tables_code(
        server.address, ProbeTls(tls_credentials(pki.ca),
                                 server_name="other.example")) == UNAVAILABLE
    # A client trusting another CA does not trust this server.
    assert _list_tables_code(
        server.address, ProbeTls(tls_credentials(pki.other_ca))) == \
        UNAVAILABLE
    assert "transport TLS (certificate" in server.log()


def test_mutual_tls_needs_a_client_certificate_of_the_ca(start_server, pki):
    right = ProbeTls(tls_credentials(pki.ca, pki.client))
    server = start_server(*_tls_flags(pki.server, pki.ca), tls=right)
    assert _list_tables_code(server.address, right) == OK
    assert health_status(server.address, tls=right) == SERVING
    for refused in (ProbeTls(tls_credentials(pki.ca)),
                    ProbeTls(tls_credentials(pki.ca, pki.other_client))):
        assert _list_tables_code(server.address, refused) == UNAVAILABLE
    assert _list_tables_code(server.address, None) == UNAVAILABLE
    assert "transport mutual TLS" in server.log()


def _install(pair, directory, link):
    """Copies `pair` into `directory` as server.crt/server.key and points
    the symlink `link` at it in one rename (README, "Rotating
    certificates")."""
    directory.mkdir()
    shutil.copyfile(pair.cert, directory / "server.crt")
    shutil.copyfile(pair.key, directory / "server.key")
    temporary = link.with_name(link.name + ".tmp")
    temporary.symlink_to(directory.name)
    os.replace(temporary, link)


def test_rotated_certificate_is_served_without_a_restart(start_server, pki,
                                                         tmp_path):
    live = tmp_path / "tls"
    _install(pki.server, tmp_path / "tls.v1", live)
    cert, key = live / "server.crt", live / "server.key"
    old_name = ProbeTls(tls_credentials(pki.ca))
    server = start_server(f"--tls_cert_file={cert}", f"--tls_key_file={key}",
                          "--tls_refresh_seconds=1", tls=old_name)
    new_name = ProbeTls(tls_credentials(pki.ca), server_name="rotated.example")
    assert _list_tables_code(server.address, new_name) == UNAVAILABLE

    rotated = issue(pki.ca, tmp_path, "rotated", "rotated.example",
                    dns_names=("rotated.example",))
    _install(rotated, tmp_path / "tls.v2", live)
    deadline = time.monotonic() + 30
    while _list_tables_code(server.address, new_name) != OK:
        assert time.monotonic() < deadline, \
            f"the rotated certificate was never served:\n{server.log()}"
        time.sleep(0.2)
    # The old certificate (for 127.0.0.1) is no longer presented.
    assert _list_tables_code(server.address, old_name) == UNAVAILABLE
    assert server.running()


def _run_server(*flags):
    """Runs the server to its exit (it should refuse to start)."""
    return subprocess.run([str(server_binary()), "--port_file=/dev/null",
                           *flags], capture_output=True, text=True,
                          timeout=30)


def test_plaintext_off_loopback_needs_allow_insecure(start_server):
    refused = _run_server("--listen_address=0.0.0.0:0")
    assert refused.returncode == 2, refused.stderr
    assert "--listen_address=0.0.0.0:0 is not a loopback address" in \
        refused.stderr
    assert "--allow_insecure" in refused.stderr
    assert "--tls_cert_file" in refused.stderr

    server = start_server("--allow_insecure", listen_host="0.0.0.0")
    assert _list_tables_code(server.address, None) == OK
    assert "[warning] serving PLAINTEXT on non-loopback address 0.0.0.0:0" \
        in server.log()
    assert "no --auth_tokens_file" in server.log()


def test_tls_off_loopback_needs_no_allow_insecure(start_server, pki):
    trusted = ProbeTls(tls_credentials(pki.ca))
    server = start_server(*_tls_flags(pki.server), tls=trusted,
                          listen_host="0.0.0.0")
    assert _list_tables_code(server.address, trusted) == OK
    assert "PLAINTEXT" not in server.log()


@pytest.mark.parametrize("case", ["cert_only", "ca_only", "missing_cert",
                                  "not_pem", "wrong_key", "bad_ca",
                                  "zero_refresh"])
def test_unusable_tls_flags_stop_the_start(pki, tmp_path, case):
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    missing = tmp_path / "missing.crt"
    flags, message = {
        "cert_only": ([f"--tls_cert_file={pki.server.cert}"],
                      "--tls_cert_file and --tls_key_file go together"),
        "ca_only": ([f"--tls_client_ca_file={pki.ca.cert}"],
                    "--tls_client_ca_file (mutual TLS) needs --tls_cert_file"),
        "missing_cert": (_tls_flags(pki.server)[1:] +
                         [f"--tls_cert_file={missing}"],
                         f"--tls_cert_file={missing}: cannot read: No such "
                         "file or directory"),
        "not_pem": ([f"--tls_cert_file={pki.server.cert}",
                     f"--tls_key_file={not_pem}"],
                    f"--tls_key_file={not_pem}: no unencrypted PEM private "
                    "key found"),
        "wrong_key": ([f"--tls_cert_file={pki.server.cert}",
                       f"--tls_key_file={pki.client.key}"],
                      f"--tls_key_file={pki.client.key} is not the key of "
                      f"the certificate in --tls_cert_file="
                      f"{pki.server.cert}"),
        "bad_ca": (_tls_flags(pki.server, None,
                              f"--tls_client_ca_file={not_pem}"),
                   f"--tls_client_ca_file={not_pem}: no PEM certificate "
                   "found"),
        "zero_refresh": (_tls_flags(pki.server, None,
                                    "--tls_refresh_seconds=0"),
                         "--tls_refresh_seconds must be >= 1, got 0"),
    }[case]
    result = _run_server("--listen_address=127.0.0.1:0", *flags)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
