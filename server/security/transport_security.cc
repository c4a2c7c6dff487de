#include "server/security/transport_security.h"

#include <arpa/inet.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Certificate = std::unique_ptr<X509, X509Free>;
using PrivateKey = std::unique_ptr<EVP_PKEY, KeyFree>;

// The text of `path`, or INVALID_ARGUMENT "--FLAG=PATH: cannot read: why".
absl::StatusOr<std::string> ReadPem(absl::string_view flag,
                                    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, "=", path, ": cannot read: ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& text) {
  return std::unique_ptr<BIO, BioFree>(
      BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// The first certificate of PEM file `path` (flag `flag`).
absl::StatusOr<Certificate> FirstCertificate(absl::string_view flag,
                                             const std::string& path) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::string text, ReadPem(flag, path));
  Certificate cert(
      PEM_read_bio_X509(MemoryBio(text).get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", path, ": no PEM certificate found"));
  }
  return cert;
}

absl::StatusOr<PrivateKey> ReadPrivateKey(const std::string& path) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::string text,
                             ReadPem("tls_key_file", path));
  PrivateKey key(PEM_read_bio_PrivateKey(MemoryBio(text).get(), nullptr,
                                         nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key_file=", path, ": no unencrypted PEM private key found"));
  }
  return key;
}

// What gRPC's file watcher would only log: files that cannot be used.
absl::Status CheckTlsFiles(const TlsOptions& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert_file and --tls_key_file go together: give both or "
        "neither");
  }
  if (tls.mutual() && !tls.enabled()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca_file (mutual TLS) needs --tls_cert_file and "
        "--tls_key_file");
  }
  if (tls.refresh_seconds < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_refresh_seconds must be >= 1, got ", tls.refresh_seconds));
  }
  if (!tls.enabled()) return absl::OkStatus();
  EMBEDDING_ASSIGN_OR_RETURN(const Certificate cert,
                             FirstCertificate("tls_cert_file", tls.cert_file));
  EMBEDDING_ASSIGN_OR_RETURN(const PrivateKey key,
                             ReadPrivateKey(tls.key_file));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key_file=", tls.key_file,
                     " is not the key of the certificate in --tls_cert_file=",
                     tls.cert_file));
  }
  if (tls.mutual()) {
    EMBEDDING_RETURN_IF_ERROR(
        FirstCertificate("tls_client_ca_file", tls.client_ca_file).status());
  }
  return absl::OkStatus();
}

// The host part of "host:port", "[host]:port" or "scheme:host:port".
absl::string_view HostOf(absl::string_view address) {
  for (absl::string_view scheme : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::ConsumePrefix(&address, scheme)) break;
  }
  if (absl::StartsWith(address, "[")) {
    const size_t end = address.find(']');
    return end == absl::string_view::npos ? address
                                          : address.substr(1, end - 1);
  }
  const size_t colon = address.rfind(':');
  return colon == absl::string_view::npos ? address : address.substr(0, colon);
}

}  // namespace

bool IsLoopbackAddress(absl::string_view listen_address) {
  if (absl::StartsWith(listen_address, "unix:") ||
      absl::StartsWith(listen_address, "unix-abstract:")) {
    return true;
  }
  const std::string host(HostOf(listen_address));
  if (absl::AsciiStrToLower(host) == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    // ::ffff:127.x.y.z
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsOptions& tls, absl::string_view listen_address,
    bool allow_insecure) {
  EMBEDDING_RETURN_IF_ERROR(CheckTlsFiles(tls));
  if (!tls.enabled()) {
    if (!allow_insecure && !IsLoopbackAddress(listen_address)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--listen_address=", listen_address,
          " is not a loopback address: serve TLS (--tls_cert_file and "
          "--tls_key_file, plus --tls_client_ca_file for mutual TLS) or "
          "accept plaintext with --allow_insecure"));
    }
    return grpc::InsecureServerCredentials();
  }
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          tls.key_file, tls.cert_file, tls.client_ca_file,
          static_cast<unsigned int>(tls.refresh_seconds));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (tls.mutual()) {
    options.watch_root_certs();
    options.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

std::string TransportSummary(const TlsOptions& tls) {
  if (!tls.enabled()) return "plaintext";
  return absl::StrCat(
      tls.mutual() ? "mutual TLS" : "TLS", " (certificate ", tls.cert_file,
      tls.mutual() ? absl::StrCat(", client CA ", tls.client_ca_file) : "",
      ", files re-read every ", tls.refresh_seconds, " s)");
}

}  // namespace embedding
