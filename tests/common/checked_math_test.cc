#include "common/checked_math.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace embedding {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

TEST(CheckedMathTest, MulAndAddReportOverflow) {
  EXPECT_EQ(CheckedMul(int64_t{1} << 31, int64_t{1} << 31), int64_t{1} << 62);
  EXPECT_FALSE(CheckedMul(int64_t{1} << 32, int64_t{1} << 31).has_value());
  EXPECT_FALSE(CheckedMul(kMax, 2).has_value());
  EXPECT_EQ(CheckedAdd(kMax - 1, 1), kMax);
  EXPECT_FALSE(CheckedAdd(kMax, 1).has_value());
}

TEST(CheckedMathTest, SubAndMulAddReportOverflow) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(CheckedSub(kMin + 1, 1), kMin);
  EXPECT_FALSE(CheckedSub(kMin, 1).has_value());
  EXPECT_FALSE(CheckedSub(0, kMin).has_value());
  EXPECT_EQ(CheckedMulAdd(3, 4, 5), 17);
  EXPECT_FALSE(CheckedMulAdd(kMax / 2 + 1, 2, 0).has_value());
  EXPECT_FALSE(CheckedMulAdd(kMax / 2, 2, 2).has_value());
  EXPECT_EQ(CheckedMulAdd(kMax / 2, 2, 1), kMax);
}

TEST(CheckedMathTest, ShapeElementCountMultipliesDimensions) {
  EXPECT_EQ(*ShapeElementCount(std::vector<int64_t>{}, "x"), 1);
  EXPECT_EQ(*ShapeElementCount(std::vector<int64_t>{2, 3, 4}, "x"), 24);
  EXPECT_EQ(*ShapeElementCount(std::vector<int64_t>{0, kMax}, "x"), 0);
}

TEST(CheckedMathTest, NegativeOrOverflowingShapeIsInvalidArgument) {
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{2, -1}, std::vector<int64_t>{kMax, 2},
        std::vector<int64_t>{int64_t{1} << 32, int64_t{1} << 32}}) {
    absl::StatusOr<int64_t> count = ShapeElementCount(shape, "grad");
    EXPECT_EQ(count.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(count.status().message().find("grad has an invalid shape"),
              absl::string_view::npos)
        << count.status();
  }
}

}  // namespace
}  // namespace embedding
