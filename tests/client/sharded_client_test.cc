// ShardedEmbeddingClient against three real in-process servers (shard k of
// 3 each, on free loopback ports) and one server holding the whole table:
// every result of the cluster must equal the single server's bit for bit
// (lookups of every shape and dtype, bags of every mode, pushes with every
// optimizer, reads and writes), and a broken cluster must fail cleanly,
// naming the server at fault.
#include "client/cpp/sharded_client.h"

#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cpp/embedding_client.h"
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kShards = 3;
constexpr int kMessageBytes = 1 << 20;
constexpr int64_t kDim = 8;
constexpr int64_t kRows = 40;

v1::TableSpec Spec(const std::string& name, int64_t rows = kRows) {
  v1::TableSpec spec;
  spec.set_name(name);
  spec.set_num_embeddings(rows);
  spec.set_embedding_dim(kDim);
  spec.set_seed(7);
  return spec;
}

ClientOptions TestClientOptions() {
  ClientOptions options;
  options.max_message_bytes = kMessageBytes;
  options.default_timeout = absl::Seconds(10);
  options.max_retries = 1;
  options.retry_backoff = absl::Milliseconds(10);
  return options;
}

class ShardedClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::warn); }

  void SetUp() override {
    for (int k = 0; k < kShards; ++k) {
      shards_.push_back(StartShardServer(k, kShards, 0, kMessageBytes));
      ASSERT_NE(shards_.back(), nullptr);
      addresses_.push_back(LoopbackAddress(*shards_.back()));
    }
    whole_ = StartShardServer(0, 1, 0, kMessageBytes);
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

  // The same table on the cluster and on the single server.
  void CreateBoth(const v1::TableSpec& spec,
                  const std::vector<float>& weights = {}) {
    absl::StatusOr<v1::TableInfo> sharded =
        cluster_->CreateTable(spec, weights);
    ASSERT_TRUE(sharded.ok()) << sharded.status();
    absl::StatusOr<v1::TableInfo> single = single_->CreateTable(spec, weights);
    ASSERT_TRUE(single.ok()) << single.status();
  }

  // Every row of `table` on both sides is the same, bit for bit.
  void ExpectSameTable(const std::string& table) {
    absl::StatusOr<ReadRowsResult> sharded =
        cluster_->ReadRowRange(table, 0, 0);
    absl::StatusOr<ReadRowsResult> single = single_->ReadRowRange(table, 0, 0);
    ASSERT_TRUE(sharded.ok()) << sharded.status();
    ASSERT_TRUE(single.ok()) << single.status();
    EXPECT_EQ(sharded->indices, single->indices);
    EXPECT_EQ(sharded->values.shape, single->values.shape);
    EXPECT_EQ(sharded->values.data, single->values.data);
  }

  void ExpectSameLookup(const std::string& table,
                        const std::vector<int64_t>& indices,
                        const LookupOptions& options = {}) {
    absl::StatusOr<FloatTensor> sharded =
        cluster_->Lookup(table, indices, options);
    absl::StatusOr<FloatTensor> single =
        single_->Lookup(table, indices, options);
    ASSERT_TRUE(sharded.ok()) << sharded.status();
    ASSERT_TRUE(single.ok()) << single.status();
    EXPECT_EQ(sharded->shape, single->shape);
    EXPECT_EQ(sharded->data, single->data);
  }

  // PushBagGradients on both sides: both succeed and update as many rows;
  // returns that count (-1 when a push failed).
  int64_t PushBagsOnBoth(const std::string& table, const Bags& bags,
                         const std::vector<float>& grad,
                         const std::vector<int64_t>& max_indices = {}) {
    absl::StatusOr<PushGradientsResult> sharded =
        cluster_->PushBagGradients(table, bags, grad, max_indices);
    absl::StatusOr<PushGradientsResult> single =
        single_->PushBagGradients(table, bags, grad, max_indices);
    EXPECT_TRUE(sharded.ok()) << sharded.status();
    EXPECT_TRUE(single.ok()) << single.status();
    if (!sharded.ok() || !single.ok()) return -1;
    EXPECT_EQ(sharded->rows_updated, single->rows_updated);
    return single->rows_updated;
  }

  std::vector<std::unique_ptr<Server>> shards_;
  std::vector<std::string> addresses_;
  std::unique_ptr<Server> whole_;
  std::unique_ptr<ShardedEmbeddingClient> cluster_;
  std::unique_ptr<EmbeddingClient> single_;
};

