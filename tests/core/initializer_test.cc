// The initializer is a pure function of (seed, global row, column), so a
// table's content does not depend on its shard layout; its distributions
// are checked with bounds several standard errors wide over many samples.
#include "server/core/initializer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/shard_layout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

using ::testing::Each;

constexpr InitializerSpec kNormal{InitializerSpec::Kind::kNormal, 0.5f, 2.0f};
constexpr InitializerSpec kUniform{InitializerSpec::Kind::kUniform, -0.5f,
                                   1.5f};

std::vector<float> Row(const InitializerSpec& init, uint64_t seed,
                       int64_t global_row, int64_t dim) {
  std::vector<float> row(dim);
  FillRow(init, seed, global_row, dim, row.data());
  return row;
}

// rows x dim values of one table, row after row.
std::vector<float> Sample(const InitializerSpec& init, int64_t rows,
                          int64_t dim) {
  std::vector<float> values;
  values.reserve(rows * dim);
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<float> row = Row(init, /*seed=*/11, r, dim);
    values.insert(values.end(), row.begin(), row.end());
  }
  return values;
}

double Mean(const std::vector<float>& values) {
  double sum = 0;
  for (float v : values) sum += v;
  return sum / values.size();
}

double StdDev(const std::vector<float>& values) {
  const double mean = Mean(values);
  double sum = 0;
  for (float v : values) sum += (v - mean) * (v - mean);
  return std::sqrt(sum / (values.size() - 1));
}

TEST(InitializerTest, ValueDependsOnlyOnSeedRowAndColumn) {
  for (const InitializerSpec& init : {kNormal, kUniform}) {
    // The same column whatever the row width (normals come in pairs).
    const std::vector<float> wide = Row(init, 3, 17, 8);
    for (int64_t dim : {1, 3, 5}) {
      const std::vector<float> narrow = Row(init, 3, 17, dim);
      EXPECT_TRUE(std::equal(narrow.begin(), narrow.end(), wide.begin()))
          << "dim " << dim;
    }
    EXPECT_EQ(Row(init, 3, 17, 8), wide);  // Repeatable.
    EXPECT_NE(Row(init, 4, 17, 8), wide);  // Seed matters.
    EXPECT_NE(Row(init, 3, 18, 8), wide);  // Row matters.
  }
}

TEST(InitializerTest, SameTableWhateverTheShardLayout) {
  constexpr int64_t kRows = 23, kDim = 6;
  const std::vector<float> whole = Sample(kNormal, kRows, kDim);
  for (int32_t shards : {2, 3, 5}) {
    const ShardLayout layout = *ShardLayout::Create(shards);
    std::vector<float> assembled(kRows * kDim);
    // Each shard fills the rows it holds, by local row, as a table does.
    for (int32_t shard = 0; shard < shards; ++shard) {
      for (int64_t local = 0; local < layout.RowsOnShard(kRows, shard);
           ++local) {
        const int64_t global = layout.GlobalRow(shard, local);
        FillRow(kNormal, 11, global, kDim, &assembled[global * kDim]);
      }
    }
    EXPECT_EQ(assembled, whole) << shards << " shards";
  }
}

TEST(InitializerTest, NormalHasItsMeanAndStd) {
  constexpr int64_t kSamples = 1000 * 200;
  const std::vector<float> values = Sample(kNormal, 1000, 200);
  const double mean = kNormal.a, std = kNormal.b;
  // Five standard errors: a false failure is a 1-in-a-million event, and the
  // values are fixed by the seed anyway.
  EXPECT_NEAR(Mean(values), mean, 5 * std / std::sqrt(kSamples));
  EXPECT_NEAR(StdDev(values), std, 5 * std / std::sqrt(2.0 * kSamples));
  // The shape, not only two moments: P(|x - mean| < std) = 0.6827.
  const double within =
      std::count_if(values.begin(), values.end(),
                    [&](float v) { return std::fabs(v - mean) < std; }) /
      static_cast<double>(kSamples);
  EXPECT_NEAR(within, 0.6827, 5 * std::sqrt(0.6827 * 0.3173 / kSamples));
}

TEST(InitializerTest, UniformStaysInItsHalfOpenRange) {
  constexpr int64_t kSamples = 1000 * 200;
  const std::vector<float> values = Sample(kUniform, 1000, 200);
  const float a = kUniform.a, b = kUniform.b;
  EXPECT_GE(*std::min_element(values.begin(), values.end()), a);
  EXPECT_LT(*std::max_element(values.begin(), values.end()), b);
  EXPECT_LT(*std::min_element(values.begin(), values.end()), a + 1e-3f);
  EXPECT_GT(*std::max_element(values.begin(), values.end()), b - 1e-3f);
  const double std = (b - a) / std::sqrt(12.0);
  EXPECT_NEAR(Mean(values), (a + b) / 2.0, 5 * std / std::sqrt(kSamples));
  EXPECT_NEAR(StdDev(values), std, 0.01 * std);
}

