// The server's transport credentials from its TLS options: TLS (server
// certificate and key), mutual TLS (also a client CA: clients must present
// a certificate it signed), or plaintext, which is allowed without
// allow_insecure only on a loopback address.
//
//   absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
//       ServerCredentialsFor(options.tls, options.listen_address,
//                            options.allow_insecure);
//   builder.AddListeningPort(address, *credentials, &port);
//
// The files are read again every refresh_seconds by gRPC's
// FileWatcherCertificateProvider, so replacing them rotates the certificate
// without a restart (the key and the certificate together: README,
// "Rotating certificates"); connections already open keep their session.
// Thread-safe (functions of their arguments and the files).
#ifndef SERVER_SECURITY_TRANSPORT_SECURITY_H_
#define SERVER_SECURITY_TRANSPORT_SECURITY_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace embedding {

// Each field's flag in main.cc has the field's name prefixed "tls_".
struct TlsOptions {
  // PEM server certificate chain and its private key. Both or neither.
  std::string cert_file;
  std::string key_file;
  // PEM CA certificates: set for mutual TLS (needs cert_file and key_file).
  std::string client_ca_file;
  // Seconds between re-reads of the files. Default: 60. REQUIRES: >= 1.
  int refresh_seconds = 60;

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
  bool mutual() const { return !client_ca_file.empty(); }
};

// Whether `listen_address` ("host:port", "[v6]:port", "unix:path") only
// accepts local connections: 127.0.0.0/8, ::1, localhost, a unix socket.
bool IsLoopbackAddress(absl::string_view listen_address);

// Credentials for `tls` (after checking that each file reads and parses and
// that the key matches the certificate), or plaintext when TLS is off and
// the address is loopback or `allow_insecure`. INVALID_ARGUMENT naming the
// flag and the file for each mistake, and naming --allow_insecure and the
// TLS flags for plaintext off loopback.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsOptions& tls, absl::string_view listen_address,
    bool allow_insecure);

// "plaintext", "TLS (cert FILE, refresh 60 s)" or "mutual TLS (...)".
std::string TransportSummary(const TlsOptions& tls);

}  // namespace embedding

#endif  // SERVER_SECURITY_TRANSPORT_SECURITY_H_