TEST_F(ShardedClientTest, LookupsOfEveryShapeAndDTypeEqualOneServer) {
  CreateBoth(Spec("t"));
  ExpectSameLookup("t", {5, 0, 39, 5, 1, 2, 2, 17});
  LookupOptions matrix;
  matrix.shape = {2, 3};
  ExpectSameLookup("t", {1, 2, 3, 4, 5, 1}, matrix);
  LookupOptions cube;
  cube.shape = {2, 2, 2};
  cube.dtype = v1::DTYPE_FLOAT16;
  ExpectSameLookup("t", {9, 8, 7, 6, 5, 4, 3, 9}, cube);
  LookupOptions bfloat;
  bfloat.dtype = v1::DTYPE_BFLOAT16;
  ExpectSameLookup("t", {30, 31, 32, 33}, bfloat);
}

TEST_F(ShardedClientTest, MaxNormRenormsTheSameRowsAsOneServer) {
  v1::TableSpec spec = Spec("norm");
  spec.set_max_norm(1.5f);
  CreateBoth(spec);
  ExpectSameLookup("norm", {3, 4, 3, 11, 25});
  ExpectSameLookup("norm", {3, 4, 5, 6});
  ExpectSameTable("norm");
}

TEST_F(ShardedClientTest, BagsOfEveryModeSpanningShardsEqualOneServer) {
  v1::TableSpec spec = Spec("bags");
  spec.set_padding_idx(4);
  spec.set_max_norm(2.0f);
  CreateBoth(spec);
  // Bags spanning shards, a repeated row, the padding row, an empty bag.
  const std::vector<int64_t> indices = {0, 1, 2, 4, 7, 7, 13, 4, 22, 38, 39};
  const std::vector<int64_t> offsets = {0, 3, 3, 6, 8, 11};
  const std::vector<float> weights = Values(indices.size(), 0.5f);
  for (v1::BagMode mode :
       {v1::BAG_MODE_SUM, v1::BAG_MODE_MEAN, v1::BAG_MODE_MAX}) {
    for (bool include_last_offset : {false, true}) {
      for (v1::DType dtype : {v1::DTYPE_FLOAT32, v1::DTYPE_FLOAT16}) {
        SCOPED_TRACE(absl::StrCat("mode ", mode, " include_last_offset ",
                                  include_last_offset, " dtype ", dtype));
        Bags bags;
        bags.indices = indices;
        bags.offsets = offsets;
        bags.mode = mode;
        bags.include_last_offset = include_last_offset;
        if (mode == v1::BAG_MODE_SUM) bags.per_sample_weights = weights;
        absl::StatusOr<BagLookupResult> sharded =
            cluster_->LookupBag("bags", bags, dtype);
        absl::StatusOr<BagLookupResult> single =
            single_->LookupBag("bags", bags, dtype);
        ASSERT_TRUE(sharded.ok()) << sharded.status();
        ASSERT_TRUE(single.ok()) << single.status();
        EXPECT_EQ(sharded->embeddings.shape, single->embeddings.shape);
        EXPECT_EQ(sharded->embeddings.data, single->embeddings.data);
        EXPECT_EQ(sharded->max_indices, single->max_indices);
      }
    }
  }
  ExpectSameTable("bags");
}

