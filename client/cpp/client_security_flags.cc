#include "client/cpp/client_security_flags.h"

#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"

ABSL_FLAG(std::string, token_file, "",
          "File holding the bearer token sent with every call (default: "
          "$EMBEDDING_TOKEN). There is no flag for the token itself: it "
          "would show in the shell history and the process list.");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM file of the CA that signed the servers' certificates; TLS is "
          "on when it is set (default: plaintext).");
ABSL_FLAG(std::string, tls_cert_file, "",
          "Mutual TLS: PEM client certificate (with --tls_key_file).");
ABSL_FLAG(std::string, tls_key_file, "",
          "Mutual TLS: PEM private key of --tls_cert_file.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the servers' certificates must carry when it is not the "
          "host dialled (e.g. an IP address); the same for every server of "
          "a cluster.");

namespace embedding {

absl::StatusOr<ClientSecurityOptions> ClientSecurityOptionsFromFlags() {
  ClientSecurityOptions security;
  const std::string token_file = absl::GetFlag(FLAGS_token_file);
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(token_file);
    if (!token.ok()) return token.status();
    security.token = *std::move(token);
  }
  security.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  security.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  security.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  security.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  return security;
}

bool DefinesClientSecurityFlags(absl::string_view file) {
  return absl::EndsWith(file, "client_security_flags.cc");
}

}  // namespace embedding
