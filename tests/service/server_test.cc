// Server::Start checks every option before it starts anything: each bad
// option is INVALID_ARGUMENT with a message naming its flag, so main.cc can
// pass flags through unchecked.
#include "server/service/server.h"

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/service/temp_dir.h"

namespace embedding {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGiB = int64_t{1} << 30;

ServerOptions ValidOptions() {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  return options;
}

struct BadOption {
  const char* name;
  std::function<void(ServerOptions&)> set;
  std::string message;
};

TEST(ServerTest, EachBadOptionIsInvalidArgumentNamingItsFlag) {
  const std::vector<BadOption> cases = {
      {"worker_threads no more than the streams",
       [](ServerOptions& o) {
         o.service.max_open_streams = 8;
         o.worker_threads = 8;
       },
       "--worker_threads must be > --max_open_streams = 8 (open streams hold "
       "a thread each; unary calls need the rest), got 8"},
      {"max_open_streams",
       [](ServerOptions& o) { o.service.max_open_streams = 0; },
       "--max_open_streams must be >= 1, got 0"},
      {"stream_idle_timeout_s",
       [](ServerOptions& o) {
         o.service.stream_idle_timeout = absl::ZeroDuration();
       },
       "--stream_idle_timeout_s must be > 0, got 0"},
      {"max_inflight_bytes", [](ServerOptions& o) { o.max_inflight_bytes = 0; },
       "--max_inflight_bytes must be > 0, got 0"},
      {"max_streams_per_connection",
       [](ServerOptions& o) { o.max_streams_per_connection = 0; },
       "--max_streams_per_connection must be >= 1, got 0"},
      {"memory_budget_bytes",
       [](ServerOptions& o) { o.registry.memory_budget_bytes = -5; },
       "--memory_budget_bytes must be >= 0, got -5"},
      {"shard_count zero", [](ServerOptions& o) { o.registry.shard_count = 0; },
       "--shard_count must be >= 1, got 0"},
      {"shard_index negative",
       [](ServerOptions& o) { o.registry.shard_index = -1; },
       "--shard_index must be in [0, --shard_count = 1), got -1"},
      {"shard_index too large",
       [](ServerOptions& o) {
         o.registry.shard_index = 3;
         o.registry.shard_count = 3;
       },
       "--shard_index must be in [0, --shard_count = 3), got 3"},
      {"max_indices_per_request zero",
       [](ServerOptions& o) { o.service.max_indices_per_request = 0; },
       "--max_indices_per_request must be > 0, got 0"},
      {"max_indices_per_request negative",
       [](ServerOptions& o) { o.service.max_indices_per_request = -7; },
       "--max_indices_per_request must be > 0, got -7"},
      {"max_message_bytes too small",
       [](ServerOptions& o) { o.service.max_message_bytes = kMiB - 1; },
       "--max_message_bytes must be in [1 MiB, 2 GiB) = [1048576, "
       "2147483648), got 1048575"},
      {"max_message_bytes 2 GiB",
       [](ServerOptions& o) { o.service.max_message_bytes = 2 * kGiB; },
       "--max_message_bytes must be in [1 MiB, 2 GiB) = [1048576, "
       "2147483648), got 2147483648"},
      // Once cast to int unchecked: 4 GiB + 1 MiB became 1 MiB.
      {"max_message_bytes past int",
       [](ServerOptions& o) { o.service.max_message_bytes = 4 * kGiB + kMiB; },
       "--max_message_bytes must be in [1 MiB, 2 GiB) = [1048576, "
       "2147483648), got 4296015872"},
      {"checkpoint_interval_s negative",
       [](ServerOptions& o) { o.checkpoint_interval_s = -1; },
       "--checkpoint_interval_s must be a finite number >= 0 (0: no periodic "
       "checkpoints), got -1"},
      {"checkpoint_interval_s NaN",
       [](ServerOptions& o) { o.checkpoint_interval_s = std::nan(""); },
       "--checkpoint_interval_s must be a finite number >= 0 (0: no periodic "
       "checkpoints), got nan"},
      {"checkpoint_interval_s without a directory",
       [](ServerOptions& o) { o.checkpoint_interval_s = 5; },
       "--checkpoint_interval_s needs --checkpoint_dir"},
      {"checkpoint_keep", [](ServerOptions& o) { o.checkpoint_keep = 0; },
       "--checkpoint_keep must be >= 1, got 0"},
      {"full_checkpoint_every",
       [](ServerOptions& o) { o.full_checkpoint_every = -1; },
       "--full_checkpoint_every must be >= 0 (0: every checkpoint is full), "
       "got -1"},
      {"checkpoint_dir missing",
       [](ServerOptions& o) { o.checkpoint_dir = "/nonexistent/checkpoints"; },
       "--checkpoint_dir=/nonexistent/checkpoints is not an existing "
       "directory"},
      {"checkpoint_dir a file",
       [](ServerOptions& o) { o.checkpoint_dir = "/dev/null"; },
       "--checkpoint_dir=/dev/null is not an existing directory"},
  };
  for (const BadOption& bad : cases) {
    SCOPED_TRACE(bad.name);
    ServerOptions options = ValidOptions();
    bad.set(options);
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(server.status().message(), bad.message);
  }
}

TEST(ServerTest, BoundaryOptionsStart) {
  ServerOptions options = ValidOptions();
  options.service.max_open_streams = 1;
  options.worker_threads = 2;
  options.max_inflight_bytes = 1;
  options.max_streams_per_connection = 1;
  options.registry.memory_budget_bytes = 0;
  options.registry.shard_index = 2;
  options.registry.shard_count = 3;
  options.service.max_indices_per_request = 1;
  for (int64_t bytes : {kMiB, 2 * kGiB - 1}) {
    options.service.max_message_bytes = bytes;
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_GT((*server)->port(), 0);
  }
}

TEST(ServerTest, CheckpointOptionsAtTheirBoundsStart) {
  testing::TempDir dir;
  ServerOptions options = ValidOptions();
  options.checkpoint_dir = dir.path();
  options.checkpoint_interval_s = 0.5;
  options.checkpoint_keep = 1;
  options.full_checkpoint_every = 0;
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE((*server)->WaitUntilServing(absl::Seconds(30)));
}

TEST(ServerTest, WithoutCheckpointsItServesAtOnce) {
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(ValidOptions());
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE((*server)->WaitUntilServing(absl::ZeroDuration()));
  (*server)->Shutdown(absl::Seconds(1));
  EXPECT_FALSE((*server)->WaitUntilServing(absl::ZeroDuration()));
}

TEST(ServerTest, AddressThatCannotBeBoundIsUnavailable) {
  // 192.0.2.0/24 is TEST-NET-1: never an address of this host.
  ServerOptions options = ValidOptions();
  options.listen_address = "192.0.2.1:0";
  options.allow_insecure = true;  // Plaintext off loopback: else refused.
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server.status().message(), "cannot listen on 192.0.2.1:0");
}

}  // namespace
}  // namespace embedding
