#include "server/core/gradient_accumulator.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

using ::testing::ElementsAre;

std::vector<float> SumOf(const GradientAccumulator& gradient, size_t slot,
                         int64_t dim) {
  return std::vector<float>(gradient.sum(slot), gradient.sum(slot) + dim);
}

TEST(GradientAccumulatorTest, SumsEachDistinctRowOnceInFirstSeenOrder) {
  GradientAccumulator& gradient = GradientAccumulator::ForThisThread(2, 3);
  const std::vector<float> a = {1, 2}, b = {10, 20};
  gradient.Add(7, a.data(), 1.0f);
  gradient.Add(3, b.data(), 1.0f);
  gradient.Add(7, b.data(), 0.5f);
  gradient.AddElement(3, 1, 5.0f);
  ASSERT_EQ(gradient.size(), 2u);
  EXPECT_EQ(gradient.row(0), 7);
  EXPECT_EQ(gradient.row(1), 3);
  EXPECT_THAT(SumOf(gradient, 0, 2), ElementsAre(6, 12));
  EXPECT_THAT(SumOf(gradient, 1, 2), ElementsAre(10, 25));
}

TEST(GradientAccumulatorTest, ForThisThreadStartsEmptyWithTheNewDim) {
  const std::vector<float> grad = {1, 1, 1};
  GradientAccumulator::ForThisThread(3, 1).Add(1, grad.data(), 1.0f);
  GradientAccumulator& gradient = GradientAccumulator::ForThisThread(1, 1);
  EXPECT_EQ(gradient.size(), 0u);
  gradient.Add(1, grad.data(), 2.0f);
  EXPECT_THAT(SumOf(gradient, 0, 1), ElementsAre(2));
}

TEST(GradientAccumulatorTest, ScaleByFrequencyDividesByOccurrencesInBatch) {
  GradientAccumulator& gradient = GradientAccumulator::ForThisThread(1, 2);
  const std::vector<float> six = {6};
  gradient.Add(4, six.data(), 1.0f);
  gradient.Add(5, six.data(), 1.0f);
  // Row 4 occurs three times; 0 (padding, never added) is ignored.
  gradient.ScaleByFrequency({4, 0, 4, 5, 4});
  EXPECT_THAT(SumOf(gradient, 0, 1), ElementsAre(2));
  EXPECT_THAT(SumOf(gradient, 1, 1), ElementsAre(6));
}

}  // namespace
}  // namespace embedding
