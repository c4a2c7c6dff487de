#include "server/core/embedding_table.h"

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;

TableSpec Spec(int64_t rows, int64_t dim) {
  TableSpec spec;
  spec.name = "t";
  spec.num_embeddings = rows;
  spec.embedding_dim = dim;
  spec.seed = 7;
  return spec;
}

std::unique_ptr<EmbeddingTable> MakeTable(TableSpec spec) {
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
      EmbeddingTable::Create(std::move(spec), {});
  EXPECT_TRUE(table.ok()) << table.status();
  return *std::move(table);
}

std::vector<float> ReadAll(EmbeddingTable& table) {
  std::vector<int64_t> rows =
      *table.HeldRows(0, table.Stats().spec.num_embeddings);
  std::vector<float> out(rows.size() * table.dim());
  EXPECT_TRUE(table.ReadRows(rows, out.data()).ok());
  return out;
}

TEST(EmbeddingTableTest, NonPositiveSizesAreInvalidArgument) {
  absl::Status status = EmbeddingTable::Create(Spec(-1, 4), {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "num_embeddings must be > 0, got -1");
  status = EmbeddingTable::Create(Spec(4, 0), {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "embedding_dim must be > 0, got 0");
}

TEST(EmbeddingTableTest, BadInitialWeightsAreInvalidArgument) {
  absl::Status status = EmbeddingTable::Create(Spec(2, 2), {1, 2, 3}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("initial_weights has 3 elements"));
  const float inf = std::numeric_limits<float>::infinity();
  status = EmbeddingTable::Create(Spec(2, 2), {1, 2, 3, inf}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("non-finite value (inf) at row 1"));
}

TEST(EmbeddingTableTest, SizeOverflowIsInvalidArgument) {
  TableSpec spec = Spec(int64_t{1} << 40, int64_t{1} << 30);
  absl::StatusOr<int64_t> bytes = EmbeddingTable::MemoryBytes(spec);
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bytes.status().message(), HasSubstr("overflow"));
}

TEST(EmbeddingTableTest, NegativePaddingIdxCountsFromTheEndAndStartsAtZero) {
  TableSpec spec = Spec(5, 3);
  spec.padding_idx = -2;
  auto table = MakeTable(spec);
  EXPECT_EQ(table->Stats().spec.padding_idx, 3);
  std::vector<float> row(3);
  ASSERT_TRUE(table->Lookup({3}, DType::kFloat32, row.data()).ok());
  EXPECT_THAT(row, ::testing::Each(0.0f));
}

TEST(EmbeddingTableTest, InitialisationDoesNotDependOnSharding) {
  auto whole = MakeTable(Spec(11, 4));
  const std::vector<float> expected = ReadAll(*whole);
  for (int32_t shard = 0; shard < 3; ++shard) {
    TableSpec spec = Spec(11, 4);
    spec.shard_index = shard;
    spec.shard_count = 3;
    auto part = MakeTable(spec);
    std::vector<int64_t> rows = *part->HeldRows(0, 11);
    std::vector<float> got(rows.size() * 4);
    ASSERT_TRUE(part->ReadRows(rows, got.data()).ok());
    for (size_t i = 0; i < rows.size(); ++i) {
      for (int d = 0; d < 4; ++d) {
        EXPECT_EQ(got[i * 4 + d], expected[rows[i] * 4 + d]);
      }
    }
  }
}

TEST(EmbeddingTableTest, DifferentSeedsGiveDifferentRows) {
  TableSpec other = Spec(8, 4);
  other.seed = 8;
  EXPECT_NE(ReadAll(*MakeTable(Spec(8, 4))), ReadAll(*MakeTable(other)));
  EXPECT_EQ(ReadAll(*MakeTable(Spec(8, 4))), ReadAll(*MakeTable(Spec(8, 4))));
}

TEST(EmbeddingTableTest, LookupOutOfRangeIndexNamesIndexAndPosition) {
  auto table = MakeTable(Spec(10, 2));
  std::vector<float> out(6);
  absl::Status status = table->Lookup({1, 2, 10}, DType::kFloat32, out.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("index 10 at position 2"));
  status = table->Lookup({-1}, DType::kFloat32, out.data());
  EXPECT_THAT(status.message(), HasSubstr("index -1 at position 0"));
}

TEST(EmbeddingTableTest, IndexOfAnotherShardIsInvalidArgument) {
  TableSpec spec = Spec(10, 2);
  spec.shard_index = 1;
  spec.shard_count = 2;
  auto table = MakeTable(spec);
  std::vector<float> out(2);
  EXPECT_TRUE(table->Lookup({3}, DType::kFloat32, out.data()).ok());
  absl::Status status = table->Lookup({4}, DType::kFloat32, out.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("belongs to shard 0"));
}

TEST(EmbeddingTableTest, SgdPushSumsDuplicatesAndSkipsPadding) {
  TableSpec spec = Spec(4, 2);
  spec.padding_idx = 0;
  spec.initializer = {InitializerSpec::Kind::kConstant, 1.0f, 0.0f};
  spec.optimizer.lr = 0.5f;
  auto table = MakeTable(spec);
  absl::StatusOr<PushResult> result =
      table->PushGradients({1, 1, 0, 2}, {1, 2, 3, 4, 5, 6, 7, 8}, {});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->rows_updated, 2);
  EXPECT_EQ(result->version, 1);
  EXPECT_EQ(ReadAll(*table),
            (std::vector<float>{0, 0, 1 - 0.5f * 4, 1 - 0.5f * 6, 1 - 0.5f * 7,
                                1 - 0.5f * 8, 1, 1}));
}

