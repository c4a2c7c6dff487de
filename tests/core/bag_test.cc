#include "server/core/bag.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;

absl::Status Check(std::vector<int64_t> indices, std::vector<int64_t> offsets,
                   BagMode mode = BagMode::kSum,
                   std::vector<float> weights = {}, bool last = false) {
  BagBatch batch{indices, offsets, mode, weights, last};
  return ValidateBagBatch(batch).status();
}

TEST(BagTest, CountsBagsWithAndWithoutLastOffset) {
  std::vector<int64_t> indices = {1, 2, 3}, offsets = {0, 1, 3};
  EXPECT_EQ(*ValidateBagBatch({indices, offsets}), 3);
  BagBatch last{indices, offsets, BagMode::kSum, {}, true};
  EXPECT_EQ(*ValidateBagBatch(last), 2);
  EXPECT_EQ(BagBounds(last, 1), (std::pair<int64_t, int64_t>{1, 3}));
}

TEST(BagTest, BadOffsetsAreInvalidArgument) {
  EXPECT_THAT(Check({1}, {}).message(), HasSubstr("offsets is empty"));
  EXPECT_THAT(Check({1}, {1}).message(), HasSubstr("offsets[0] must be 0"));
  EXPECT_THAT(Check({1, 2}, {0, 2, 1}).message(), HasSubstr("non-decreasing"));
  EXPECT_THAT(Check({1}, {0, 2}).message(), HasSubstr("past the end"));
  EXPECT_EQ(Check({1}, {0, 2}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(BagTest, PerSampleWeightsOnlyWithSumAndOnePerIndex) {
  EXPECT_TRUE(Check({1, 2}, {0}, BagMode::kSum, {1, 2}).ok());
  EXPECT_THAT(Check({1, 2}, {0}, BagMode::kMean, {1, 2}).message(),
              HasSubstr("only supported with mode SUM"));
  EXPECT_THAT(Check({1, 2}, {0}, BagMode::kMax, {1, 2}).message(),
              HasSubstr("only supported with mode SUM"));
  EXPECT_THAT(Check({1, 2}, {0}, BagMode::kSum, {1}).message(),
              HasSubstr("expected one per index (2)"));
}

}  // namespace
}  // namespace embedding
