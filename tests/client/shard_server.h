// Real in-process servers for the client tests (the client library never
// includes server/; its tests may).
//
//   std::unique_ptr<Server> server = StartShardServer(1, 3);  // shard 1 of 3
//   auto client = EmbeddingClient::Connect(LoopbackAddress(*server));
#ifndef TESTS_CLIENT_SHARD_SERVER_H_
#define TESTS_CLIENT_SHARD_SERVER_H_

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/service/server.h"

namespace embedding::testing {

// Starts shard `shard` of `shard_count` on loopback `port` (0: a free one),
// with the server's default message limit unless `max_message_bytes` is
// given. Null (and a test failure) when it cannot start.
inline std::unique_ptr<Server> StartShardServer(
    int shard = 0, int shard_count = 1, int port = 0,
    std::optional<int> max_message_bytes = std::nullopt) {
  ServerOptions options;
  options.listen_address = absl::StrCat("127.0.0.1:", port);
  if (max_message_bytes.has_value()) {
    options.service.max_message_bytes = *max_message_bytes;
  }
  options.registry.shard_index = shard;
  options.registry.shard_count = shard_count;
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// Distinct, irregular values (sums in another order would differ).
inline std::vector<float> Values(int64_t count, float salt) {
  std::vector<float> values(count);
  for (int64_t i = 0; i < count; ++i) {
    values[i] = std::sin(static_cast<float>(i) * 0.37f + salt) * 1.7f;
  }
  return values;
}

inline std::string LoopbackAddress(const Server& server) {
  return absl::StrCat("127.0.0.1:", server.port());
}

}  // namespace embedding::testing

#endif  // TESTS_CLIENT_SHARD_SERVER_H_
