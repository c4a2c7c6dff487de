// nn.EmbeddingBag on a dynamic table alone (no server): bags pool the rows
// lookups read (absent ids: the initializer's values, counted as absent;
// the padding id, which may be -1, skipped), MAX marks empty bags with
// INT64_MIN (-1 is an id here), bag pushes admit ids as pushes do, and on
// ids [0, N) a dynamic table's bags equal a dense table's of the same seed.
// The comparison with torch is tests/conformance/test_bags_dynamic.py.
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/bag_math.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/embedding_table.h"
#include "server/core/initializer.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::embedding::testing::MakeTable;
using ::testing::Each;
using ::testing::HasSubstr;

constexpr int64_t kDim = 3;
constexpr int64_t kNoRow = std::numeric_limits<int64_t>::min();
constexpr int64_t kBigId = 1000000000000;  // 10**12

TableSpec DynamicTableSpec(uint32_t admit_after = 1) {
  TableSpec spec;
  spec.name = "d";
  spec.embedding_dim = kDim;
  spec.seed = 11;
  spec.optimizer.lr = 0.5f;
  spec.dynamic = DynamicSpec{.capacity = 64, .admit_after = admit_after};
  return spec;
}

std::vector<float> Initial(const TableSpec& spec, int64_t id) {
  std::vector<float> row(kDim);
  FillRow(spec.initializer, spec.seed, id, kDim, row.data());
  return row;
}

ValidatedBagBatch Batch(const std::vector<int64_t>& indices,
                        const std::vector<int64_t>& offsets, BagMode mode) {
  absl::StatusOr<ValidatedBagBatch> batch =
      ValidateBagBatch({.indices = indices, .offsets = offsets, .mode = mode});
  EXPECT_TRUE(batch.ok()) << batch.status();
  return *batch;
}

struct Pooled {
  std::vector<float> rows;
  std::vector<int64_t> max_indices;
};

Pooled LookupBag(EmbeddingTable& table, const ValidatedBagBatch& batch) {
  Pooled pooled{std::vector<float>(batch.bags() * kDim),
                std::vector<int64_t>(batch.bags() * kDim, 42)};
  const absl::Status status = table.LookupBag(
      batch, DType::kFloat32, pooled.rows.data(),
      batch.mode() == BagMode::kMax ? pooled.max_indices.data() : nullptr);
  EXPECT_TRUE(status.ok()) << status;
  return pooled;
}

std::vector<float> Lookup(EmbeddingTable& table,
                          const std::vector<int64_t>& ids) {
  std::vector<float> out(ids.size() * kDim);
  EXPECT_TRUE(table.ReadRows(ids, out.data()).ok());
  return out;
}

DynamicCounts Counts(EmbeddingTable& table) {
  return table.Stats().dynamic.value_or(DynamicCounts{});
}

TEST(DynamicBagTest, AbsentIdsPoolTheInitializerAndCountAsAbsent) {
  const TableSpec spec = DynamicTableSpec();
  auto table = MakeTable(spec);
  const std::vector<int64_t> indices = {kBigId, -1, kBigId + 1, 5};
  const std::vector<int64_t> offsets = {0, 2};
  const Pooled sum = LookupBag(*table, Batch(indices, offsets, BagMode::kSum));
  const Pooled mean =
      LookupBag(*table, Batch(indices, offsets, BagMode::kMean));
  for (int64_t bag = 0; bag < 2; ++bag) {
    const std::vector<float> a = Initial(spec, indices[2 * bag]);
    const std::vector<float> b = Initial(spec, indices[2 * bag + 1]);
    for (int64_t d = 0; d < kDim; ++d) {
      EXPECT_EQ(sum.rows[bag * kDim + d], 0.0f + a[d] + b[d]);
      EXPECT_EQ(mean.rows[bag * kDim + d], (0.0f + a[d] + b[d]) / 2.0f);
    }
  }
  const DynamicCounts counts = Counts(*table);
  EXPECT_EQ(counts.absent_rows_looked_up, 8);
  EXPECT_EQ(counts.rows_held, 0);  // Serving never grows the table.
}

