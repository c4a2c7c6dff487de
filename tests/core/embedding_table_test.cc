#include "server/core/embedding_table.h"

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/cancellation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::embedding::testing::CancelAfter;
using ::embedding::testing::MakeTable;
using ::testing::HasSubstr;

constexpr int64_t kBlock = kRowsBetweenCancelChecks;

TableSpec Spec(int64_t rows, int64_t dim) {
  TableSpec spec;
  spec.name = "t";
  spec.num_embeddings = rows;
  spec.embedding_dim = dim;
  spec.seed = 7;
  return spec;
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
  TableSpec spec = Spec(int64_t{1} << 50, int64_t{1} << 16);
  absl::StatusOr<int64_t> bytes = EmbeddingTable::MemoryBytes(spec);
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bytes.status().message(),
            "table of 1125899906842624 x 65536 with sgd state overflows "
            "64-bit size arithmetic");
  spec = Spec(10, int64_t{1} << 30);
  bytes = EmbeddingTable::MemoryBytes(spec);
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bytes.status().message(),
            "cannot size a table of embedding_dim 1073741824 (1 to 65536) on "
            "shard 0 of 1");
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

// Issue 10: start_row + rows overflowed in the error message (UBSan).
TEST(EmbeddingTableTest, WriteRowRangeFarOutsideIsInvalidArgument) {
  auto table = MakeTable(Spec(10, 2));
  const std::vector<float> before = ReadAll(*table);
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  for (int64_t start : {kMax - 1, kMax, int64_t{9}, int64_t{-1},
                        std::numeric_limits<int64_t>::min()}) {
    SCOPED_TRACE(start);
    const absl::Status status =
        table->WriteRowRange(start, {1, 2, 3, 4}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), absl::StrCat("2 rows from row ", start,
                                             " are not within [0, 10)"));
  }
  EXPECT_EQ(ReadAll(*table), before);
}

// Issue 10: size guards relied on signed wrap-around; every combination of
// extreme sizes gives a status, never undefined behaviour.
TEST(EmbeddingTableTest, MemoryBytesOfExtremeSpecsNeverOverflows) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  for (const OptimizerInfo& optimizer : AllOptimizers()) {
    for (int32_t shards : {1, 2, 3, 4, 7, 8, 1 << 30}) {
      for (int64_t rows : {kMax, kMax - 1, kMax / 2, int64_t{1} << 40}) {
        for (int64_t dim : {int64_t{1}, int64_t{3}, int64_t{65536}}) {
          TableSpec spec = Spec(rows, dim);
          spec.optimizer = DefaultOptimizerSpec(optimizer.kind);
          spec.shard_count = shards;
          spec.shard_index = shards - 1;
          const absl::StatusOr<int64_t> bytes =
              EmbeddingTable::MemoryBytes(spec);
          if (bytes.ok()) {
            EXPECT_GT(*bytes, 0);
          } else {
            EXPECT_EQ(bytes.status().code(),
                      absl::StatusCode::kInvalidArgument);
          }
        }
      }
    }
  }
}

TEST(EmbeddingTableTest, TableTooLargeToAllocateIsResourceExhausted) {
  TableSpec spec = Spec(std::numeric_limits<int64_t>::max(), 1);
  spec.shard_count = 8;
  const absl::Status status = EmbeddingTable::Create(spec, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
}

// Issue 10, defect 9: a range read built every row id at once.
TEST(EmbeddingTableTest, HeldRowsComeInChunksOfAtMostMaxRows) {
  TableSpec spec = Spec(20, 1);
  spec.shard_index = 1;
  spec.shard_count = 3;
  auto table = MakeTable(spec);
  // Rows 1, 4, ..., 19 live here; read [2, 20) three at a time.
  std::vector<int64_t> all;
  int64_t start = 2;
  while (true) {
    absl::StatusOr<std::vector<int64_t>> chunk = table->HeldRows(start, 20, 3);
    ASSERT_TRUE(chunk.ok()) << chunk.status();
    EXPECT_LE(chunk->size(), 3u);
    if (chunk->empty()) break;
    all.insert(all.end(), chunk->begin(), chunk->end());
    start = chunk->back() + 1;
  }
  EXPECT_EQ(all, (std::vector<int64_t>{4, 7, 10, 13, 16, 19}));
  EXPECT_EQ(*table->HeldRows(2, 20), all);
  EXPECT_EQ(*table->HeldRows(20, 20, 5), std::vector<int64_t>{});
  EXPECT_EQ(*table->HeldRows(2, 4, 5), std::vector<int64_t>{});
  EXPECT_EQ(*table->HeldRows(0, 20, 1), std::vector<int64_t>{1});
}

TEST(EmbeddingTableTest, BadHeldRowsRangeIsInvalidArgument) {
  auto table = MakeTable(Spec(10, 1));
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  for (auto [start, end] : {std::pair<int64_t, int64_t>{-1, 5},
                            {5, 4},
                            {0, 11},
                            {kMax, kMax},
                            {std::numeric_limits<int64_t>::min(), 0}}) {
    const absl::Status status = table->HeldRows(start, end, 4).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), absl::StrCat("row range [", start, ", ", end,
                                             ") is not within [0, 10]"));
  }
  const absl::Status status = table->HeldRows(0, 10, 0).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "max_rows must be >= 1, got 0");
}