std::vector<v1::Optimizer> EveryOptimizer() {
  std::vector<v1::Optimizer> optimizers(5);
  optimizers[0].mutable_sgd()->set_lr(0.1f);
  optimizers[1].mutable_adagrad()->set_lr(0.1f);
  optimizers[1].mutable_adagrad()->set_lr_decay(0.01f);
  optimizers[1].mutable_adagrad()->set_initial_accumulator_value(0.1f);
  optimizers[2].mutable_sparse_adam()->set_lr(0.05f);
  optimizers[3].mutable_rowwise_adagrad()->set_lr(0.1f);
  optimizers[4].mutable_ftrl()->set_lr(0.1f);
  optimizers[4].mutable_ftrl()->set_l1(0.01f);
  return optimizers;
}

TEST_F(ShardedClientTest, PushesWithEveryOptimizerEqualOneServer) {
  int table = 0;
  for (const v1::Optimizer& optimizer : EveryOptimizer()) {
    for (bool scale_grad_by_freq : {false, true}) {
      const std::string name = absl::StrCat("opt", table++);
      SCOPED_TRACE(name + " " + optimizer.ShortDebugString());
      v1::TableSpec spec = Spec(name);
      *spec.mutable_optimizer() = optimizer;
      spec.set_padding_idx(2);
      spec.set_scale_grad_by_freq(scale_grad_by_freq);
      CreateBoth(spec);
      // Step 2 touches shard 1 only: the others count the step all the same.
      const std::vector<std::vector<int64_t>> steps = {
          {0, 1, 2, 3, 0, 17, 39}, {4, 7, 4}, {5, 6, 7, 8, 38, 5}};
      for (size_t step = 0; step < steps.size(); ++step) {
        const std::vector<float> grad =
            Values(steps[step].size() * kDim, static_cast<float>(step));
        absl::StatusOr<PushGradientsResult> sharded =
            cluster_->PushGradients(name, steps[step], grad);
        absl::StatusOr<PushGradientsResult> single =
            single_->PushGradients(name, steps[step], grad);
        ASSERT_TRUE(sharded.ok()) << sharded.status();
        ASSERT_TRUE(single.ok()) << single.status();
        EXPECT_EQ(sharded->rows_updated, single->rows_updated);
      }
      ExpectSameTable(name);
      absl::StatusOr<v1::TableInfo> info = cluster_->GetTable(name);
      ASSERT_TRUE(info.ok()) << info.status();
      EXPECT_EQ(info->step(), 3);
      EXPECT_EQ(info->spec().shard_count(), kShards);
      EXPECT_EQ(info->local_rows(), kRows);
    }
  }
}

TEST_F(ShardedClientTest, BagPushesOfEveryModeEqualOneServer) {
  int table = 0;
  for (v1::BagMode mode :
       {v1::BAG_MODE_SUM, v1::BAG_MODE_MEAN, v1::BAG_MODE_MAX}) {
    const std::string name = absl::StrCat("bagpush", table++);
    v1::TableSpec spec = Spec(name);
    spec.set_padding_idx(4);
    spec.mutable_optimizer()->mutable_sparse_adam()->set_lr(0.05f);
    CreateBoth(spec);
    const std::vector<int64_t> indices = {0, 1, 2, 4, 7, 7, 13, 1, 22};
    const std::vector<int64_t> offsets = {0, 3, 3, 6};
    const std::vector<float> weights = Values(indices.size(), 1.5f);
    Bags bags;
    bags.indices = indices;
    bags.offsets = offsets;
    bags.mode = mode;
    if (mode == v1::BAG_MODE_SUM) bags.per_sample_weights = weights;
    for (int step = 0; step < 2; ++step) {
      const std::vector<float> grad =
          Values(offsets.size() * kDim, static_cast<float>(step) + 0.25f);
      std::vector<int64_t> max_indices;
      if (mode == v1::BAG_MODE_MAX) {
        absl::StatusOr<BagLookupResult> forward =
            single_->LookupBag(name, bags);
        ASSERT_TRUE(forward.ok()) << forward.status();
        max_indices = forward->max_indices;
      }
      PushBagsOnBoth(name, bags, grad, max_indices);
    }
    ExpectSameTable(name);
  }
}

