// The bag batch's validation and the bag arithmetic shared by the server and
// the sharded client, on hand-checkable rows; the server's use of it is in
// tests/core/bag_test.cc, the comparison with torch in tests/conformance.
#include "common/bag_math.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

using ::testing::ElementsAre;
using ::testing::FieldsAre;

constexpr int64_t kDim = 2;
constexpr int64_t kNoPadding = -1;

absl::Status Check(std::vector<int64_t> indices, std::vector<int64_t> offsets,
                   BagMode mode = BagMode::kSum,
                   std::vector<float> weights = {}, bool last = false) {
  return ValidateBagBatch({indices, offsets, mode, weights, last}).status();
}

// Row r is {r, 10 - r}.
constexpr auto kReadTestRow = [](int64_t index, const auto& use) {
  const float row[kDim] = {static_cast<float>(index),
                           static_cast<float>(10 - index)};
  use(row);
};

// The floats PoolBagRows emits, bag after bag.
std::vector<float> Pool(const ValidatedBagBatch& batch,
                        const BagMarkers& markers,
                        int64_t* max_indices = nullptr) {
  std::vector<float> out;
  const absl::Status status =
      PoolBagRows(batch, kDim, markers, kReadTestRow, max_indices,
                  [&](int64_t bag, const float* pooled) {
                    EXPECT_EQ(bag * kDim, static_cast<int64_t>(out.size()));
                    out.insert(out.end(), pooled, pooled + kDim);
                  });
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

// The (bag, index, scale) calls of ForEachBagGradient, in order.
std::vector<std::tuple<int64_t, int64_t, float>> GradientCalls(
    const ValidatedBagBatch& batch, const BagMarkers& markers) {
  std::vector<std::tuple<int64_t, int64_t, float>> calls;
  const absl::Status status = ForEachBagGradient(
      batch, markers, [&](int64_t bag, int64_t index, float scale) {
        calls.emplace_back(bag, index, scale);
      });
  EXPECT_TRUE(status.ok()) << status;
  return calls;
}

TEST(BagMathTest, CountsBagsWithAndWithoutLastOffset) {
  std::vector<int64_t> indices = {1, 2, 3}, offsets = {0, 1, 3};
  EXPECT_EQ(ValidateBagBatch({indices, offsets})->bags(), 3);
  absl::StatusOr<ValidatedBagBatch> last =
      ValidateBagBatch({indices, offsets, BagMode::kSum, {}, true});
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->bags(), 2);
  EXPECT_EQ(last->Bounds(1), (std::pair<int64_t, int64_t>{1, 3}));
  EXPECT_EQ(ValidateBagBatch({indices, offsets})->Bounds(2),
            (std::pair<int64_t, int64_t>{3, 3}));
}

TEST(BagMathTest, BagsEndIsWhereTheLastBagEnds) {
  const std::vector<int64_t> indices = {1, 2, 3, 4, 5}, offsets = {0, 1, 3};
  EXPECT_EQ(ValidateBagBatch({indices, offsets})->BagsEnd(), 5);
  // include_last_offset: indices 3 and 4 are in no bag.
  EXPECT_EQ(
      ValidateBagBatch({indices, offsets, BagMode::kSum, {}, true})->BagsEnd(),
      3);
}

TEST(BagMathTest, BadOffsetsAreInvalidArgument) {
  EXPECT_EQ(Check({1}, {}),
            absl::InvalidArgumentError(
                "offsets is empty: a batch needs at least one bag"));
  EXPECT_EQ(Check({1}, {0}, BagMode::kSum, {}, /*last=*/true),
            absl::InvalidArgumentError(
                "offsets needs at least 2 entries with include_last_offset"));
  EXPECT_EQ(Check({1}, {1}),
            absl::InvalidArgumentError("offsets[0] must be 0, got 1"));
  EXPECT_EQ(Check({1, 2}, {0, 2, 1}),
            absl::InvalidArgumentError(
                "offsets must be non-decreasing: offsets[2] = 1 < "
                "offsets[1] = 2"));
  EXPECT_EQ(Check({1}, {0, 2}),
            absl::InvalidArgumentError(
                "offsets[1] = 2 is past the end of indices (1)"));
}