// MAX: an empty bag's elements are INT64_MIN, and -1 is an id that can win.
TEST(DynamicBagTest, MaxMarksEmptyBagsWithTheReservedId) {
  const TableSpec spec = DynamicTableSpec();
  auto table = MakeTable(spec);
  const std::vector<int64_t> indices = {-1};
  const std::vector<int64_t> offsets = {0, 0};  // Bag 0 empty, bag 1 {-1}.
  const ValidatedBagBatch batch = Batch(indices, offsets, BagMode::kMax);
  const Pooled pooled = LookupBag(*table, batch);
  EXPECT_EQ(pooled.max_indices,
            std::vector<int64_t>({kNoRow, kNoRow, kNoRow, -1, -1, -1}));
  EXPECT_THAT(
      std::vector<float>(pooled.rows.begin(), pooled.rows.begin() + kDim),
      Each(0.0f));
  EXPECT_EQ(std::vector<float>(pooled.rows.begin() + kDim, pooled.rows.end()),
            Initial(spec, -1));
  // Their gradient goes to -1 only; the empty bag's to no row.
  const std::vector<float> grad = {1, 1, 1, 2, 2, 2};
  absl::StatusOr<PushResult> pushed =
      table->PushBagGradients(batch, grad, pooled.max_indices, {});
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->rows_admitted, 1);
  std::vector<float> expected = Initial(spec, -1);
  for (float& value : expected) value -= 0.5f * 2.0f;
  EXPECT_EQ(Lookup(*table, {-1}), expected);
  EXPECT_EQ(Counts(*table).rows_held, 1);
}

// A dense client's -1 for an empty bag names a row not in the batch here.
TEST(DynamicBagTest, MinusOneAsEmptyBagMarkerIsInvalidArgument) {
  auto table = MakeTable(DynamicTableSpec());
  const std::vector<int64_t> indices = {4};
  const std::vector<int64_t> offsets = {0, 0};
  const ValidatedBagBatch batch = Batch(indices, offsets, BagMode::kMax);
  const std::vector<int64_t> dense_marker = {-1, -1, -1, 4, 4, 4};
  const absl::StatusOr<PushResult> pushed = table->PushBagGradients(
      batch, std::vector<float>(2 * kDim, 1.0f), dense_marker, {});
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(pushed.status().message(),
              HasSubstr("max_indices[0] = -1 is not one of the batch's"));
  EXPECT_EQ(Counts(*table).rows_held, 0);
  EXPECT_EQ(table->Stats().step, 0);
}

class DynamicBagPaddingTest : public ::testing::TestWithParam<int64_t> {};

// The padding id (any int64: -1 or a large one) is skipped, left out of
// MEAN's count, gets no gradient and no row.
TEST_P(DynamicBagPaddingTest, PaddingIdIsSkipped) {
  const int64_t padding = GetParam();
  TableSpec spec = DynamicTableSpec();
  spec.padding_idx = padding;
  auto table = MakeTable(spec);
  const std::vector<int64_t> indices = {padding, kBigId, padding, padding};
  const std::vector<int64_t> offsets = {0, 2};  // {pad, big}, {pad, pad}.
  for (const BagMode mode : {BagMode::kSum, BagMode::kMean, BagMode::kMax}) {
    const ValidatedBagBatch batch = Batch(indices, offsets, mode);
    const Pooled pooled = LookupBag(*table, batch);
    EXPECT_EQ(
        std::vector<float>(pooled.rows.begin(), pooled.rows.begin() + kDim),
        Lookup(*table, {kBigId}));
    EXPECT_THAT(
        std::vector<float>(pooled.rows.begin() + kDim, pooled.rows.end()),
        Each(0.0f));
    if (mode == BagMode::kMax) {
      EXPECT_EQ(pooled.max_indices,
                std::vector<int64_t>(
                    {kBigId, kBigId, kBigId, kNoRow, kNoRow, kNoRow}));
    }
    const absl::StatusOr<PushResult> pushed = table->PushBagGradients(
        batch, std::vector<float>(2 * kDim, 1.0f), pooled.max_indices, {});
    ASSERT_TRUE(pushed.ok()) << pushed.status();
    EXPECT_EQ(pushed->rows_updated, 1);
  }
  EXPECT_EQ(Counts(*table).rows_held, 1);  // kBigId only.
  EXPECT_THAT(Lookup(*table, {padding}), Each(0.0f));
  // Only kBigId was read absent (its first lookup), never the padding id.
  EXPECT_EQ(Counts(*table).absent_rows_looked_up, 1);
}

INSTANTIATE_TEST_SUITE_P(Ids, DynamicBagPaddingTest,
                         ::testing::Values(int64_t{-1}, int64_t{1} << 50));