// With include_last_offset, indices past the last offset are in no bag, but
// the server's scale_grad_by_freq counts a row over all of `indices` (as
// torch's backward counts over the indices tensor it gets): a row pooled
// once and repeated after the last bag gets half its gradient. The shards
// must count those indices too. (torch 1.13 itself cannot be the oracle
// here: its CPU backward reads past the bag gradients for such indices.)
TEST_F(ShardedClientTest,
       ScaleGradByFreqCountsIndicesPastTheLastBagAsOneServer) {
  int table = 0;
  for (const auto& [mode, weighted] :
       std::vector<std::pair<v1::BagMode, bool>>{{v1::BAG_MODE_SUM, false},
                                                 {v1::BAG_MODE_SUM, true},
                                                 {v1::BAG_MODE_MEAN, false}}) {
    const std::string name = absl::StrCat("freq", table++);
    SCOPED_TRACE(absl::StrCat(name, " mode ", mode, " weighted ", weighted));
    v1::TableSpec spec = Spec(name);
    spec.set_padding_idx(4);
    spec.set_scale_grad_by_freq(true);
    // SGD's step is in proportion to the gradient, so a wrong count shows
    // (Adagrad's would not: its steps do not change when every gradient of
    // a row is scaled alike).
    spec.mutable_optimizer()->mutable_sgd()->set_lr(0.5f);
    CreateBoth(spec);
    // Bags {0, 1}, {}, {8, 1, 14, 4} on all 3 shards; past the last bag,
    // rows 1 (twice) and 8 that are pooled, the padding row, and row 22
    // that no bag pools (it gets no gradient, so it is not updated).
    const std::vector<int64_t> indices = {0, 1, 8, 1, 14, 4, 1, 8, 4, 22, 1};
    const std::vector<int64_t> offsets = {0, 2, 2, 6};
    const std::vector<float> weights =
        weighted ? Values(indices.size(), 2.5f) : std::vector<float>{};
    const Bags bags{.indices = indices,
                    .offsets = offsets,
                    .mode = mode,
                    .per_sample_weights = weights,
                    .include_last_offset = true};
    for (int step = 0; step < 2; ++step) {
      const std::vector<float> grad =
          Values(3 * kDim, static_cast<float>(step) + 0.75f);
      EXPECT_EQ(PushBagsOnBoth(name, bags, grad), 4);  // 0, 1, 8 and 14.
    }
    ExpectSameTable(name);
  }
}

TEST_F(ShardedClientTest, ReadsAndWritesByIndexAndRangeEqualOneServer) {
  CreateBoth(Spec("rows"));
  const std::vector<int64_t> indices = {9, 3, 31, 4, 0};
  const std::vector<float> values = Values(indices.size() * kDim, 3.0f);
  ASSERT_TRUE(cluster_->WriteRows("rows", indices, values).ok());
  ASSERT_TRUE(single_->WriteRows("rows", indices, values).ok());
  const std::vector<float> range = Values(7 * kDim, 4.0f);
  absl::StatusOr<WriteResult> written =
      cluster_->WriteRowRange("rows", 20, kDim, range);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->rows_written, 7);
  ASSERT_TRUE(single_->WriteRowRange("rows", 20, kDim, range).ok());
  ExpectSameTable("rows");

  const std::vector<int64_t> read_indices = {31, 4, 4, 20, 26, 1};
  absl::StatusOr<ReadRowsResult> sharded =
      cluster_->ReadRows("rows", read_indices);
  absl::StatusOr<ReadRowsResult> single =
      single_->ReadRows("rows", read_indices);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ(sharded->indices, single->indices);
  EXPECT_EQ(sharded->values.data, single->values.data);

  for (auto [begin, end] :
       {std::pair<int64_t, int64_t>{5, 6}, {7, 25}, {38, 40}, {0, 2}}) {
    absl::StatusOr<ReadRowsResult> part =
        cluster_->ReadRowRange("rows", begin, end);
    absl::StatusOr<ReadRowsResult> whole =
        single_->ReadRowRange("rows", begin, end);
    ASSERT_TRUE(part.ok()) << part.status();
    ASSERT_TRUE(whole.ok()) << whole.status();
    EXPECT_EQ(part->indices, whole->indices);
    EXPECT_EQ(part->values.data, whole->values.data);
  }
}