TEST(BagMathTest, PerSampleWeightsOnlyWithSumOnePerIndexAndFinite) {
  EXPECT_TRUE(Check({1, 2}, {0}, BagMode::kSum, {1, 2}).ok());
  for (BagMode mode : {BagMode::kMean, BagMode::kMax}) {
    EXPECT_EQ(
        Check({1, 2}, {0}, mode, {1, 2}),
        absl::InvalidArgumentError("per_sample_weights are only supported with "
                                   "mode SUM, as in torch"));
  }
  EXPECT_EQ(
      Check({1, 2}, {0}, BagMode::kSum, {1}),
      absl::InvalidArgumentError(
          "per_sample_weights has 1 entries, expected one per index (2)"));
  EXPECT_EQ(Check({1, 2}, {0}, BagMode::kSum,
                  {1, std::numeric_limits<float>::quiet_NaN()}),
            absl::InvalidArgumentError("per_sample_weights[1] is not finite"));
}

TEST(BagMathTest, PoolingLeavesOutPaddingAndIndicesPastTheLastBag) {
  // Bag 0 = {1, 0 (padding), 3}, bag 1 = {}, bag 2 = {2}; 4 is in no bag.
  const std::vector<int64_t> indices = {1, 0, 3, 2, 4}, offsets = {0, 3, 3, 4};
  const ValidatedBagBatch mean =
      *ValidateBagBatch({indices, offsets, BagMode::kMean, {}, true});
  EXPECT_THAT(Pool(mean, /*padding_row=*/0),
              ElementsAre(2, 8, 0, 0, 2, 8));  // ({1, 9} + {3, 7}) / 2.
  const std::vector<float> weights = {2, 5, -1, 1, 7};
  const ValidatedBagBatch sum =
      *ValidateBagBatch({indices, offsets, BagMode::kSum, weights, true});
  EXPECT_THAT(Pool(sum, /*padding_row=*/0), ElementsAre(-1, 11, 0, 0, 2, 8));
}

TEST(BagMathTest, MaxNamesEachColumnsWinnerAndEmptyBagsMinusOne) {
  // Rows 3 {3, 7} and 7 {7, 3}.
  const std::vector<int64_t> indices = {3, 7, 3}, offsets = {0, 3};
  const ValidatedBagBatch batch =
      *ValidateBagBatch({indices, offsets, BagMode::kMax});
  std::vector<int64_t> max_indices(batch.bags() * kDim, 99);
  EXPECT_THAT(Pool(batch, kNoPadding, max_indices.data()),
              ElementsAre(7, 7, 0, 0));
  EXPECT_THAT(max_indices, ElementsAre(7, 3, -1, -1));
}

TEST(BagMathTest, GradientScalesAreTheWeightOrOneOverTheNonPaddingCount) {
  const std::vector<int64_t> indices = {1, 0, 3, 3, 5}, offsets = {0, 3, 4};
  const ValidatedBagBatch mean =
      *ValidateBagBatch({indices, offsets, BagMode::kMean, {}, true});
  EXPECT_THAT(GradientCalls(mean, /*padding_row=*/0),
              ElementsAre(FieldsAre(0, 1, 0.5f), FieldsAre(0, 3, 0.5f),
                          FieldsAre(1, 3, 1.0f)));
  const std::vector<float> weights = {2, 5, -1, 3, 4};
  const ValidatedBagBatch sum =
      *ValidateBagBatch({indices, offsets, BagMode::kSum, weights});
  EXPECT_THAT(GradientCalls(sum, /*padding_row=*/0),
              ElementsAre(FieldsAre(0, 1, 2.0f), FieldsAre(0, 3, -1.0f),
                          FieldsAre(1, 3, 3.0f), FieldsAre(2, 5, 4.0f)));
}

