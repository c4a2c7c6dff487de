#include "server/core/gradient_accumulator.h"

#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
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

TEST(GradientAccumulatorTest, ScratchStaysWithinItsBound) {
  for (int64_t rows : {1, 7, 1000, 100000}) {
    for (int64_t dim : {1, 3, 64}) {
      SCOPED_TRACE(absl::StrCat(rows, " x ", dim));
      // A new thread: nothing kept from earlier pushes.
      std::thread([&] {
        GradientAccumulator& gradient =
            GradientAccumulator::ForThisThread(dim, rows);
        const std::vector<float> grad(dim, 1.0f);
        std::vector<int64_t> indices(rows);
        for (int64_t r = 0; r < rows; ++r) {
          indices[r] = r * 7919;  // Distinct: the most scratch.
          gradient.Add(indices[r], grad.data(), 1.0f);
        }
        gradient.ScaleByFrequency(indices);
        ASSERT_EQ(gradient.size(), static_cast<size_t>(rows));
        EXPECT_LE(gradient.allocated_bytes(),
                  GradientAccumulator::BytesBound(rows, dim));
      }).join();
    }
  }
  EXPECT_EQ(
      GradientAccumulator::BytesBound(std::numeric_limits<int64_t>::max(), 2),
      std::numeric_limits<int64_t>::max());
}

TEST(GradientAccumulatorTest, PushScratchFreesWhatPassesTheCap) {
  const std::vector<float> grad(16, 1.0f);
  {
    PushScratch scratch;
    GradientAccumulator& gradient = scratch.Start(16, 100000);
    for (int64_t r = 0; r < 100000; ++r) gradient.Add(r, grad.data(), 1.0f);
    EXPECT_GT(GradientAccumulator::RetainedBytesOnThisThread(),
              GradientAccumulator::kMaxRetainedBytes);
  }
  EXPECT_EQ(GradientAccumulator::RetainedBytesOnThisThread(), 0);
  int64_t kept = 0;
  {
    PushScratch scratch;
    scratch.Start(16, 100).Add(1, grad.data(), 1.0f);
    kept = GradientAccumulator::RetainedBytesOnThisThread();
  }
  EXPECT_GT(kept, 0);
  EXPECT_EQ(GradientAccumulator::RetainedBytesOnThisThread(), kept);
}

TEST(PositionIndexTest, FindsInsertsAndGrowsPastItsSize) {
  std::vector<int64_t> keys;
  const auto key_at = [&](uint32_t position) { return keys[position]; };
  PositionIndex index;
  index.Reset(2);
  for (int64_t k = 0; k < 1000; ++k) {
    const int64_t key = (k * 104729) ^ (int64_t{1} << 40);
    EXPECT_EQ(
        index.FindOrInsert(key, static_cast<uint32_t>(keys.size()), key_at),
        keys.size());
    keys.push_back(key);
  }
  for (size_t p = 0; p < keys.size(); ++p) {
    EXPECT_EQ(index.Find(keys[p], key_at), p);
    EXPECT_EQ(index.FindOrInsert(keys[p], 99999, key_at), p);
  }
  EXPECT_FALSE(index.Contains(-5, key_at));
  EXPECT_EQ(index.Find(-5, key_at), PositionIndex::kNone);
  index.Reset(10);
  EXPECT_FALSE(index.Contains(keys[0], key_at));
  EXPECT_LE(index.allocated_bytes(), PositionIndex::BytesBound(1000));
}

}  // namespace
}  // namespace embedding