TEST(EmbeddingTableTest, ScaleGradByFreqDividesByCount) {
  TableSpec spec = Spec(3, 1);
  spec.scale_grad_by_freq = true;
  spec.initializer = {InitializerSpec::Kind::kConstant, 0.0f, 0.0f};
  spec.optimizer.lr = 1.0f;
  auto table = MakeTable(spec);
  ASSERT_TRUE(table->PushGradients({2, 2, 2, 1}, {3, 3, 6, 5}, {}).ok());
  EXPECT_EQ(ReadAll(*table), (std::vector<float>{0, -5, -4}));
}

TEST(EmbeddingTableTest, RejectedPushChangesNothing) {
  auto table = MakeTable(Spec(4, 2));
  const std::vector<float> before = ReadAll(*table);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  absl::Status status =
      table->PushGradients({1, 2}, {1, 1, nan, 1}, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("non-finite"));
  status = table->PushGradients({1, 4}, {1, 1, 1, 1}, {}).status();
  EXPECT_THAT(status.message(), HasSubstr("index 4 at position 1"));
  status = table->PushGradients({1, 2}, {1, 1, 1}, {}).status();
  EXPECT_THAT(status.message(), HasSubstr("expected [2, 2]"));
  EXPECT_EQ(ReadAll(*table), before);
  EXPECT_EQ(table->Stats().version, 0);
  EXPECT_EQ(table->Stats().step, 0);
}

TEST(EmbeddingTableTest, MaxNormRenormsLookedUpRowsInPlace) {
  TableSpec spec = Spec(2, 2);
  spec.max_norm = 1.0f;
  auto table = MakeTable(spec);
  ASSERT_TRUE(table->WriteRows({0, 1}, {3, 4, 0.3f, 0.4f}).ok());
  std::vector<float> out(2);
  ASSERT_TRUE(table->Lookup({0}, DType::kFloat32, out.data()).ok());
  const float scale = static_cast<float>(1.0 / (5.0 + 1e-7));
  EXPECT_EQ(out, (std::vector<float>{3 * scale, 4 * scale}));
  EXPECT_EQ(ReadAll(*table),
            (std::vector<float>{3 * scale, 4 * scale, 0.3f, 0.4f}));
}

TEST(EmbeddingTableTest, MaxBagWithScaleGradByFreqIsInvalidArgument) {
  TableSpec spec = Spec(4, 2);
  spec.scale_grad_by_freq = true;
  auto table = MakeTable(spec);
  const std::vector<int64_t> indices = {1, 2}, offsets = {0};
  absl::StatusOr<ValidatedBagBatch> batch =
      ValidateBagBatch({indices, offsets, BagMode::kMax});
  ASSERT_TRUE(batch.ok());
  std::vector<float> out(2);
  std::vector<int64_t> max_indices(2);
  constexpr char kMessage[] =
      "mode MAX does not support scale_grad_by_freq (torch refuses it too)";
  absl::Status status =
      table->LookupBag(*batch, DType::kFloat32, out.data(), max_indices.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), kMessage);
  status = table->PushBagGradients(*batch, {1, 1}, {1, 2}, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), kMessage);
  EXPECT_EQ(table->Stats().step, 0);
}

