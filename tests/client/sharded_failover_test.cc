// A ShardedEmbeddingClient made while one shard of three (real in-process
// servers) is stopped: calls that need only the other shards work, those
// that need the stopped one fail UNAVAILABLE naming it, and the shard is
// checked when it answers again (a server of another cluster in its place
// is refused; the right one then serves).
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/sharded_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/server.h"
#include "spdlog/spdlog.h"
#include "tests/client/shard_server.h"

namespace embedding {
namespace {

using ::embedding::testing::StartShardServer;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int kShards = 3;
constexpr int64_t kDim = 4;
constexpr int64_t kRows = 12;
constexpr char kTable[] = "lazy";

ClientOptions FastOptions() {
  ClientOptions options;
  options.default_timeout = absl::Seconds(10);
  options.max_retries = 1;
  options.retry_backoff = absl::Milliseconds(10);
  return options;
}

v1::TableSpec Spec() {
  v1::TableSpec spec;
  spec.set_name(kTable);
  spec.set_num_embeddings(kRows);
  spec.set_embedding_dim(kDim);
  return spec;
}

// Row g is g + 0.25 * column.
std::vector<float> RowValues(const std::vector<int64_t>& rows) {
  std::vector<float> values;
  for (int64_t row : rows) {
    for (int64_t c = 0; c < kDim; ++c) values.push_back(row + 0.25f * c);
  }
  return values;
}

std::vector<int64_t> AllRows() {
  std::vector<int64_t> rows(kRows);
  for (int64_t g = 0; g < kRows; ++g) rows[g] = g;
  return rows;
}

// Creates the table on a lone server at `address` holding its rows of
// shard `shard` of `shard_count`, written as RowValues.
void CreateOnServer(const std::string& address, int shard, int shard_count) {
  auto client = EmbeddingClient::Connect(address, FastOptions());
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->CreateTable(Spec()).ok());
  std::vector<int64_t> rows;
  for (int64_t g = shard; g < kRows; g += shard_count) rows.push_back(g);
  absl::StatusOr<WriteResult> written =
      (*client)->WriteRows(kTable, rows, RowValues(rows));
  ASSERT_TRUE(written.ok()) << written.status();
}

// The lookup of `rows`, tried until the shards stop being UNAVAILABLE.
absl::StatusOr<FloatTensor> LookupOnceUp(const ShardedEmbeddingClient& client,
                                         const std::vector<int64_t>& rows) {
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (true) {
    absl::StatusOr<FloatTensor> result = client.Lookup(kTable, rows);
    if (!absl::IsUnavailable(result.status()) || absl::Now() > deadline) {
      return result;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

TEST(ShardedFailoverTest, NewClientWorksWhileAShardIsDown) {
  spdlog::set_level(spdlog::level::warn);
  std::vector<std::unique_ptr<Server>> servers;
  std::vector<std::string> addresses;
  for (int k = 0; k < kShards; ++k) {
    servers.push_back(StartShardServer(k, kShards, 0));
    ASSERT_NE(servers.back(), nullptr);
    addresses.push_back(absl::StrCat("127.0.0.1:", servers.back()->port()));
    CreateOnServer(addresses.back(), k, kShards);
  }
  const int down_port = servers[1]->port();
  servers[1]->Shutdown(absl::ZeroDuration());
  servers[1].reset();

  // Made while shard 1 is down: the spec comes from shards 0 and 2.
  auto client = ShardedEmbeddingClient::Connect(addresses, FastOptions());
  ASSERT_TRUE(client.ok()) << client.status();
  const std::vector<int64_t> elsewhere = {3, 0, 8, 2};
  absl::StatusOr<FloatTensor> rows = (*client)->Lookup(kTable, elsewhere);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->data, RowValues(elsewhere));
  absl::StatusOr<ReadRowsResult> read = (*client)->ReadRows(kTable, {5, 9});
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->values.data, RowValues({5, 9}));

  absl::StatusOr<FloatTensor> needs_down = (*client)->Lookup(kTable, {0, 4});
  EXPECT_TRUE(absl::IsUnavailable(needs_down.status())) << needs_down.status();
  EXPECT_THAT(std::string(needs_down.status().message()),
              StartsWith(absl::StrCat("shard 1 (", addresses[1], "): ")));
  // A push needs every shard.
  absl::StatusOr<PushGradientsResult> push =
      (*client)->PushGradients(kTable, {0}, RowValues({0}));
  EXPECT_TRUE(absl::IsUnavailable(push.status())) << push.status();
  EXPECT_THAT(std::string(push.status().message()),
              HasSubstr(absl::StrCat("shard 1 (", addresses[1], "): ")));

  // Checked when it answers: a server of another cluster is refused.
  std::unique_ptr<Server> stranger = StartShardServer(1, 2, down_port);
  ASSERT_NE(stranger, nullptr);
  CreateOnServer(addresses[1], 1, 2);
  absl::StatusOr<FloatTensor> refused = LookupOnceUp(**client, {4});
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_EQ(refused.status().message(),
            absl::StrCat("shard 1 (", addresses[1],
                         "): reports shard_index 1 of shard_count 2, "
                         "expected 1 of 3"));
  stranger->Shutdown(absl::ZeroDuration());
  stranger.reset();

  servers[1] = StartShardServer(1, kShards, down_port);
  ASSERT_NE(servers[1], nullptr);
  CreateOnServer(addresses[1], 1, kShards);
  rows = LookupOnceUp(**client, AllRows());
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->data, RowValues(AllRows()));
}

}  // namespace
}  // namespace embedding
