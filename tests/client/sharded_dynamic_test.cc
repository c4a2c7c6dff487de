// ShardedEmbeddingClient on a dynamic table (any int64 id) over three real
// in-process servers (shard k of 3 each, on free loopback ports), against
// one server holding the same table: each id's row must live on server
// SplitMix64(id) % 3 (asked of each server directly), and lookups, pushes,
// push results and the merged DynamicStats must equal the single server's.
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/npy_transfer.h"
#include "client/cpp/sharded_client.h"
#include "common/shard_layout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/server.h"
#include "spdlog/spdlog.h"
#include "tests/client/shard_server.h"

namespace embedding {
namespace {

using ::embedding::testing::LoopbackAddress;
using ::embedding::testing::StartShardServer;
using ::embedding::testing::Values;
using ::testing::HasSubstr;

constexpr int kShards = 3;
constexpr int64_t kDim = 4;
constexpr int64_t kPaddingId = -7;
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

// Raw ids of every sort: small, negative, 10^12 + k, the extremes.
const std::vector<int64_t>& RawIds() {
  static const auto* ids = new std::vector<int64_t>{0,
                                                    1,
                                                    2,
                                                    3,
                                                    -1,
                                                    -2,
                                                    1000000000005,
                                                    1000000000006,
                                                    1000000000007,
                                                    -987654321012,
                                                    kMax,
                                                    kMin + 1,
                                                    42,
                                                    4242,
                                                    -424242,
                                                    77777777,
                                                    5};
  return *ids;
}

v1::TableSpec DynamicSpec(const std::string& name, int64_t capacity = 1000) {
  v1::TableSpec spec;
  spec.set_name(name);
  spec.set_embedding_dim(kDim);
  spec.set_seed(11);
  spec.set_padding_idx(kPaddingId);
  spec.mutable_optimizer()->mutable_adagrad()->set_lr(0.1f);
  spec.mutable_dynamic()->set_capacity(capacity);
  return spec;
}

ClientOptions TestClientOptions() {
  ClientOptions options;
  options.default_timeout = absl::Seconds(10);
  options.max_retries = 1;
  options.retry_backoff = absl::Milliseconds(10);
  return options;
}

class ShardedDynamicTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::warn); }

  void SetUp() override {
    for (int k = 0; k < kShards; ++k) {
      servers_.push_back(StartShardServer(k, kShards));
      ASSERT_NE(servers_.back(), nullptr);
      addresses_.push_back(LoopbackAddress(*servers_.back()));
      auto plain =
          EmbeddingClient::Connect(addresses_.back(), TestClientOptions());
      ASSERT_TRUE(plain.ok()) << plain.status();
      plain_.push_back(*std::move(plain));
    }
    whole_ = StartShardServer(0, 1);
    ASSERT_NE(whole_, nullptr);
    auto cluster =
        ShardedEmbeddingClient::Connect(addresses_, TestClientOptions());
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    auto single =
        EmbeddingClient::Connect(LoopbackAddress(*whole_), TestClientOptions());
    ASSERT_TRUE(single.ok()) << single.status();
    single_ = *std::move(single);
  }

  void CreateBoth(const v1::TableSpec& spec) {
    absl::StatusOr<v1::TableInfo> sharded = cluster_->CreateTable(spec);
    ASSERT_TRUE(sharded.ok()) << sharded.status();
    absl::StatusOr<v1::TableInfo> single = single_->CreateTable(spec);
    ASSERT_TRUE(single.ok()) << single.status();
  }

  void ExpectSameLookup(const std::string& table,
                        const std::vector<int64_t>& ids) {
    absl::StatusOr<FloatTensor> sharded = cluster_->Lookup(table, ids);
    absl::StatusOr<FloatTensor> single = single_->Lookup(table, ids);
    ASSERT_TRUE(sharded.ok()) << sharded.status();
    ASSERT_TRUE(single.ok()) << single.status();
    EXPECT_EQ(sharded->shape, single->shape);
    EXPECT_EQ(sharded->data, single->data);
  }

  // Pushes on both sides; the results must agree. The cluster's result.
  PushGradientsResult PushBoth(const std::string& table,
                               const std::vector<int64_t>& ids, float salt) {
    const std::vector<float> grad = Values(ids.size() * kDim, salt);
    absl::StatusOr<PushGradientsResult> sharded =
        cluster_->PushGradients(table, ids, grad);
    absl::StatusOr<PushGradientsResult> single =
        single_->PushGradients(table, ids, grad);
    EXPECT_TRUE(sharded.ok()) << sharded.status();
    EXPECT_TRUE(single.ok()) << single.status();
    if (!sharded.ok() || !single.ok()) return {};
    EXPECT_EQ(sharded->rows_updated, single->rows_updated);
    EXPECT_EQ(sharded->rows_admitted, single->rows_admitted);
    EXPECT_EQ(sharded->rows_dropped, single->rows_dropped);
    EXPECT_EQ(sharded->rows_evicted, single->rows_evicted);
    return *sharded;
  }

  // The shards' own GetTable replies.
  std::vector<v1::TableInfo> ShardInfos(const std::string& table) {
    std::vector<v1::TableInfo> infos;
    for (const auto& plain : plain_) {
      absl::StatusOr<v1::TableInfo> info = plain->GetTable(table);
      EXPECT_TRUE(info.ok()) << info.status();
      infos.push_back(info.ok() ? *info : v1::TableInfo());
    }
    return infos;
  }

  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<EmbeddingClient>> plain_;  // One per shard.
  std::unique_ptr<Server> whole_;
  std::unique_ptr<ShardedEmbeddingClient> cluster_;
  std::unique_ptr<EmbeddingClient> single_;
};