TEST(EmbeddingTableTest, BagIndexOutOfRangeChangesNothing) {
  auto table = MakeTable(Spec(4, 2));
  const std::vector<float> before = ReadAll(*table);
  const std::vector<int64_t> indices = {1, 4}, offsets = {0};
  absl::StatusOr<ValidatedBagBatch> batch =
      ValidateBagBatch({indices, offsets, BagMode::kSum});
  ASSERT_TRUE(batch.ok());
  std::vector<float> out(2);
  absl::Status status =
      table->LookupBag(*batch, DType::kFloat32, out.data(), nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "index 4 at position 1 is outside [0, 4)");
  status = table->PushBagGradients(*batch, {1, 1}, {}, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "index 4 at position 1 is outside [0, 4)");
  const std::vector<int64_t> in_range = {1, 3};
  absl::StatusOr<ValidatedBagBatch> good =
      ValidateBagBatch({in_range, offsets, BagMode::kSum});
  ASSERT_TRUE(good.ok());
  status = table->PushBagGradients(*good, {1, 1, 1}, {}, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "grad has 3 elements, expected [1, 2] = 2");
  EXPECT_EQ(ReadAll(*table), before);
  EXPECT_EQ(table->Stats().step, 0);
}

TEST(EmbeddingTableTest, BagPushOnAShardUsesGlobalRows) {
  TableSpec spec = Spec(6, 1);
  spec.shard_index = 1;
  spec.shard_count = 2;
  spec.initializer = {InitializerSpec::Kind::kConstant, 0.0f, 0.0f};
  spec.optimizer.lr = 1.0f;
  auto table = MakeTable(spec);
  const std::vector<int64_t> indices = {5, 1, 5}, offsets = {0, 1};
  absl::StatusOr<ValidatedBagBatch> batch =
      ValidateBagBatch({indices, offsets, BagMode::kSum});
  ASSERT_TRUE(batch.ok());
  ASSERT_TRUE(table->PushBagGradients(*batch, {1, 2}, {}, {}).ok());
  // Rows 1, 3, 5 live here: 1 gets 2, 5 gets 1 + 2.
  EXPECT_EQ(ReadAll(*table), (std::vector<float>{-2, 0, -3}));
  std::vector<float> out(2);
  ASSERT_TRUE(
      table->LookupBag(*batch, DType::kFloat32, out.data(), nullptr).ok());
  EXPECT_EQ(out, (std::vector<float>{-3, -5}));
}

TEST(EmbeddingTableTest, RetriedPushIsAppliedOnce) {
  TableSpec spec = Spec(2, 1);
  spec.initializer = {InitializerSpec::Kind::kConstant, 0.0f, 0.0f};
  spec.optimizer.lr = 1.0f;
  auto table = MakeTable(spec);
  PushOptions options{.client_id = "trainer-1", .sequence = 1};
  ASSERT_FALSE(table->PushGradients({0}, {1}, options)->duplicate);
  absl::StatusOr<PushResult> retry = table->PushGradients({0}, {1}, options);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(ReadAll(*table), (std::vector<float>{-1, 0}));
}

TEST(EmbeddingTableTest, WriteRowsTwiceInOneRequestIsInvalidArgument) {
  auto table = MakeTable(Spec(3, 1));
  const std::vector<float> before = ReadAll(*table);
  absl::Status status = table->WriteRows({1, 1}, {1, 2}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("written twice"));
  EXPECT_EQ(ReadAll(*table), before);
}

TEST(EmbeddingTableTest, SetOptimizerOfAnotherKindIsFailedPrecondition) {
  auto table = MakeTable(Spec(3, 1));
  OptimizerSpec adagrad = DefaultOptimizerSpec(OptimizerSpec::Kind::kAdagrad);
  absl::Status status = table->SetOptimizer(adagrad);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            "table \"t\" uses sgd; its optimizer cannot change to adagrad");
  OptimizerSpec sgd = DefaultOptimizerSpec(OptimizerSpec::Kind::kSgd);
  sgd.lr = 0.5f;
  ASSERT_TRUE(table->SetOptimizer(sgd).ok());
  EXPECT_EQ(table->Stats().spec.optimizer.lr, 0.5f);
  sgd.lr = -1;
  status = table->SetOptimizer(sgd);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("sgd lr must be"));
  EXPECT_EQ(table->Stats().spec.optimizer.lr, 0.5f);
}

TEST(EmbeddingTableTest, MemoryBytesCountsOptimizerState) {
  TableSpec spec = Spec(10, 8);
  EXPECT_EQ(*EmbeddingTable::MemoryBytes(spec), 10 * 8 * 4);
  spec.optimizer.kind = OptimizerSpec::Kind::kAdagrad;
  EXPECT_EQ(*EmbeddingTable::MemoryBytes(spec), 10 * 16 * 4);
  spec.optimizer.kind = OptimizerSpec::Kind::kRowwiseAdagrad;
  EXPECT_EQ(*EmbeddingTable::MemoryBytes(spec), 10 * 9 * 4);
}

}  // namespace
}  // namespace embedding
