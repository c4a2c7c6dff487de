"""Test certificates made with the openssl command line, in a directory:
a CA, a server certificate it signed (for localhost and 127.0.0.1), a
client certificate it signed, and a second CA with a client certificate of
its own (for "a certificate from another CA").

    pki = make_pki(tmp_path)
    pki.ca.cert          # PEM paths (pathlib.Path)
    pki.server.cert, pki.server.key
    pki.client.cert, pki.client.key        # subject CN=trainer-1
    pki.other_client.cert, pki.other_client.key   # signed by pki.other_ca

issue(pki.ca, directory, name, common_name, ...) makes more (a rotated
server certificate, a client with another common name).
"""

import dataclasses
import pathlib
import subprocess

DAYS = 2


@dataclasses.dataclass(frozen=True)
class KeyPair:
    cert: pathlib.Path
    key: pathlib.Path


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: KeyPair
    server: KeyPair
    client: KeyPair
    other_ca: KeyPair
    other_client: KeyPair


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory, name):
    """A self-signed CA certificate and its key."""
    directory = pathlib.Path(directory)
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", pair.key,
             "-out", pair.cert, "-days", str(DAYS), "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return pair


def issue(ca, directory, name, common_name, dns_names=(), ip_addresses=(),
          client=False):
    """A certificate for `common_name` signed by `ca`, with the subject
    alternative names given; a client (clientAuth) or server (serverAuth)
    certificate."""
    directory = pathlib.Path(directory)
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    request = directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    _openssl("req", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", pair.key,
             "-out", request, "-subj", f"/CN={common_name}")
    names = [f"DNS:{n}" for n in dns_names] + [f"IP:{a}" for a in ip_addresses]
    lines = ["basicConstraints=CA:FALSE",
             f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
    if names:
        lines.append("subjectAltName=" + ",".join(names))
    extensions.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", request, "-CA", ca.cert, "-CAkey",
             ca.key, "-CAcreateserial", "-out", pair.cert, "-days",
             str(DAYS), "-extfile", extensions)
    return pair


def make_pki(directory):
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "ca")
    other_ca = make_ca(directory, "other-ca")
    return Pki(
        ca=ca,
        server=issue(ca, directory, "server", "localhost",
                     dns_names=("localhost",), ip_addresses=("127.0.0.1",)),
        client=issue(ca, directory, "client", "trainer-1", client=True),
        other_ca=other_ca,
        other_client=issue(other_ca, directory, "other-client", "trainer-1",
                           client=True))
