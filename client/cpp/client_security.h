// Transport security and authentication of the C++ clients, the CLI and
// embedding_bench (client/CONTRACT.md, "Security"): TLS channel credentials
// from PEM files, a server name override, and the bearer token that every
// call carries as `authorization: Bearer TOKEN`.
//
//   ClientSecurityOptions security;
//   security.tls_ca_file = "/etc/embedding/ca.pem";  // TLS on
//   security.token = *ReadTokenFile("/run/secrets/embedding-token");
//   absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
//       CreateSecureChannel("emb-0.emb:50051", security, nullptr, {});
//   grpc::ClientContext context;
//   AddHeaders(AuthorizationHeaders(ResolveToken(security)), &context);
//
// EmbeddingClient does all of this itself from ClientOptions::security.
//
// Thread-safe: pure functions (they read files and the environment).
#ifndef CLIENT_CPP_CLIENT_SECURITY_H_
#define CLIENT_CPP_CLIENT_SECURITY_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace embedding {

// A gRPC metadata header: key (lower case) and value.
using Header = std::pair<std::string, std::string>;

// Holds the token when ClientSecurityOptions::token is empty, so that it
// stays out of command lines and shell history.
inline constexpr absl::string_view kTokenEnvironmentVariable =
    "EMBEDDING_TOKEN";

struct ClientSecurityOptions {
  // Sent as `authorization: Bearer TOKEN` with every call. Default (empty):
  // $EMBEDDING_TOKEN when set and not empty, else no token.
  // REQUIRES: printable ASCII without spaces.
  std::string token;
  // PEM file of the CA(s) that signed the servers' certificates. TLS is on
  // exactly when it is set; it is required for TLS (a server with a public
  // CA's certificate: give the system bundle, e.g.
  // /etc/ssl/certs/ca-certificates.crt). Default: plaintext.
  std::string tls_ca_file;
  // Client certificate chain and its private key (PEM) for mutual TLS.
  // REQUIRES: both or neither, and tls_ca_file.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the server's certificate must carry, when it is not the host of
  // the address dialled (e.g. an IP address, or a load balancer's name).
  // Default: the address's host. REQUIRES: tls_ca_file.
  std::string tls_server_name;
};

// The token calls carry: `security.token`, else $EMBEDDING_TOKEN; empty for
// none. Not validated (CreateSecureChannel does that).
std::string ResolveToken(const ClientSecurityOptions& security);

// The `authorization: Bearer TOKEN` header, none for an empty token.
std::vector<Header> AuthorizationHeaders(absl::string_view token);

// Adds `headers` to one call.
void AddHeaders(absl::Span<const Header> headers, grpc::ClientContext* context);

// Opens a channel to `address` secured as `security` says (plaintext without
// tls_ca_file), with `args` plus the server name override. `custom`, when
// not null, is used instead of building credentials from the tls_* files
// (e.g. ALTS or a test's own). The token is checked here, not sent.
// INVALID_ARGUMENT: a certificate without its key or a key without its
// certificate; a tls_* option without tls_ca_file; tls_* options and
// `custom` both given; a file that cannot be read (naming the option, the
// file and the OS error) or holds no PEM block; a token that a header
// cannot carry (its position, never the token itself).
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateSecureChannel(
    const std::string& address, const ClientSecurityOptions& security,
    std::shared_ptr<grpc::ChannelCredentials> custom,
    grpc::ChannelArguments args);

// Reads a token file (for --token_file): the token is the file's content
// without surrounding whitespace. INVALID_ARGUMENT naming the file when it
// cannot be read, is empty, or holds more than the token (whitespace
// inside it).
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace embedding

#endif  // CLIENT_CPP_CLIENT_SECURITY_H_