TEST_F(ShardedDynamicTest, EachIdLivesOnTheShardOfItsHash) {
  CreateBoth(DynamicSpec("t"));
  PushBoth("t", RawIds(), 0.5f);
  const ShardLayout layout =
      *ShardLayout::Create(kShards, ShardLayout::Routing::kHash);
  std::vector<int64_t> owned(kShards, 0);
  for (int64_t id : RawIds()) {
    const int owner = layout.OwnerShard(id);
    ++owned[owner];
    for (int k = 0; k < kShards; ++k) {
      SCOPED_TRACE(absl::StrCat("id ", id, " asked of shard ", k));
      absl::StatusOr<ReadRowsResult> read = plain_[k]->ReadRows("t", {id});
      if (k == owner) {
        ASSERT_TRUE(read.ok()) << read.status();
        EXPECT_EQ(read->indices, std::vector<int64_t>{id});
      } else {
        EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
        EXPECT_THAT(read.status().message(),
                    HasSubstr(absl::StrCat("belongs to shard ", owner)));
      }
    }
  }
  // Each shard holds exactly the rows of its ids: they were created there.
  const std::vector<v1::TableInfo> infos = ShardInfos("t");
  for (int k = 0; k < kShards; ++k) {
    EXPECT_EQ(infos[k].dynamic_stats().rows_held(), owned[k]) << "shard " << k;
    EXPECT_EQ(infos[k].local_rows(), owned[k]) << "shard " << k;
  }
  // The ids spread over every shard (else the test proves little).
  for (int k = 0; k < kShards; ++k) EXPECT_GT(owned[k], 0) << "shard " << k;
}