TEST(DynamicBagTest, ReservedIdIsInvalidArgumentAndChangesNothing) {
  auto table = MakeTable(DynamicTableSpec());
  const std::vector<int64_t> indices = {3, kNoRow};
  const std::vector<int64_t> offsets = {0};
  const ValidatedBagBatch batch = Batch(indices, offsets, BagMode::kSum);
  std::vector<float> out(kDim);
  const absl::Status looked_up =
      table->LookupBag(batch, DType::kFloat32, out.data(), nullptr);
  EXPECT_EQ(looked_up.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(looked_up.message(), HasSubstr("index " + std::to_string(kNoRow) +
                                             " at position 1 is reserved"));
  const absl::StatusOr<PushResult> pushed =
      table->PushBagGradients(batch, std::vector<float>(kDim, 1.0f), {}, {});
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Counts(*table).rows_held, 0);
  EXPECT_EQ(Counts(*table).absent_rows_looked_up, 0);
  EXPECT_EQ(table->Stats().step, 0);
  EXPECT_EQ(table->Stats().version, 0);
}

// Bag pushes count toward admission as pushes do: with admit_after 2 the
// first drops the gradient, the second admits and steps.
TEST(DynamicBagTest, BagPushesAdmitIdsAfterAdmitAfterPushes) {
  const TableSpec spec = DynamicTableSpec(/*admit_after=*/2);
  auto table = MakeTable(spec);
  const std::vector<int64_t> indices = {kBigId, kBigId + 1};
  const std::vector<int64_t> offsets = {0};
  const ValidatedBagBatch batch = Batch(indices, offsets, BagMode::kSum);
  const std::vector<float> grad(kDim, 1.0f);
  absl::StatusOr<PushResult> first =
      table->PushBagGradients(batch, grad, {}, {});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->rows_dropped, 2);
  EXPECT_EQ(first->rows_admitted, 0);
  absl::StatusOr<PushResult> second =
      table->PushBagGradients(batch, grad, {}, {});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->rows_admitted, 2);
  std::vector<float> expected = Initial(spec, kBigId);
  for (float& value : expected) value -= 0.5f;
  EXPECT_EQ(Lookup(*table, {kBigId}), expected);
}

// Ids [0, N) of a dynamic table that admits at once are a dense table of
// the same seed: equal bags, max_indices and rows after bag pushes.
TEST(DynamicBagTest, BagsOnIdsBelowNMatchTheDenseTable) {
  TableSpec dense_spec = DynamicTableSpec();
  dense_spec.dynamic.reset();
  dense_spec.num_embeddings = 10;
  auto dense = MakeTable(dense_spec);
  auto dynamic = MakeTable(DynamicTableSpec());
  const std::vector<int64_t> indices = {1, 4, 4, 9, 0, 2, 7, 1};
  const std::vector<int64_t> offsets = {0, 3, 3, 5};
  std::vector<int64_t> all(10);
  for (int64_t i = 0; i < 10; ++i) all[i] = i;
  for (const BagMode mode : {BagMode::kSum, BagMode::kMean, BagMode::kMax}) {
    const ValidatedBagBatch batch = Batch(indices, offsets, mode);
    const Pooled want = LookupBag(*dense, batch);
    const Pooled got = LookupBag(*dynamic, batch);
    EXPECT_EQ(got.rows, want.rows);
    std::vector<float> grad(batch.bags() * kDim);
    for (size_t i = 0; i < grad.size(); ++i) grad[i] = 0.25f * (i % 7) - 0.5f;
    if (mode == BagMode::kMax) {
      // The empty bag (bag 1) is the only difference: its marker.
      std::vector<int64_t> expected = want.max_indices;
      for (int64_t d = 0; d < kDim; ++d) {
        ASSERT_EQ(expected[kDim + d], -1);
        expected[kDim + d] = kNoRow;
      }
      EXPECT_EQ(got.max_indices, expected);
    }
    ASSERT_TRUE(
        dense->PushBagGradients(batch, grad, want.max_indices, {}).ok());
    ASSERT_TRUE(
        dynamic->PushBagGradients(batch, grad, got.max_indices, {}).ok());
    EXPECT_EQ(Lookup(*dynamic, all), Lookup(*dense, all));
  }
}

}  // namespace
}  // namespace embedding
