// The clients' security options (client/cpp/client_security.h): their
// checks, the token on every call (plain, sharded, retried, streamed), and
// TLS and mutual TLS against an in-process server with certificates made by
// tests/testing/certs.py (the openssl command line).
#include "client/cpp/client_security.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/sharded_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_service.h"

namespace embedding {
namespace {

using ::embedding::testing::FakeServer;
using ::embedding::testing::FakeService;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

std::string TestDirectory(absl::string_view name) {
  const std::string directory = absl::StrCat(::testing::TempDir(), name);
  std::filesystem::create_directories(directory);
  return directory;
}

std::string WriteFile(const std::string& directory, absl::string_view name,
                      absl::string_view content) {
  const std::string path = absl::StrCat(directory, "/", name);
  std::ofstream(path) << content;
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Sets (or, with nullopt, unsets) $EMBEDDING_TOKEN for one test.
class ScopedTokenEnvironment {
 public:
  explicit ScopedTokenEnvironment(std::optional<std::string> value) {
    if (const char* old = std::getenv(kName)) saved_ = old;
    if (value.has_value()) {
      setenv(kName, value->c_str(), 1);
    } else {
      unsetenv(kName);
    }
  }
  ~ScopedTokenEnvironment() {
    if (saved_.has_value()) {
      setenv(kName, saved_->c_str(), 1);
    } else {
      unsetenv(kName);
    }
  }

 private:
  static constexpr const char* kName = "EMBEDDING_TOKEN";
  std::optional<std::string> saved_;
};

absl::Status ConnectStatus(const ClientOptions& options) {
  return EmbeddingClient::Connect("127.0.0.1:1", options).status();
}

// ---------------------------------------------------------------- checks --

TEST(ClientSecurityOptionsTest, TokenVariableIsEmbeddingToken) {
  EXPECT_EQ(kTokenEnvironmentVariable, "EMBEDDING_TOKEN");
}

TEST(ClientSecurityOptionsTest, CertificateAndKeyComeTogether) {
  for (const bool with_certificate : {true, false}) {
    ClientOptions options;
    options.security.tls_ca_file = "ca.crt";
    (with_certificate ? options.security.tls_cert_file
                      : options.security.tls_key_file) = "client.pem";
    EXPECT_EQ(
        ConnectStatus(options),
        absl::InvalidArgumentError(absl::StrCat(
            with_certificate ? "tls_cert_file is set without tls_key_file"
                             : "tls_key_file is set without tls_cert_file",
            ": mutual TLS needs the client certificate and its key")));
  }
}

TEST(ClientSecurityOptionsTest, ServerNameWithoutCaFileIsInvalidArgument) {
  ClientOptions options;
  options.security.tls_server_name = "localhost";
  const absl::Status status = ConnectStatus(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("tls_server_name is set without tls_ca_file: TLS is "
                        "on only with the CA file"));
}

TEST(ClientSecurityOptionsTest, ClientCertificateWithoutCaFileIsInvalid) {
  ClientOptions options;
  options.security.tls_cert_file = "client.crt";
  options.security.tls_key_file = "client.key";
  const absl::Status status = ConnectStatus(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("tls_cert_file is set without tls_ca_file"));
}

TEST(ClientSecurityOptionsTest, UnreadableCaFileIsNamed) {
  ClientOptions options;
  options.security.tls_ca_file = "/nonexistent/ca.crt";
  EXPECT_EQ(ConnectStatus(options),
            absl::InvalidArgumentError("cannot read tls_ca_file "
                                       "/nonexistent/ca.crt: No such file or "
                                       "directory"));
}

TEST(ClientSecurityOptionsTest, KeyFileWithoutPemBlockIsNamed) {
  const std::string directory = TestDirectory("no_pem");
  ClientOptions options;
  options.security.tls_ca_file =
      WriteFile(directory, "ca.crt", "-----BEGIN CERTIFICATE-----\n");
  options.security.tls_cert_file =
      WriteFile(directory, "client.crt", "-----BEGIN CERTIFICATE-----\n");
  options.security.tls_key_file = WriteFile(directory, "client.key", "junk");
  EXPECT_EQ(ConnectStatus(options),
            absl::InvalidArgumentError(
                absl::StrCat("tls_key_file ", options.security.tls_key_file,
                             " holds no PEM block (-----BEGIN)")));
}

TEST(ClientSecurityOptionsTest, CaFileAndCustomCredentialsIsInvalidArgument) {
  ClientOptions options;
  options.security.tls_ca_file = "ca.crt";
  options.credentials = grpc::InsecureChannelCredentials();
  EXPECT_EQ(ConnectStatus(options),
            absl::InvalidArgumentError("tls_ca_file and custom channel "
                                       "credentials are both set: give one"));
}

TEST(ClientSecurityOptionsTest, TokenAHeaderCannotCarryIsNotQuoted) {
  ClientOptions options;
  options.security.token = "secret\nmore";
  const absl::Status status = ConnectStatus(options);
  EXPECT_EQ(status,
            absl::InvalidArgumentError(
                "the token holds byte 0x0a at position 6, which a gRPC header "
                "cannot carry: a token is printable ASCII without spaces"));
  EXPECT_THAT(status.message(), Not(HasSubstr("secret")));
}

TEST(ClientSecurityOptionsTest, EnvironmentTokenIsCheckedToo) {
  ScopedTokenEnvironment environment("two words");
  const absl::Status status = ConnectStatus(ClientOptions());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("the token in $EMBEDDING_TOKEN holds byte 0x20 at "
                        "position 3"));
}

TEST(ClientSecurityOptionsTest, ResolveTokenPrefersTheOptionToTheVariable) {
  ScopedTokenEnvironment environment("from-env");
  ClientSecurityOptions security;
  EXPECT_EQ(ResolveToken(security), "from-env");
  security.token = "given";
  EXPECT_EQ(ResolveToken(security), "given");
}

TEST(ClientSecurityOptionsTest, NoTokenAnywhereMeansNoHeader) {
  ScopedTokenEnvironment environment(std::nullopt);
  EXPECT_EQ(ResolveToken(ClientSecurityOptions()), "");
  EXPECT_TRUE(AuthorizationHeaders("").empty());
  EXPECT_THAT(AuthorizationHeaders("T"),
              ::testing::ElementsAre(Pair("authorization", "Bearer T")));
}

TEST(ReadTokenFileTest, StripsSurroundingWhitespace) {
  const std::string path =
      WriteFile(TestDirectory("token_ok"), "token", "  abc.DEF-123_~+/=\n\n");
  EXPECT_EQ(ReadTokenFile(path).value_or("error"), "abc.DEF-123_~+/=");
}

TEST(ReadTokenFileTest, EmptyFileIsInvalidArgument) {
  const std::string path =
      WriteFile(TestDirectory("token_empty"), "token", " \n");
  EXPECT_EQ(ReadTokenFile(path).status(),
            absl::InvalidArgumentError(
                absl::StrCat("token file ", path, " is empty")));
}

TEST(ReadTokenFileTest, MissingFileIsInvalidArgument) {
  EXPECT_EQ(ReadTokenFile("/nonexistent/token").status(),
            absl::InvalidArgumentError("cannot read token file "
                                       "/nonexistent/token: No such file or "
                                       "directory"));
}

TEST(ReadTokenFileTest, TwoTokensAreInvalidArgument) {
  const std::string path =
      WriteFile(TestDirectory("token_two"), "token", "reader R\n");
  const absl::Status status = ReadTokenFile(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr(absl::StrCat("the token in token file ", path,
                                     " holds byte 0x20 at position 6")));
}

// ----------------------------------------------------------- the header --

class TokenHeaderTest : public ::testing::Test {
 protected:
  std::unique_ptr<EmbeddingClient> Connect(const ClientOptions& options) {
    absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
        EmbeddingClient::Connect(server_.address(), options);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  // The last call to `method` reached the server with `authorization`.
  void ExpectLastCall(const std::string& method, int calls,
                      const std::string& authorization) {
    EXPECT_EQ(service_.calls[method], calls) << method;
    EXPECT_THAT(service_.metadata,
                Contains(Pair("authorization", authorization)))
        << method;
  }

  FakeService service_;
  FakeServer server_{&service_};
};

TEST_F(TokenHeaderTest, EveryCallCarriesTheToken) {
  ScopedTokenEnvironment environment(std::nullopt);
  ClientOptions options;
  options.security.token = "T0k3n";
  options.retry_backoff = absl::ZeroDuration();
  std::unique_ptr<EmbeddingClient> client = Connect(options);
  const std::string bearer = "Bearer T0k3n";
  v1::TableSpec spec;
  spec.set_name("t");
  (void)client->CreateTable(spec);
  ExpectLastCall("CreateTable", 1, bearer);
  (void)client->GetTable("t");
  ExpectLastCall("GetTable", 1, bearer);
  (void)client->ListTables();
  ExpectLastCall("ListTables", 1, bearer);
  service_.fail_next["Lookup"] = {testing::Unavailable()};
  (void)client->Lookup("t", {1});  // The retry carries it too.
  ExpectLastCall("Lookup", 2, bearer);
  (void)client->PushGradients("t", {1}, {0.5f, 0.5f});
  ExpectLastCall("PushGradients", 1, bearer);
  (void)client->WriteRows("t", {1}, {0.5f, 0.5f});
  ExpectLastCall("WriteRows", 1, bearer);
  (void)client->ReadRows("t", {1});  // A server stream.
  ExpectLastCall("ReadRows", 1, bearer);
  (void)client->SaveCheckpoint();
  ExpectLastCall("SaveCheckpoint", 1, bearer);
  (void)client->DeleteTable("t");
  ExpectLastCall("DeleteTable", 1, bearer);
}

TEST_F(TokenHeaderTest, TokenComesFromTheEnvironmentUnlessGiven) {
  ScopedTokenEnvironment environment("env-token");
  (void)Connect(ClientOptions())->ListTables();
  ExpectLastCall("ListTables", 1, "Bearer env-token");
  ClientOptions options;
  options.security.token = "given";
  (void)Connect(options)->ListTables();
  ExpectLastCall("ListTables", 2, "Bearer given");
}

TEST_F(TokenHeaderTest, NoTokenSendsNoAuthorization) {
  ScopedTokenEnvironment environment(std::nullopt);
  ASSERT_TRUE(Connect(ClientOptions())->ListTables().ok());
  EXPECT_EQ(service_.metadata.count("authorization"), 0u);
}

TEST_F(TokenHeaderTest, TokenAndTheOtherHeadersAllArrive) {
  ScopedTokenEnvironment environment(std::nullopt);
  ClientOptions options;
  options.security.token = "T";
  options.metadata = {{"x-trainer", "7"}};
  CallOptions call;
  call.metadata = {{"x-request-id", "42"}};
  ASSERT_TRUE(Connect(options)->GetTable("t", call).ok());
  EXPECT_THAT(service_.metadata, Contains(Pair("authorization", "Bearer T")));
  EXPECT_THAT(service_.metadata, Contains(Pair("x-trainer", "7")));
  EXPECT_THAT(service_.metadata, Contains(Pair("x-request-id", "42")));
}

TEST(ShardedTokenTest, EveryShardGetsTheToken) {
  ScopedTokenEnvironment environment(std::nullopt);
  FakeService services[2];
  FakeServer server0(&services[0]);
  FakeServer server1(&services[1]);
  ClientOptions options;
  options.security.token = "shard-token";
  absl::StatusOr<std::unique_ptr<ShardedEmbeddingClient>> client =
      ShardedEmbeddingClient::Connect({server0.address(), server1.address()},
                                      options);
  ASSERT_TRUE(client.ok()) << client.status();
  // The fakes are not a real cluster (the check fails); each is asked.
  (void)(*client)->GetTable("t");
  for (const FakeService& service : services) {
    EXPECT_GE(service.calls.at("GetTable"), 1);
    EXPECT_THAT(service.metadata,
                Contains(Pair("authorization", "Bearer shard-token")));
  }
}

// ------------------------------------------------------------------ TLS --

// The certificates of tests/testing/certs.py make_pki, made once.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    directory_ = new std::string(TestDirectory("pki"));
    const std::string command = absl::StrCat(
        "cd '", EMBEDDING_SOURCE_DIR,
        "' && /usr/bin/python3 -c 'from tests.testing.certs import make_pki; "
        "make_pki(\"",
        *directory_, "\")'");
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  static void TearDownTestSuite() { delete directory_; }

