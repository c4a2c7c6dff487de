// Server::Start with and without --metrics_address: the endpoint's port,
// and the flag named when the address is refused.
#include <memory>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/server.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;

ServerOptions Options(const char* metrics_address) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_address = metrics_address;
  return options;
}

TEST(ServerMetricsTest, MetricsAddressGetsAPort) {
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(Options("127.0.0.1:0"));
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->metrics_port(), 0);
  EXPECT_NE((*server)->metrics_port(), (*server)->port());
}

TEST(ServerMetricsTest, NoMetricsAddressNoEndpoint) {
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(Options(""));
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->metrics_port(), 0);
}

TEST(ServerMetricsTest, MalformedMetricsAddressIsInvalidArgument) {
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(Options("localhost"));
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(),
              HasSubstr("--metrics_address=\"localhost\" is not HOST:PORT"));
}

TEST(ServerMetricsTest, TakenMetricsPortIsUnavailable) {
  absl::StatusOr<std::unique_ptr<Server>> first =
      Server::Start(Options("127.0.0.1:0"));
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken =
      absl::StrCat("127.0.0.1:", (*first)->metrics_port());
  absl::StatusOr<std::unique_ptr<Server>> second =
      Server::Start(Options(taken.c_str()));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(),
              HasSubstr(absl::StrCat("--metrics_address=", taken)));
}

}  // namespace
}  // namespace embedding
