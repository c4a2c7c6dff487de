#include "server/security/transport_security.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "absl/status/status.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;

TEST(IsLoopbackAddressTest, LoopbackAddresses) {
  for (const char* address :
       {"127.0.0.1:50051", "127.8.9.10:0", "localhost:50051", "LocalHost:1",
        "[::1]:50051", "[::ffff:127.0.0.1]:5", "ipv4:127.0.0.1:5",
        "unix:/tmp/embedding.sock"}) {
    EXPECT_TRUE(IsLoopbackAddress(address)) << address;
  }
}

TEST(IsLoopbackAddressTest, OtherAddresses) {
  for (const char* address :
       {"0.0.0.0:50051", "[::]:50051", ":50051", "10.0.0.1:50051",
        "128.0.0.1:1", "[::2]:1", "example.com:443", "localhost.evil:1",
        "[::ffff:10.0.0.1]:5"}) {
    EXPECT_FALSE(IsLoopbackAddress(address)) << address;
  }
}

absl::Status Credentials(const TlsOptions& tls,
                         const std::string& address = "127.0.0.1:0",
                         bool allow_insecure = false) {
  return ServerCredentialsFor(tls, address, allow_insecure).status();
}

TEST(ServerCredentialsForTest, PlaintextOnLoopbackNeedsNoFlag) {
  EXPECT_TRUE(Credentials({}).ok());
}

TEST(ServerCredentialsForTest, PlaintextOffLoopbackNeedsAllowInsecure) {
  const absl::Status status = Credentials({}, "0.0.0.0:50051");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--allow_insecure"));
  EXPECT_THAT(status.message(), HasSubstr("--tls_cert_file"));
  EXPECT_TRUE(Credentials({}, "0.0.0.0:50051", true).ok());
}

TEST(ServerCredentialsForTest, CertWithoutKeyIsInvalidArgument) {
  const absl::Status status = Credentials({.cert_file = "server.crt"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "--tls_cert_file and --tls_key_file go together: give both or "
            "neither");
}

TEST(ServerCredentialsForTest, ClientCaWithoutServerCertIsInvalidArgument) {
  const absl::Status status = Credentials({.client_ca_file = "ca.crt"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--tls_client_ca_file"));
}

TEST(ServerCredentialsForTest, RefreshBelowOneSecondIsInvalidArgument) {
  const absl::Status status = Credentials({.refresh_seconds = 0});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--tls_refresh_seconds"));
}

TEST(ServerCredentialsForTest, MissingCertFileIsInvalidArgumentNamingIt) {
  const absl::Status status = Credentials(
      {.cert_file = "/nonexistent/s.crt", .key_file = "/nonexistent/s.key"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("--tls_cert_file=/nonexistent/s.crt: cannot read"));
}

TEST(ServerCredentialsForTest, FileWithoutPemIsInvalidArgumentNamingIt) {
  const std::string path = ::testing::TempDir() + "/not_pem.crt";
  std::ofstream(path) << "hello\n";
  const absl::Status status =
      Credentials({.cert_file = path, .key_file = path});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "--tls_cert_file=" + path + ": no PEM certificate found");
}

}  // namespace
}  // namespace embedding