TEST_F(ShardedClientTest, CreateWithWeightsSmallAndLargerThanAMessage) {
  CreateBoth(Spec("small"), Values(kRows * kDim, 5.0f));
  ExpectSameTable("small");
  // 1 MiB messages: 160000 rows of 32 bytes need several; each shard's
  // 53334 rows with their indices (43 bytes) need three writes.
  constexpr int64_t kBigRows = 160000;
  v1::TableSpec spec = Spec("big", kBigRows);
  spec.set_padding_idx(-2);
  const std::vector<float> weights = Values(kBigRows * kDim, 6.0f);
  CreateBoth(spec, weights);
  absl::StatusOr<v1::TableInfo> info = cluster_->GetTable("big");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->version(), 3 * kShards);  // One per write.
  ExpectSameTable("big");
  ExpectSameLookup("big", {0, 1, 2, kBigRows - 2, kBigRows - 1});
}

TEST_F(ShardedClientTest, ClientIndexErrorsNameTheCallersPosition) {
  CreateBoth(Spec("t"));
  const absl::Status status = cluster_->Lookup("t", {1, 2, 40}).status();
  EXPECT_EQ(status, single_->Lookup("t", {1, 2, 40}).status());
  EXPECT_EQ(status, absl::InvalidArgumentError(
                        "index 40 at position 2 is outside [0, 40)"));
}

TEST_F(ShardedClientTest, ThreadsShareOneClient) {
  constexpr int kThreads = 4;
  constexpr int kPushes = 10;
  // The first use of the table races in every thread (the cluster check).
  ASSERT_TRUE(cluster_->shard(0).CreateTable(Spec("t")).ok());
  ASSERT_TRUE(cluster_->shard(1).CreateTable(Spec("t")).ok());
  ASSERT_TRUE(cluster_->shard(2).CreateTable(Spec("t")).ok());
  std::vector<std::thread> threads;
  std::vector<absl::Status> failures(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPushes && failures[t].ok(); ++i) {
        failures[t] = cluster_->Lookup("t", {t, t + 1, 39 - t}).status();
        if (!failures[t].ok()) break;
        failures[t] = cluster_
                          ->PushGradients("t", {t, 20 + t},
                                          std::vector<float>(2 * kDim, 0.5f))
                          .status();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& failure : failures)
    EXPECT_TRUE(failure.ok()) << failure;
  // Every push reached every shard once: distinct sequences.
  for (int k = 0; k < kShards; ++k) {
    absl::StatusOr<v1::TableInfo> info = cluster_->shard(k).GetTable("t");
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->step(), kThreads * kPushes) << "shard " << k;
  }
}

TEST_F(ShardedClientTest, AStoppedShardFailsOnlyTheCallsThatNeedIt) {
  ASSERT_TRUE(cluster_->CreateTable(Spec("t")).ok());
  ASSERT_TRUE(cluster_->Lookup("t", {0, 1, 2}).ok());  // Checked and cached.
  shards_[1]->Shutdown(absl::ZeroDuration());
  shards_[1].reset();
  const absl::Status status = cluster_->Lookup("t", {0, 1}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(),
              HasSubstr(absl::StrCat("shard 1 (", addresses_[1], "): ")));
  // Rows of shards 0 and 2 only.
  absl::StatusOr<FloatTensor> others = cluster_->Lookup("t", {0, 2, 3, 5});
  ASSERT_TRUE(others.ok()) << others.status();
  EXPECT_THAT(others->shape, ElementsAre(4, kDim));
  // A push reaches every shard, so it needs shard 1 too.
  const absl::Status push =
      cluster_->PushGradients("t", {0}, std::vector<float>(kDim, 1.0f))
          .status();
  EXPECT_EQ(push.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(push.message(), HasSubstr(addresses_[1]));
}

// A client of `addresses` refuses its first call on table t with `message`.
void ExpectRefused(const std::vector<std::string>& addresses,
                   const std::string& message) {
  auto client = ShardedEmbeddingClient::Connect(addresses, TestClientOptions());
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->Lookup("t", {1}).status(),
            absl::FailedPreconditionError(message));
}

