// The /metrics endpoint over a real port: what it serves, and the addresses
// it refuses.
#include "server/metrics/metrics_endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/server_metrics.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;

// GET `path` from 127.0.0.1:`port`; the whole response, headers included.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) !=
      0) {
    close(fd);
    ADD_FAILURE() << "cannot connect to port " << port;
    return "";
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(write(fd, request.data(), request.size()),
            static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  return response;
}

TEST(MetricsEndpointTest, ServesRegisteredMetricsInTextFormat) {
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
      MetricsEndpoint::Start("127.0.0.1:0");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  ASSERT_GT((*endpoint)->port(), 0);
  int64_t calls = 7;
  (*endpoint)->Register(ServerMetrics(
      {.calls_in_flight = [&calls] { return calls; },
       .open_streams = [] { return int64_t{1}; },
       .inflight_bytes = [] { return int64_t{4096}; },
       .inflight_limit_bytes = 1 << 20,
       .auth_failures = {.missing_token = [] { return int64_t{3}; },
                         .unknown_token = [] { return int64_t{0}; },
                         .permission_denied = [] { return int64_t{2}; }}}));
  const std::string body = HttpGet((*endpoint)->port(), "/metrics");
  EXPECT_THAT(body, HasSubstr("200 OK"));
  EXPECT_THAT(body, HasSubstr("# HELP embedding_inflight_requests "));
  EXPECT_THAT(body, HasSubstr("# TYPE embedding_inflight_requests gauge"));
  EXPECT_THAT(body, HasSubstr("\nembedding_inflight_requests 7\n"));
  EXPECT_THAT(body, HasSubstr("\nembedding_inflight_limit_bytes 1048576\n"));
  EXPECT_THAT(body, HasSubstr("# TYPE embedding_auth_failures_total counter"));
  EXPECT_THAT(body, HasSubstr("embedding_auth_failures_total{reason=\""
                              "permission_denied\"} 2\n"));
  calls = 8;  // Read at every scrape.
  EXPECT_THAT(HttpGet((*endpoint)->port(), "/metrics"),
              HasSubstr("\nembedding_inflight_requests 8\n"));
}

TEST(MetricsEndpointTest, WithoutAuthThereAreNoAuthFailures) {
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
      MetricsEndpoint::Start("localhost:0");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  (*endpoint)->Register(
      ServerMetrics({.calls_in_flight = [] { return int64_t{0}; },
                     .open_streams = [] { return int64_t{0}; },
                     .inflight_bytes = [] { return int64_t{0}; }}));
  const std::string body = HttpGet((*endpoint)->port(), "/metrics");
  EXPECT_THAT(body, HasSubstr("embedding_open_streams 0"));
  EXPECT_THAT(body, ::testing::Not(HasSubstr("auth_failures")));
}

TEST(MetricsEndpointTest, MalformedAddressesAreInvalidArgument) {
  for (const char* address :
       {"", "9090", "127.0.0.1", ":9090", "127.0.0.1:", "127.0.0.1:65536",
        "127.0.0.1:-1", "127.0.0.1:90a", "[::1]:9090", "host name:1"}) {
    const absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
        MetricsEndpoint::Start(address);
    EXPECT_EQ(endpoint.status().code(), absl::StatusCode::kInvalidArgument)
        << address;
    EXPECT_THAT(endpoint.status().message(), HasSubstr("--metrics_address"))
        << address;
  }
}

TEST(MetricsEndpointTest, TakenPortIsUnavailable) {
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> first =
      MetricsEndpoint::Start("127.0.0.1:0");
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = absl::StrCat("127.0.0.1:", (*first)->port());
  const absl::StatusOr<std::unique_ptr<MetricsEndpoint>> second =
      MetricsEndpoint::Start(taken);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(),
              HasSubstr(absl::StrCat("--metrics_address=", taken)));
}

}  // namespace
}  // namespace embedding
