// The engine's bag pooling into a reply and its backward into a
// GradientAccumulator, on hand-checkable rows; the batch's validation is
// tested with common/bag_math.h, the comparison with torch's embedding_bag
// is in tests/conformance.
#include "server/core/bag.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

constexpr int64_t kDim = 2;
constexpr int64_t kNoPadding = -1;

void ExpectInvalid(const absl::Status& status, const std::string& message) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(status.message(), message);
}

// Row r of the test table is {r, 10 - r}.
void ReadTestRow(int64_t index, const std::function<void(const float*)>& use) {
  const float row[kDim] = {static_cast<float>(index),
                           static_cast<float>(10 - index)};
  use(row);
}

struct Pooled {
  std::vector<float> out;
  std::vector<int64_t> max_indices;
};

Pooled Pool(const BagBatch& unchecked, int64_t padding_row = kNoPadding) {
  absl::StatusOr<ValidatedBagBatch> batch = ValidateBagBatch(unchecked);
  EXPECT_TRUE(batch.ok()) << batch.status();
  Pooled pooled{std::vector<float>(batch->bags() * kDim),
                std::vector<int64_t>(batch->bags() * kDim)};
  EXPECT_TRUE(PoolBags(*batch, kDim, padding_row, ReadTestRow, DType::kFloat32,
                       pooled.out.data(), pooled.max_indices.data())
                  .ok());
  return pooled;
}

// The summed gradient per row (row -> dim floats) after a scatter.
absl::StatusOr<std::map<int64_t, std::vector<float>>> Scatter(
    const BagBatch& unchecked, std::vector<float> grad,
    std::vector<int64_t> max_indices = {}, int64_t padding_row = kNoPadding) {
  absl::StatusOr<ValidatedBagBatch> batch = ValidateBagBatch(unchecked);
  EXPECT_TRUE(batch.ok()) << batch.status();
  GradientAccumulator& gradient = GradientAccumulator::ForThisThread(kDim, 4);
  absl::Status status = ScatterBagGradients(*batch, kDim, padding_row, grad,
                                            max_indices, gradient);
  if (!status.ok()) return status;
  std::map<int64_t, std::vector<float>> sums;
  for (size_t slot = 0; slot < gradient.size(); ++slot) {
    sums[gradient.row(slot)].assign(gradient.sum(slot),
                                    gradient.sum(slot) + kDim);
  }
  return sums;
}

TEST(BagTest, SumAppliesWeightsAndEmptyBagIsZeros) {
  const std::vector<int64_t> indices = {1, 2, 3}, offsets = {0, 2, 2};
  const std::vector<float> weights = {2, 1, -1};
  Pooled pooled = Pool({indices, offsets, BagMode::kSum, weights});
  // Bag 0: 2 * {1, 9} + {2, 8}; bag 1 is empty; bag 2: -{3, 7}.
  EXPECT_THAT(pooled.out, ElementsAre(4, 26, 0, 0, -3, -7));
}

TEST(BagTest, MeanSkipsPaddingAndLeavesItOutOfTheCount) {
  const std::vector<int64_t> indices = {1, 0, 3}, offsets = {0};
  Pooled pooled = Pool({indices, offsets, BagMode::kMean}, /*padding_row=*/0);
  EXPECT_THAT(pooled.out, ElementsAre(2, 8));  // ({1, 9} + {3, 7}) / 2.
}

TEST(BagTest, MaxTakesEachColumnsWinnerAndNamesIt) {
  const std::vector<int64_t> indices = {1, 4, 2}, offsets = {0, 3};
  Pooled pooled = Pool({indices, offsets, BagMode::kMax});
  EXPECT_THAT(pooled.out, ElementsAre(4, 9, 0, 0));
  EXPECT_THAT(pooled.max_indices, ElementsAre(4, 1, -1, -1));
}