TEST(BagMathTest, MaxGradientGoesToEachNamedRowInElementOrder) {
  const std::vector<int64_t> max_indices = {4, -1, 0, 1};
  std::vector<std::pair<size_t, int64_t>> calls;
  const absl::Status status = ForEachMaxGradient(
      max_indices, /*padding_row=*/0, [](int64_t) { return true; },
      [&](size_t element, int64_t index) {
        calls.emplace_back(element, index);
      });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(calls, ElementsAre(std::pair<size_t, int64_t>{0, 4},
                                 std::pair<size_t, int64_t>{3, 1}));
}

// A dynamic table's ids are any int64 but INT64_MIN: -1 is a row like any
// other, INT64_MIN marks empty bags and "no padding".
TEST(BagMathTest, DynamicMarkersLeaveMinusOneARow) {
  constexpr int64_t kNoRow = std::numeric_limits<int64_t>::min();
  const BagMarkers none = BagMarkers::ForTable(/*dynamic=*/true, std::nullopt);
  EXPECT_EQ(none.padding, kNoRow);
  EXPECT_EQ(none.no_row, kNoRow);
  const BagMarkers dense = BagMarkers::ForTable(/*dynamic=*/false, 3);
  EXPECT_EQ(dense.padding, 3);
  EXPECT_EQ(dense.no_row, -1);
  const std::vector<int64_t> indices = {-1, 2, 2}, offsets = {0, 0, 2};
  const ValidatedBagBatch max =
      *ValidateBagBatch({indices, offsets, BagMode::kMax});
  std::vector<int64_t> winners(3 * kDim);
  EXPECT_THAT(Pool(max, none, winners.data()), ElementsAre(0, 0, 2, 11, 2, 8));
  EXPECT_THAT(winners, ElementsAre(kNoRow, kNoRow, 2, -1, 2, 2));
  std::vector<std::pair<size_t, int64_t>> calls;
  ASSERT_TRUE(ForEachMaxGradient(
                  winners, none, [](int64_t) { return true; },
                  [&](size_t element, int64_t index) {
                    calls.emplace_back(element, index);
                  })
                  .ok());
  EXPECT_THAT(calls, ElementsAre(std::pair<size_t, int64_t>{2, 2},
                                 std::pair<size_t, int64_t>{3, -1},
                                 std::pair<size_t, int64_t>{4, 2},
                                 std::pair<size_t, int64_t>{5, 2}));
  // With padding id -1: skipped, and left out of MEAN's count.
  const BagMarkers padding = BagMarkers::ForTable(/*dynamic=*/true, -1);
  const ValidatedBagBatch mean =
      *ValidateBagBatch({indices, offsets, BagMode::kMean});
  EXPECT_THAT(GradientCalls(mean, padding),
              ElementsAre(FieldsAre(1, 2, 1.0f), FieldsAre(2, 2, 1.0f)));
}

TEST(BagMathTest, BadMaxIndicesAreInvalidArgument) {
  const std::vector<int64_t> indices = {1, 2}, offsets = {0, 1};
  const ValidatedBagBatch batch =
      *ValidateBagBatch({indices, offsets, BagMode::kMax});
  EXPECT_TRUE(CheckMaxIndicesSize(batch, kDim, 4).ok());
  EXPECT_EQ(CheckMaxIndicesSize(batch, kDim, 1),
            absl::InvalidArgumentError(
                "max_indices has 1 entries, expected bags x embedding_dim = "
                "4 (as LookupBag returned them)"));
  EXPECT_EQ(CheckMaxIndicesSize(batch, std::numeric_limits<int64_t>::max(), 1),
            absl::InvalidArgumentError(
                "max_indices has 1 entries, expected bags x embedding_dim = "
                "more than 2^63 (as LookupBag returned them)"));
  const std::vector<int64_t> max_indices = {1, 7};
  EXPECT_EQ(ForEachMaxGradient(
                max_indices, kNoPadding,
                [](int64_t index) { return index == 1 || index == 2; },
                [](size_t, int64_t) {}),
            absl::InvalidArgumentError(
                "max_indices[1] = 7 is not one of the batch's indices"));
}

}  // namespace
}  // namespace embedding