TEST_F(ShardedDynamicTest, LookupsAndPushesEqualOneServer) {
  CreateBoth(DynamicSpec("t"));
  // Absent ids read the initializer's values, the padding id zeros.
  std::vector<int64_t> looked_up = RawIds();
  looked_up.push_back(kPaddingId);
  looked_up.push_back(1000000000005);  // Repeated.
  ExpectSameLookup("t", looked_up);

  // First pushes admit (admit_after 1), repeated and padding ids included.
  std::vector<int64_t> first = {1000000000005, -1, kMax, 3, 3, kPaddingId, 42};
  const PushGradientsResult admitted = PushBoth("t", first, 0.25f);
  EXPECT_EQ(admitted.rows_admitted, 5);
  EXPECT_EQ(admitted.rows_dropped, 0);
  EXPECT_EQ(admitted.rows_evicted, 0);
  const PushGradientsResult again = PushBoth("t", RawIds(), 1.5f);
  EXPECT_EQ(again.rows_admitted, static_cast<int64_t>(RawIds().size()) - 5);
  PushBoth("t", {4242, 4242, -2, kPaddingId}, 2.5f);

  ExpectSameLookup("t", looked_up);
  // Read back by id: the rows after the pushes are the same, bit for bit.
  absl::StatusOr<ReadRowsResult> sharded = cluster_->ReadRows("t", RawIds());
  absl::StatusOr<ReadRowsResult> single = single_->ReadRows("t", RawIds());
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ(sharded->indices, single->indices);
  EXPECT_EQ(sharded->values.data, single->values.data);
}

TEST_F(ShardedDynamicTest, MergedStatsSumTheShardsAndEqualOneServer) {
  v1::TableSpec spec = DynamicSpec("t");
  spec.mutable_dynamic()->set_admit_after(2);
  CreateBoth(spec);
  PushBoth("t", RawIds(), 0.5f);  // Counted, dropped.
  const std::vector<int64_t> twice = {0, 1, 2, -1, 1000000000005, kMax};
  const PushGradientsResult second = PushBoth("t", twice, 1.0f);
  EXPECT_EQ(second.rows_admitted, static_cast<int64_t>(twice.size()));
  ExpectSameLookup("t", RawIds());  // Some absent, some held.

  absl::StatusOr<v1::TableInfo> merged = cluster_->GetTable("t");
  ASSERT_TRUE(merged.ok()) << merged.status();
  v1::DynamicStats sum;
  int64_t local_rows = 0;
  for (const v1::TableInfo& info : ShardInfos("t")) {
    const v1::DynamicStats& stats = info.dynamic_stats();
    sum.set_rows_held(sum.rows_held() + stats.rows_held());
    sum.set_capacity(sum.capacity() + stats.capacity());
    sum.set_admissions(sum.admissions() + stats.admissions());
    sum.set_evictions(sum.evictions() + stats.evictions());
    sum.set_expirations(sum.expirations() + stats.expirations());
    sum.set_dropped_rows(sum.dropped_rows() + stats.dropped_rows());
    sum.set_absent_rows_looked_up(sum.absent_rows_looked_up() +
                                  stats.absent_rows_looked_up());
    local_rows += info.local_rows();
  }
  EXPECT_EQ(merged->dynamic_stats().ShortDebugString(), sum.ShortDebugString());
  EXPECT_EQ(merged->local_rows(), local_rows);
  EXPECT_EQ(merged->spec().num_embeddings(), 0);
  EXPECT_EQ(merged->spec().shard_count(), kShards);
  EXPECT_TRUE(merged->spec().has_dynamic());
  EXPECT_EQ(sum.capacity(), kShards * 1000);

  // Every count but the capacity (the cluster's is 3 servers') is the one
  // server's.
  absl::StatusOr<v1::TableInfo> one = single_->GetTable("t");
  ASSERT_TRUE(one.ok()) << one.status();
  v1::DynamicStats expected = one->dynamic_stats();
  expected.set_capacity(sum.capacity());
  EXPECT_EQ(sum.ShortDebugString(), expected.ShortDebugString());
  EXPECT_EQ(sum.rows_held(), static_cast<int64_t>(twice.size()));
  EXPECT_EQ(sum.dropped_rows(), static_cast<int64_t>(RawIds().size()));

  absl::StatusOr<std::vector<v1::TableInfo>> listed = cluster_->ListTables();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].dynamic_stats().ShortDebugString(),
            sum.ShortDebugString());
}