TEST(InitializerTest, UniformNeverRoundsUpToItsUpperBound) {
  // One float apart: every value rounds to a or b, so half would be b
  // without the step back.
  const float a = 1.0f, b = std::nextafter(1.0f, 2.0f);
  const InitializerSpec tight{InitializerSpec::Kind::kUniform, a, b};
  for (int64_t r = 0; r < 50; ++r) {
    EXPECT_THAT(Row(tight, 1, r, 16), Each(a)) << "row " << r;
  }
  const InitializerSpec empty{InitializerSpec::Kind::kUniform, a, a};
  EXPECT_THAT(Row(empty, 1, 0, 16), Each(a));
}

bool AllFinite(const std::vector<float>& values) {
  return std::all_of(values.begin(), values.end(),
                     [](float v) { return std::isfinite(v); });
}

// Issue 10: uniform(-3e38, 3e38) stored inf in every row (b - a overflowed
// float32).
TEST(InitializerTest, ExtremeUniformGivesOnlyFiniteValues) {
  constexpr float kMax = std::numeric_limits<float>::max();
  for (const InitializerSpec& init :
       {InitializerSpec{InitializerSpec::Kind::kUniform, -3e38f, 3e38f},
        InitializerSpec{InitializerSpec::Kind::kUniform, -kMax, kMax}}) {
    const std::vector<float> values = Sample(init, 200, 64);
    EXPECT_TRUE(AllFinite(values)) << init.a << ", " << init.b;
    EXPECT_LT(*std::max_element(values.begin(), values.end()), init.b);
    EXPECT_GE(*std::min_element(values.begin(), values.end()), init.a);
    // Spread over the range, not stuck at an end.
    EXPECT_GT(*std::max_element(values.begin(), values.end()), init.b / 2);
    EXPECT_LT(*std::min_element(values.begin(), values.end()), init.a / 2);
  }
}

TEST(InitializerTest, MaxAbsStandardNormalIsTheRadiusAtTheSmallestUniform) {
  EXPECT_DOUBLE_EQ(MaxAbsStandardNormal(), std::sqrt(106 * std::log(2.0)));
  EXPECT_NEAR(MaxAbsStandardNormal(), 8.5716743, 1e-7);
  // Nothing FillRow draws goes past it.
  const InitializerSpec standard{InitializerSpec::Kind::kNormal, 0.0f, 1.0f};
  const std::vector<float> values = Sample(standard, 2000, 64);
  for (float v : values) ASSERT_LE(std::fabs(v), MaxAbsStandardNormal());
}

// Issue 10: normal(0, 3e38) stored inf in about a quarter of the rows. The
// largest accepted parameters stay finite even at the most extreme draw.
TEST(InitializerTest, LargestAcceptedNormalStaysFiniteAtTheExtremeDraw) {
  constexpr double kLargestFloat = std::numeric_limits<float>::max();
  for (float mean : {0.0f, 1e38f, -3e38f}) {
    // The largest std CheckInitializerStaysFinite accepts for this mean.
    const float std = static_cast<float>((kLargestFloat - std::fabs(mean)) /
                                         MaxAbsStandardNormal());
    InitializerSpec init{InitializerSpec::Kind::kNormal, mean, std};
    const auto accepts = [&](float b) {
      return CheckInitializerStaysFinite({init.kind, init.a, b}).ok();
    };
    while (!accepts(init.b)) init.b = std::nextafter(init.b, 0.0f);
    constexpr float kUp = std::numeric_limits<float>::infinity();
    while (accepts(std::nextafter(init.b, kUp))) {
      init.b = std::nextafter(init.b, kUp);
    }
    SCOPED_TRACE(absl::StrCat(init.a, ", ", init.b));
    // u1 at its smallest; u2 = 1 (cos 2 pi = 1), 0.5 (cos pi = -1), 0.25
    // (sin pi/2 = 1) and 0.75 (sin 3 pi/2 = -1).
    for (double u2 : {1.0, 0.5, 0.25, 0.75}) {
      const auto [cosine, sine] =
          internal::NormalPair(init, internal::kSmallestUniform, u2);
      EXPECT_TRUE(std::isfinite(cosine)) << u2;
      EXPECT_TRUE(std::isfinite(sine)) << u2;
    }
    EXPECT_TRUE(AllFinite(Sample(init, 200, 64)));
    // One float further is refused, with the reason.
    init.b = std::nextafter(init.b, kUp);
    const absl::Status status = CheckInitializerStaysFinite(init);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(),
                ::testing::HasSubstr("can draw values beyond float32's range"));
  }
}

TEST(InitializerTest, ConstantFillsEveryColumn) {
  const InitializerSpec constant{InitializerSpec::Kind::kConstant, -2.5f, 9.0f};
  EXPECT_THAT(Row(constant, 1, 5, 7), Each(-2.5f));
}

}  // namespace
}  // namespace embedding
