"""TLS and bearer tokens: what EmbeddingClient(token=..., tls=...) uses.

    from embedding_client import EmbeddingClient, TlsOptions

    client = EmbeddingClient(
        "emb-0.emb:50051",
        tls=TlsOptions(ca_file="ca.pem"),              # TLS on
        token=None)                  # None: $EMBEDDING_TOKEN, if set

    # Mutual TLS, and a server dialled by IP whose certificate names a host:
    TlsOptions(ca_file="ca.pem", cert_file="client.pem",
               key_file="client.key", server_name="emb.internal")

The token travels as `authorization: Bearer TOKEN` metadata with every call
(client/CONTRACT.md, "Security"), as the C++ client, the CLI and
embedding_bench send it. The rules match the C++ client's
(client/cpp/client_security.h): the CA file is required for TLS, a client
certificate needs its key, and every problem with the options is an
InvalidArgumentError naming the option (and the file) before any call.
"""

import dataclasses
import os
from typing import Optional

import grpc

from embedding_client.errors import InvalidArgumentError

# Holds the token when none is passed, so it stays out of code and shells.
TOKEN_ENVIRONMENT_VARIABLE = "EMBEDDING_TOKEN"


@dataclasses.dataclass(frozen=True)
class TlsOptions:
    """TLS of a client's channels (the same for every shard of a cluster).

    ca_file: PEM file of the CA(s) that signed the servers' certificates;
    required (for a public CA, give the system bundle, e.g.
    /etc/ssl/certs/ca-certificates.crt). cert_file, key_file: the client's
    certificate chain and private key (PEM) for mutual TLS, both or
    neither. server_name: the name the servers' certificates must carry
    when it is not the host dialled (e.g. an IP address).
    """
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    server_name: Optional[str] = None


def resolve_token(token):
    """The token calls carry: `token`, or $EMBEDDING_TOKEN when it is None;
    "" for none ("" also turns the environment's off). Raises
    InvalidArgumentError for a token a header cannot carry (printable ASCII
    without spaces), naming the position, never the token."""
    source = "token"
    if token is None:
        token = os.environ.get(TOKEN_ENVIRONMENT_VARIABLE, "")
        source = f"the token in ${TOKEN_ENVIRONMENT_VARIABLE}"
    if not isinstance(token, str):
        raise InvalidArgumentError(
            f"token must be a str, got {type(token).__name__}")
    for position, char in enumerate(token):
        if not "\x21" <= char <= "\x7e":
            raise InvalidArgumentError(
                f"{source} holds {char!r} at position {position}, which a "
                "gRPC header cannot carry: a token is printable ASCII "
                "without spaces")
    return token


def authorization_metadata(token):
    """The metadata pairs that carry `token` (none for "")."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def call_metadata(token, metadata):
    """The metadata of every call: the token's authorization (see
    resolve_token), then the caller's (key, value) pairs. Raises
    InvalidArgumentError for a token a header cannot carry."""
    return (*authorization_metadata(resolve_token(token)),
            *(tuple(pair) for pair in metadata))


def _read_pem(option, path):
    try:
        with open(path, "rb") as file:
            pem = file.read()
    except OSError as error:
        raise InvalidArgumentError(
            f"cannot read TlsOptions.{option} {path}: {error.strerror}"
        ) from None
    if b"-----BEGIN " not in pem:
        raise InvalidArgumentError(
            f"TlsOptions.{option} {path} holds no PEM block (-----BEGIN)")
    return pem


def channel_security(tls, credentials):
    """(grpc.ChannelCredentials or None for plaintext, channel options) for
    `tls` (a TlsOptions or None) or ready-made `credentials`. Raises
    InvalidArgumentError: both given; no ca_file; a certificate without its
    key or a key without its certificate; a file that cannot be read or
    holds no PEM block."""
    if tls is None:
        return credentials, ()
    if not isinstance(tls, TlsOptions):
        raise InvalidArgumentError(
            f"tls must be a TlsOptions, got {type(tls).__name__}")
    if credentials is not None:
        raise InvalidArgumentError(
            "tls and credentials are both given: give one")
    if (tls.cert_file is None) != (tls.key_file is None):
        given, missing = (("cert_file", "key_file") if tls.key_file is None
                          else ("key_file", "cert_file"))
        raise InvalidArgumentError(
            f"TlsOptions.{given} is set without {missing}: mutual TLS needs "
            "the client certificate and its key")
    if tls.ca_file is None:
        raise InvalidArgumentError(
            "TlsOptions needs ca_file, the CA that signed the server's "
            "certificate (for a public CA, the system bundle, e.g. "
            "/etc/ssl/certs/ca-certificates.crt)")
    client_pair = {}
    if tls.cert_file is not None:
        client_pair = dict(
            certificate_chain=_read_pem("cert_file", tls.cert_file),
            private_key=_read_pem("key_file", tls.key_file))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read_pem("ca_file", tls.ca_file), **client_pair)
    options = ((("grpc.ssl_target_name_override", tls.server_name),)
               if tls.server_name else ())
    return credentials, options
