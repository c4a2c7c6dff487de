#include "client/cpp/client_security.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

// Reads the whole file `path` that option `option` names.
absl::StatusOr<std::string> ReadWholeFile(absl::string_view option,
                                          const std::string& path) {
  auto failed = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read ", option, " ", path, ": ", std::strerror(errno)));
  };
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"),
                                             &std::fclose);
  if (file == nullptr) return failed();
  std::string content;
  char buffer[4096];
  size_t read = 0;
  while ((read = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) {
    content.append(buffer, read);
  }
  if (std::ferror(file.get())) return failed();
  return content;
}

// Reads a PEM file; INVALID_ARGUMENT when it holds no PEM block, which
// gRPC would only report as a failed handshake.
absl::StatusOr<std::string> ReadPemFile(absl::string_view option,
                                        const std::string& path) {
  EMBEDDING_ASSIGN_OR_RETURN(std::string pem, ReadWholeFile(option, path));
  if (!absl::StrContains(pem, "-----BEGIN ")) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, " ", path, " holds no PEM block (-----BEGIN)"));
  }
  return pem;
}

// OK when a header can carry `token`: printable ASCII without spaces (RFC
// 6750's token characters are a subset). `source` says where it came from;
// the message never quotes the token.
absl::Status CheckToken(absl::string_view token, absl::string_view source) {
  for (size_t i = 0; i < token.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c <= 0x20 || c >= 0x7f) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s holds byte 0x%02x at position %d, which a gRPC header cannot "
          "carry: a token is printable ASCII without spaces",
          source, c, i));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTlsOptions(const ClientSecurityOptions& security,
                             bool custom_credentials) {
  if (security.tls_cert_file.empty() != security.tls_key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        security.tls_cert_file.empty() ? "tls_key_file" : "tls_cert_file",
        " is set without ",
        security.tls_cert_file.empty() ? "tls_cert_file" : "tls_key_file",
        ": mutual TLS needs the client certificate and its key"));
  }
  if (security.tls_ca_file.empty()) {
    for (const auto& [name, value] :
         {std::pair<absl::string_view, const std::string&>{
              "tls_cert_file", security.tls_cert_file},
          {"tls_server_name", security.tls_server_name}}) {
      if (!value.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            name,
            " is set without tls_ca_file: TLS is on only with the CA file "
            "that signed the server's certificate (for a public CA, the "
            "system bundle, e.g. /etc/ssl/certs/ca-certificates.crt)"));
      }
    }
  } else if (custom_credentials) {
    return absl::InvalidArgumentError(
        "tls_ca_file and custom channel credentials are both set: give one");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsCredentials(
    const ClientSecurityOptions& security) {
  grpc::SslCredentialsOptions ssl;
  EMBEDDING_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                             ReadPemFile("tls_ca_file", security.tls_ca_file));
  if (!security.tls_cert_file.empty()) {
    EMBEDDING_ASSIGN_OR_RETURN(
        ssl.pem_cert_chain,
        ReadPemFile("tls_cert_file", security.tls_cert_file));
    EMBEDDING_ASSIGN_OR_RETURN(
        ssl.pem_private_key,
        ReadPemFile("tls_key_file", security.tls_key_file));
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

std::string ResolveToken(const ClientSecurityOptions& security) {
  if (!security.token.empty()) return security.token;
  const char* from_environment =
      std::getenv(std::string(kTokenEnvironmentVariable).c_str());
  return from_environment == nullptr ? "" : from_environment;
}

std::vector<Header> AuthorizationHeaders(absl::string_view token) {
  if (token.empty()) return {};
  return {{"authorization", absl::StrCat("Bearer ", token)}};
}

void AddHeaders(absl::Span<const Header> headers,
                grpc::ClientContext* context) {
  for (const auto& [key, value] : headers) context->AddMetadata(key, value);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateSecureChannel(
    const std::string& address, const ClientSecurityOptions& security,
    std::shared_ptr<grpc::ChannelCredentials> custom,
    grpc::ChannelArguments args) {
  const std::string token_source =
      security.token.empty()
          ? absl::StrCat("the token in $", kTokenEnvironmentVariable)
          : "the token";
  EMBEDDING_RETURN_IF_ERROR(CheckToken(ResolveToken(security), token_source));
  EMBEDDING_RETURN_IF_ERROR(CheckTlsOptions(security, custom != nullptr));
  std::shared_ptr<grpc::ChannelCredentials> credentials = std::move(custom);
  if (!security.tls_ca_file.empty()) {
    EMBEDDING_ASSIGN_OR_RETURN(credentials, TlsCredentials(security));
  }
  if (credentials == nullptr) {
    credentials = grpc::InsecureChannelCredentials();
  }
  if (!security.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(security.tls_server_name);
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, credentials, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create a channel to ", address));
  }
  return channel;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::string content,
                             ReadWholeFile("token file", path));
  const absl::string_view token = absl::StripAsciiWhitespace(content);
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, " is empty"));
  }
  EMBEDDING_RETURN_IF_ERROR(
      CheckToken(token, absl::StrCat("the token in token file ", path)));
  return std::string(token);
}

}  // namespace embedding