  static std::string Pki(absl::string_view file) {
    return absl::StrCat(*directory_, "/", file);
  }

  // A TLS server certificate for localhost and 127.0.0.1; with
  // `require_client_certificate`, mutual TLS against the same CA.
  static std::shared_ptr<grpc::ServerCredentials> ServerCredentials(
      bool require_client_certificate) {
    grpc::SslServerCredentialsOptions ssl(
        require_client_certificate
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ssl.pem_key_cert_pairs.push_back(
        {ReadFile(Pki("server.key")), ReadFile(Pki("server.crt"))});
    if (require_client_certificate)
      ssl.pem_root_certs = ReadFile(Pki("ca.crt"));
    return grpc::SslServerCredentials(ssl);
  }

  static ClientOptions TlsOptions() {
    ClientOptions options;
    options.security.tls_ca_file = Pki("ca.crt");
    options.security.token = "T";
    options.max_retries = 0;
    options.default_timeout = absl::Seconds(10);
    return options;
  }

  static absl::Status ListTables(const FakeServer& server,
                                 const ClientOptions& options) {
    absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
        EmbeddingClient::Connect(server.address(), options);
    if (!client.ok()) return client.status();
    return (*client)->ListTables().status();
  }

  static std::string* directory_;
  FakeService service_;
};

std::string* TlsTest::directory_ = nullptr;

TEST_F(TlsTest, ClientWithTheCaReachesTheServerAndSendsTheToken) {
  FakeServer server(&service_, ServerCredentials(false));
  EXPECT_EQ(ListTables(server, TlsOptions()), absl::OkStatus());
  EXPECT_THAT(service_.metadata, Contains(Pair("authorization", "Bearer T")));
}

TEST_F(TlsTest, PlaintextClientIsRefused) {
  FakeServer server(&service_, ServerCredentials(false));
  ClientOptions options = TlsOptions();
  options.security.tls_ca_file.clear();
  EXPECT_EQ(ListTables(server, options).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(service_.calls.count("ListTables"), 0u);
}

TEST_F(TlsTest, ServerNameOverrideIsWhatTheCertificateMustName) {
  FakeServer server(&service_, ServerCredentials(false));
  ClientOptions options = TlsOptions();
  options.security.tls_server_name = "localhost";
  EXPECT_EQ(ListTables(server, options), absl::OkStatus());
  options.security.tls_server_name = "other.example";
  EXPECT_EQ(ListTables(server, options).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(service_.calls["ListTables"], 1);
}

TEST_F(TlsTest, CertificateOfAnotherCaIsRefused) {
  FakeServer server(&service_, ServerCredentials(false));
  ClientOptions options = TlsOptions();
  options.security.tls_ca_file = Pki("other-ca.crt");
  EXPECT_EQ(ListTables(server, options).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(service_.calls.count("ListTables"), 0u);
}

TEST_F(TlsTest, MutualTlsNeedsTheClientCertificate) {
  FakeServer server(&service_, ServerCredentials(true));
  ClientOptions options = TlsOptions();
  EXPECT_EQ(ListTables(server, options).code(), absl::StatusCode::kUnavailable);
  options.security.tls_cert_file = Pki("client.crt");
  options.security.tls_key_file = Pki("client.key");
  EXPECT_EQ(ListTables(server, options), absl::OkStatus());
  options.security.tls_cert_file = Pki("other-client.crt");
  options.security.tls_key_file = Pki("other-client.key");
  EXPECT_EQ(ListTables(server, options).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(service_.calls["ListTables"], 1);
}

}  // namespace
}  // namespace embedding