// Issue 10, defect 4: a thread kept the scratch of its largest push.
TEST(EmbeddingTableTest, LargePushLeavesAtMostTheCapOfScratch) {
  constexpr int64_t kRows = 1 << 18, kDim = 4;
  auto table = MakeTable(Spec(kRows, kDim));
  std::vector<int64_t> indices(kRows);
  for (int64_t i = 0; i < kRows; ++i) indices[i] = i;
  const std::vector<float> grad(kRows * kDim, 1e-3f);
  ASSERT_TRUE(table->PushGradients(indices, grad, {}).ok());
  EXPECT_LE(GradientAccumulator::RetainedBytesOnThisThread(),
            GradientAccumulator::kMaxRetainedBytes);
  // A small push keeps its scratch for the next one.
  ASSERT_TRUE(table->PushGradients({1, 2}, std::vector<float>(8, 1), {}).ok());
  EXPECT_GT(GradientAccumulator::RetainedBytesOnThisThread(), 0);
  EXPECT_LE(GradientAccumulator::RetainedBytesOnThisThread(),
            GradientAccumulator::kMaxRetainedBytes);
}

TEST(EmbeddingTableTest, PushScratchBytesGrowsWithIndicesAndDim) {
  EXPECT_EQ(PushScratchBytes(0, 8), 64 + 64 + 4096);
  EXPECT_EQ(PushScratchBytes(1000, 8), 48 * 1000 + 4 * 1000 * 8 + 4224);
  EXPECT_EQ(PushScratchBytes(int64_t{1} << 22, 1),
            52 * (int64_t{1} << 22) + 4224);
  EXPECT_EQ(PushScratchBytes(std::numeric_limits<int64_t>::max(), 8),
            std::numeric_limits<int64_t>::max());
}

TEST(EmbeddingTableTest, PushWithALongClientIdIsRefusedBeforeAnything) {
  auto table = MakeTable(Spec(4, 1));
  const std::vector<float> before = ReadAll(*table);
  const absl::Status status =
      table
          ->PushGradients({1}, {1},
                          {.client_id = std::string(257, 'c'), .sequence = 1})
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "client_id \"" + std::string(64, 'c') +
                                  "\"... (257 bytes) is longer than 256 bytes");
  EXPECT_EQ(ReadAll(*table), before);
  EXPECT_EQ(table->Stats().version, 0);
}

// Issue 10, defect 8: long operations ask their Cancellation every block of
// rows. CancelAfter(n) says "cancelled" from its (n + 1)-th check.
TEST(EmbeddingTableTest, CancelledLookupsAndReadsStopAtABlock) {
  auto table = MakeTable(Spec(3 * kBlock, 2));
  std::vector<int64_t> indices(3 * kBlock);
  for (int64_t i = 0; i < 3 * kBlock; ++i) indices[i] = i;
  std::vector<float> out(indices.size() * 2);
  const std::vector<int64_t> offsets = {0};
  const ValidatedBagBatch bag =
      *ValidateBagBatch({indices, offsets, BagMode::kSum});
  const std::vector<std::function<absl::Status(const Cancellation&)>> reads = {
      [&](const Cancellation& cancel) {
        return table->Lookup(indices, DType::kFloat32, out.data(), cancel);
      },
      [&](const Cancellation& cancel) {
        return table->ReadRows(indices, out.data(), cancel);
      },
      [&](const Cancellation& cancel) {
        return table->LookupBag(bag, DType::kFloat32, out.data(), nullptr,
                                cancel);
      }};
  for (size_t r = 0; r < reads.size(); ++r) {
    SCOPED_TRACE(r);
    // Three blocks: three checks.
    CancelAfter third(2);
    EXPECT_EQ(reads[r](third), absl::UnavailableError("cancelled by the test"));
    EXPECT_EQ(third.calls(), 3);
    CancelAfter never(3);
    EXPECT_TRUE(reads[r](never).ok());
    EXPECT_EQ(never.calls(), 3);
  }
}