TEST(BagTest, MeanBackwardDividesByTheNonPaddingCount) {
  const std::vector<int64_t> indices = {1, 0, 3, 3}, offsets = {0, 3};
  auto sums = Scatter({indices, offsets, BagMode::kMean}, {4, 8, 1, 1},
                      /*max_indices=*/{}, /*padding_row=*/0);
  ASSERT_TRUE(sums.ok()) << sums.status();
  // Bag 0 has two rows that count (1, 3); bag 1 has one (3).
  EXPECT_THAT(*sums, ElementsAre(Pair(1, ElementsAre(2, 4)),
                                 Pair(3, ElementsAre(3, 5))));
}

TEST(BagTest, SumBackwardScalesByTheSampleWeight) {
  const std::vector<int64_t> indices = {1, 2, 1}, offsets = {0};
  const std::vector<float> weights = {2, 3, -1};
  auto sums = Scatter({indices, offsets, BagMode::kSum, weights}, {1, 10});
  ASSERT_TRUE(sums.ok()) << sums.status();
  EXPECT_THAT(*sums, ElementsAre(Pair(1, ElementsAre(1, 10)),
                                 Pair(2, ElementsAre(3, 30))));
}

TEST(BagTest, MaxBackwardRoutesEachElementToItsWinner) {
  const std::vector<int64_t> indices = {1, 4, 2}, offsets = {0, 3};
  auto sums =
      Scatter({indices, offsets, BagMode::kMax}, {5, 6, 7, 8}, {4, 1, -1, -1});
  ASSERT_TRUE(sums.ok()) << sums.status();
  EXPECT_THAT(*sums, ElementsAre(Pair(1, ElementsAre(0, 6)),
                                 Pair(4, ElementsAre(5, 0))));
}

TEST(BagTest, BadMaxIndicesAreInvalidArgument) {
  const std::vector<int64_t> indices = {1, 2}, offsets = {0};
  ExpectInvalid(
      Scatter({indices, offsets, BagMode::kMax}, {1, 1}, {1}).status(),
      "max_indices has 1 entries, expected bags x embedding_dim = "
      "2 (as LookupBag returned them)");
  ExpectInvalid(
      Scatter({indices, offsets, BagMode::kMax}, {1, 1}, {1, 7}).status(),
      "max_indices[1] = 7 is not one of the batch's indices");
}

// Issue 10, defect 8: MAX mode's backward checks its max_indices (bags x dim
// of them) against the batch, asking to stop every block.
TEST(BagTest, CancelledMaxScatterStopsAtABlock) {
  constexpr int64_t kBlock = kRowsBetweenCancelChecks;
  // One bag per index: 2 blocks of indices to index, then 4 of max_indices.
  std::vector<int64_t> indices(2 * kBlock), offsets(2 * kBlock);
  for (int64_t i = 0; i < 2 * kBlock; ++i) indices[i] = offsets[i] = i;
  std::vector<int64_t> max_indices(2 * kBlock * kDim);
  for (int64_t i = 0; i < 2 * kBlock * kDim; ++i) max_indices[i] = i / kDim;
  const std::vector<float> grad(max_indices.size(), 1.0f);
  const ValidatedBagBatch batch =
      *ValidateBagBatch({indices, offsets, BagMode::kMax});
  for (int64_t checks : {0, 1, 3, 5}) {
    testing::CancelAfter cancel(checks);
    GradientAccumulator& gradient =
        GradientAccumulator::ForThisThread(kDim, indices.size());
    EXPECT_EQ(ScatterBagGradients(batch, kDim, kNoPadding, grad, max_indices,
                                  gradient, cancel),
              absl::UnavailableError("cancelled by the test"));
    EXPECT_EQ(cancel.calls(), checks + 1);
  }
  testing::CancelAfter never(6);
  GradientAccumulator& gradient =
      GradientAccumulator::ForThisThread(kDim, indices.size());
  EXPECT_TRUE(ScatterBagGradients(batch, kDim, kNoPadding, grad, max_indices,
                                  gradient, never)
                  .ok());
  EXPECT_EQ(never.calls(), 6);
  EXPECT_EQ(gradient.size(), indices.size());
}

}  // namespace
}  // namespace embedding