TEST_F(ShardedClientTest, AMismatchedClusterIsAFailedPreconditionNamingIt) {
  ASSERT_TRUE(cluster_->CreateTable(Spec("t")).ok());
  ExpectRefused({addresses_[1], addresses_[0], addresses_[2]},
                absl::StrCat("shard 0 (", addresses_[1],
                             "): reports shard_index 1 of shard_count 3, "
                             "expected 0 of 3"));
  ExpectRefused({addresses_[0], addresses_[1]},
                absl::StrCat("shard 0 (", addresses_[0],
                             "): reports shard_index 0 of shard_count 3, "
                             "expected 0 of 2"));
  ASSERT_TRUE(cluster_->DeleteTable("t").ok());
  for (int k = 0; k < kShards; ++k) {
    v1::TableSpec spec = Spec("t");
    if (k == 2) spec.set_seed(8);
    ASSERT_TRUE(cluster_->shard(k).CreateTable(spec).ok());
  }
  ExpectRefused(addresses_, absl::StrCat("shard 2 (", addresses_[2],
                                         "): table t differs from shard 0 in "
                                         "seed: 8 vs 7"));
}

TEST_F(ShardedClientTest, ACreateFailingOnOneShardLeavesNothingElsewhere) {
  v1::TableSpec other = Spec("t");
  other.set_embedding_dim(3);
  ASSERT_TRUE(cluster_->shard(1).CreateTable(other).ok());
  const absl::Status status = cluster_->CreateTable(Spec("t")).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(),
              HasSubstr(absl::StrCat("shard 1 (", addresses_[1], "): ")));
  EXPECT_EQ(cluster_->shard(0).GetTable("t").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(cluster_->shard(2).GetTable("t").status().code(),
            absl::StatusCode::kNotFound);
  // The table that was there before stays.
  absl::StatusOr<v1::TableInfo> kept = cluster_->shard(1).GetTable("t");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->spec().embedding_dim(), 3);
}

TEST_F(ShardedClientTest, BroadcastsMergeAndReportEveryShard) {
  ASSERT_TRUE(cluster_->CreateTable(Spec("a")).ok());
  ASSERT_TRUE(cluster_->CreateTable(Spec("b")).ok());
  absl::StatusOr<std::vector<v1::TableInfo>> tables = cluster_->ListTables();
  ASSERT_TRUE(tables.ok()) << tables.status();
  ASSERT_EQ(tables->size(), 2u);
  EXPECT_EQ((*tables)[0].spec().name(), "a");
  EXPECT_EQ((*tables)[1].local_rows(), kRows);
  v1::Optimizer adagrad;
  adagrad.mutable_adagrad()->set_lr(0.5f);
  EXPECT_EQ(cluster_->SetOptimizer("a", adagrad).status().code(),
            absl::StatusCode::kFailedPrecondition);
  v1::Optimizer sgd;
  sgd.mutable_sgd()->set_lr(0.5f);
  absl::StatusOr<v1::TableInfo> info = cluster_->SetOptimizer("a", sgd);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FLOAT_EQ(info->spec().optimizer().sgd().lr(), 0.5f);
  // No --checkpoint_dir on any shard: three failures in one status.
  const absl::Status saved = cluster_->SaveCheckpoint().status();
  EXPECT_EQ(saved.code(), absl::StatusCode::kFailedPrecondition);
  for (const std::string& address : addresses_) {
    EXPECT_THAT(saved.message(), HasSubstr(address));
  }
  ASSERT_TRUE(cluster_->shard(2).DeleteTable("b").ok());
  const absl::Status deleted = cluster_->DeleteTable("b");
  EXPECT_EQ(deleted.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(deleted.message(), HasSubstr(addresses_[2]));
  EXPECT_EQ(cluster_->shard(0).GetTable("b").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace embedding
