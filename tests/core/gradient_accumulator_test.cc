#include "server/core/gradient_accumulator.h"

#include <bit>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
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

TEST(GradientAccumulatorTest, SlotsByGroupOrdersByGroupThenArrival) {
  GradientAccumulator& gradient = GradientAccumulator::ForThisThread(1, 6);
  const float g = 1;
  for (int64_t row : {13, 4, 22, 3, 9, 14}) gradient.Add(row, &g, 1.0f);
  // Group: row % 10.
  const absl::Span<const uint32_t> order = gradient.SlotsByGroup(
      10, [](int64_t row) { return static_cast<uint32_t>(row % 10); });
  std::vector<int64_t> rows;
  for (uint32_t slot : order) {
    rows.push_back(gradient.row(slot));
    EXPECT_EQ(gradient.group(slot), gradient.row(slot) % 10);
  }
  EXPECT_THAT(rows, ElementsAre(22, 13, 3, 4, 14, 9));
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

// What coalescing gives summing from zeros, in the order added: the sums
// the accumulator must equal bit for bit.
struct Addition {
  int64_t row;
  int64_t column;  // -1: the whole row (Add); else one column (AddElement).
  std::vector<float> grad;
  float scale;
};

std::map<int64_t, std::vector<float>> SumsFromZeros(
    const std::vector<Addition>& additions, int64_t dim) {
  std::map<int64_t, std::vector<float>> sums;
  for (const Addition& addition : additions) {
    std::vector<float>& sum =
        sums.try_emplace(addition.row, dim, 0.0f).first->second;
    if (addition.column >= 0) {
      sum[addition.column] += addition.grad[0];
      continue;
    }
    for (int64_t d = 0; d < dim; ++d) {
      sum[d] += addition.scale * addition.grad[d];
    }
  }
  return sums;
}

std::vector<uint32_t> Bits(const float* values, int64_t dim) {
  std::vector<uint32_t> bits(dim);
  for (int64_t d = 0; d < dim; ++d)
    bits[d] = std::bit_cast<uint32_t>(values[d]);
  return bits;
}

TEST(GradientAccumulatorTest, SumsAreBitIdenticalToSummingFromZeros) {
  constexpr int64_t kDim = 5;
  std::mt19937 random(7);
  std::uniform_int_distribution<int64_t> row_of(0, 40);
  std::uniform_real_distribution<float> value(-1e3f, 1e3f);
  std::uniform_int_distribution<int> kind(0, 9);
  std::vector<Addition> additions;
  for (int i = 0; i < 400; ++i) {
    Addition addition{.row = row_of(random), .column = -1, .scale = 1.0f};
    const int k = kind(random);
    if (k == 0) {
      addition.column = i % kDim;
      addition.grad = {value(random)};
      additions.push_back(addition);
      continue;
    }
    for (int64_t d = 0; d < kDim; ++d) addition.grad.push_back(value(random));
    if (k == 1) addition.scale = 1.0f / 3.0f;
    // A -0 first gradient must become +0, as 0 + -0 does.
    if (k == 2) addition.grad[i % kDim] = -0.0f;
    additions.push_back(addition);
  }
  // Few rows are expected: the owned sums grow (and move) past that.
  GradientAccumulator& gradient = GradientAccumulator::ForThisThread(kDim, 2);
  for (const Addition& addition : additions) {
    if (addition.column >= 0) {
      gradient.AddElement(addition.row, addition.column, addition.grad[0]);
    } else {
      gradient.Add(addition.row, addition.grad.data(), addition.scale);
    }
  }
  const std::map<int64_t, std::vector<float>> expected =
      SumsFromZeros(additions, kDim);
  ASSERT_EQ(gradient.size(), expected.size());
  for (size_t slot = 0; slot < gradient.size(); ++slot) {
    SCOPED_TRACE(absl::StrCat("row ", gradient.row(slot)));
    EXPECT_EQ(Bits(gradient.sum(slot), kDim),
              Bits(expected.at(gradient.row(slot)).data(), kDim));
  }
}

TEST(GradientAccumulatorTest, RowsThatCameOnceReferToTheCallersGradient) {
  GradientAccumulator& gradient = GradientAccumulator::ForThisThread(2, 3);
  const std::vector<float> a = {1, 2}, b = {3, 4}, c = {-0.0f, 1};
  gradient.Add(1, a.data(), 1.0f);
  gradient.Add(2, b.data(), 1.0f);
  gradient.Add(3, c.data(), 1.0f);
  gradient.Add(2, a.data(), 1.0f);
  EXPECT_EQ(gradient.sum(0), a.data());  // Not copied.
  EXPECT_NE(gradient.sum(1), b.data());  // Summed: a copy.
  EXPECT_THAT(SumOf(gradient, 1, 2), ElementsAre(4, 6));
  EXPECT_THAT(b, ElementsAre(3, 4));     // The caller's row is unchanged.
  EXPECT_NE(gradient.sum(2), c.data());  // -0 is summed to +0.
  EXPECT_EQ(std::bit_cast<uint32_t>(gradient.sum(2)[0]), 0u);
  // Dividing a borrowed row writes a copy, never the caller's gradient.
  gradient.ScaleByFrequency({1, 1, 2, 2, 3});
  EXPECT_THAT(SumOf(gradient, 0, 2), ElementsAre(0.5f, 1));
  EXPECT_THAT(a, ElementsAre(1, 2));
  EXPECT_THAT(SumOf(gradient, 1, 2), ElementsAre(2, 3));
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