TEST(EmbeddingTableTest, CancelledPushesChangeNothingAndClaimNothing) {
  TableSpec spec = Spec(3 * kBlock, 1);
  spec.optimizer = DefaultOptimizerSpec(OptimizerKind::kAdagrad);
  auto table = MakeTable(spec);
  const std::vector<float> before = ReadAll(*table);
  std::vector<int64_t> indices(3 * kBlock);
  for (int64_t i = 0; i < 3 * kBlock; ++i) indices[i] = i;
  const std::vector<float> grad(indices.size(), 1.0f);
  const std::vector<int64_t> offsets = {0, kBlock};
  const ValidatedBagBatch bag =
      *ValidateBagBatch({indices, offsets, BagMode::kSum});
  const PushOptions options{.client_id = "c", .sequence = 1};
  const std::vector<
      std::function<absl::StatusOr<PushResult>(const Cancellation&)>>
      pushes = {
          [&](const Cancellation& cancel) {
            return table->PushGradients(indices, grad, options, cancel);
          },
          [&](const Cancellation& cancel) {
            return table->PushBagGradients(bag, {1, 1}, {}, options, cancel);
          }};
  for (size_t p = 0; p < pushes.size(); ++p) {
    SCOPED_TRACE(p);
    // While summing the gradient (three blocks), and just before applying.
    for (int64_t checks : {0, 1, 2, 3}) {
      CancelAfter cancel(checks);
      EXPECT_EQ(pushes[p](cancel).status(),
                absl::UnavailableError("cancelled by the test"));
      EXPECT_EQ(cancel.calls(), checks + 1);
    }
    EXPECT_EQ(ReadAll(*table), before);
    EXPECT_EQ(table->Stats().version, 0);
    EXPECT_EQ(table->Stats().step, 0);
  }
  // Not claimed either: the same (client, sequence) is new.
  CancelAfter never(4);
  absl::StatusOr<PushResult> pushed = pushes[0](never);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_FALSE(pushed->duplicate);
  EXPECT_EQ(pushed->rows_updated, 3 * kBlock);
}

TEST(EmbeddingTableTest, CancelledWritesChangeNothing) {
  auto table = MakeTable(Spec(3 * kBlock, 1));
  const std::vector<float> before = ReadAll(*table);
  std::vector<int64_t> indices(3 * kBlock);
  for (int64_t i = 0; i < 3 * kBlock; ++i) indices[i] = i;
  const std::vector<float> values(indices.size(), 5.0f);
  for (int64_t checks : {0, 2, 3}) {
    CancelAfter cancel(checks);
    EXPECT_EQ(table->WriteRows(indices, values, cancel).status(),
              absl::UnavailableError("cancelled by the test"));
    EXPECT_EQ(cancel.calls(), checks + 1);
  }
  CancelAfter at_once(0);
  EXPECT_EQ(table->WriteRowRange(0, values, at_once).status(),
            absl::UnavailableError("cancelled by the test"));
  EXPECT_EQ(ReadAll(*table), before);
  EXPECT_EQ(table->Stats().version, 0);
  CancelAfter never(1);
  EXPECT_TRUE(table->WriteRowRange(0, values, never).ok());
  EXPECT_EQ(ReadAll(*table), values);
}

TEST(EmbeddingTableTest, CancelledCreateStopsAtABlockOfRows) {
  TableSpec spec = Spec(3 * kBlock, 2);
  spec.optimizer = DefaultOptimizerSpec(OptimizerKind::kAdagrad);
  // Three blocks of weights, then three of optimizer state.
  for (int64_t checks : {0, 2, 4}) {
    CancelAfter cancel(checks);
    EXPECT_EQ(EmbeddingTable::Create(spec, {}, cancel).status(),
              absl::UnavailableError("cancelled by the test"));
    EXPECT_EQ(cancel.calls(), checks + 1);
  }
  CancelAfter never(6);
  EXPECT_TRUE(EmbeddingTable::Create(spec, {}, never).ok());
  EXPECT_EQ(never.calls(), 6);
}

}  // namespace
}  // namespace embedding