TEST_F(ShardedDynamicTest, EvictionsOfFullShardsAreSummed) {
  constexpr int64_t kCapacity = 2;
  ASSERT_TRUE(cluster_->CreateTable(DynamicSpec("small", kCapacity)).ok());
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 30; ++i) ids.push_back(1000000000000 + 7919 * i);
  absl::StatusOr<PushGradientsResult> pushed =
      cluster_->PushGradients("small", ids, Values(ids.size() * kDim, 0.5f));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  absl::StatusOr<v1::TableInfo> info = cluster_->GetTable("small");
  ASSERT_TRUE(info.ok()) << info.status();
  const v1::DynamicStats& stats = info->dynamic_stats();
  EXPECT_EQ(stats.capacity(), kShards * kCapacity);
  EXPECT_LE(stats.rows_held(), kShards * kCapacity);
  EXPECT_EQ(pushed->rows_admitted, 30);
  EXPECT_EQ(pushed->rows_evicted, 30 - stats.rows_held());
  EXPECT_EQ(stats.admissions(), 30);
  EXPECT_EQ(stats.evictions(), pushed->rows_evicted);
}

TEST_F(ShardedDynamicTest, TheReservedIdIsRefusedAtTheCallersPosition) {
  CreateBoth(DynamicSpec("t"));
  const std::vector<int64_t> ids = {5, -1, kMin, 7};
  const std::string expected =
      "index -9223372036854775808 at position 2 is reserved: no id of a "
      "dynamic table";
  absl::StatusOr<FloatTensor> lookup = cluster_->Lookup("t", ids);
  EXPECT_EQ(lookup.status(), absl::InvalidArgumentError(expected));
  // The same words as the server's own.
  absl::StatusOr<FloatTensor> one = single_->Lookup("t", ids);
  EXPECT_EQ(one.status(), absl::InvalidArgumentError(expected));
  absl::StatusOr<PushGradientsResult> push =
      cluster_->PushGradients("t", ids, Values(ids.size() * kDim, 0));
  EXPECT_EQ(push.status(), absl::InvalidArgumentError(expected));
  absl::StatusOr<ReadRowsResult> read = cluster_->ReadRows("t", ids);
  EXPECT_EQ(read.status(), absl::InvalidArgumentError(expected));
  // Nothing was pushed anywhere.
  absl::StatusOr<v1::TableInfo> info = cluster_->GetTable("t");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->step(), 0);
}

TEST_F(ShardedDynamicTest, WeightsAreRefusedAndDenseOnlyCallsUnimplemented) {
  const std::vector<float> weights(10 * kDim, 0.5f);
  const absl::Status no_weights = absl::InvalidArgumentError(
      "a dynamic table takes no initial_weights: its rows are created by "
      "pushes, from the initializer");
  EXPECT_EQ(cluster_->CreateTable(DynamicSpec("w"), weights).status(),
            no_weights);
  EXPECT_EQ(single_->CreateTable(DynamicSpec("w"), weights).status(),
            no_weights);
  EXPECT_EQ(cluster_->GetTable("w").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(single_->GetTable("w").status().code(),
            absl::StatusCode::kNotFound);

  ASSERT_TRUE(cluster_->CreateTable(DynamicSpec("t")).ok());
  auto expect_unimplemented = [](const absl::Status& status,
                                 const std::string& what) {
    EXPECT_EQ(status, absl::UnimplementedError(absl::StrCat(
                          "table \"t\" is dynamic: this client cannot ", what,
                          " of a dynamic table yet")));
  };
  expect_unimplemented(cluster_->ReadRowRange("t", 0, 0).status(),
                       "read a row range");
  expect_unimplemented(
      cluster_->ReadRowRangeInChunks(
          "t", 0, 0, [](const ReadRowsResult&) { return absl::OkStatus(); }),
      "read a row range");
  expect_unimplemented(
      cluster_->WriteRowRange("t", 0, kDim, std::vector<float>(kDim, 1.0f))
          .status(),
      "write a row range");
  const absl::Status npy =
      ExportNpy(*cluster_, "t", ::testing::TempDir() + "/t.npy").status();
  EXPECT_EQ(npy.code(), absl::StatusCode::kFailedPrecondition) << npy;
  EXPECT_THAT(npy.message(), HasSubstr("use a .npz file"));
}

}  // namespace
}  // namespace embedding
