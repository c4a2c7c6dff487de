#include "common/row_checks.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace embedding {
namespace {

TEST(RowChecksTest, RowsOfTheRightShapeAndFiniteAreAccepted) {
  const std::vector<float> values = {1, -2, 0, 3e38f, -0.0f, 5};
  EXPECT_TRUE(CheckRowsShape(values, 3, 2, "grad").ok());
  EXPECT_TRUE(CheckRowsShape({}, 0, 2, "grad").ok());
}

TEST(RowChecksTest, WrongSizeIsInvalidArgumentWithTheExpectedShape) {
  const std::vector<float> values(5);
  absl::Status status = CheckRowsShape(values, 3, 2, "grad");
  EXPECT_EQ(status, absl::InvalidArgumentError(
                        "grad has 5 elements, expected [3, 2] = 6"));
  status =
      CheckRowsShape(values, std::numeric_limits<int64_t>::max(), 2, "values");
  EXPECT_EQ(status,
            absl::InvalidArgumentError(
                "values has 5 elements, expected [9223372036854775807, 2] = "
                "more than 2^63"));
}

TEST(RowChecksTest, NonFiniteValueIsInvalidArgumentNamingRowAndColumn) {
  std::vector<float> values(6, 1.0f);
  values[5] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(CheckRowsShape(values, 3, 2, "grad"),
            absl::InvalidArgumentError(
                "grad has a non-finite value (inf) at row 2, column 1"));
  values[5] = 1.0f;
  values[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(CheckFiniteRows(values, 2, "values"),
            absl::InvalidArgumentError(
                "values has a non-finite value (nan) at row 1, column 0"));
}

}  // namespace
}  // namespace embedding
