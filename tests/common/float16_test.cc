#include "common/float16.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace embedding {
namespace {

// Exhaustive over all 65536 half patterns: decoding then encoding gives the
// same bits (NaNs stay NaN), so both directions agree on every value.
TEST(Float16Test, HalfRoundTripsEveryPattern) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float value = HalfToFloat(static_cast<uint16_t>(bits));
    if (std::isnan(value)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(value))));
      continue;
    }
    EXPECT_EQ(FloatToHalf(value), bits) << "bits " << bits;
  }
}

TEST(Float16Test, HalfRoundsToNearestEvenAndOverflowsToInf) {
  // 1 + 2^-11 is halfway between 1 and the next half (1 + 2^-10): even is 1.
  EXPECT_EQ(FloatToHalf(1.0f + 0x1p-11f), FloatToHalf(1.0f));
  EXPECT_EQ(FloatToHalf(1.0f + 0x1p-11f + 0x1p-20f),
            FloatToHalf(1.0f + 0x1p-10f));
  EXPECT_EQ(HalfToFloat(FloatToHalf(70000.0f)),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(HalfToFloat(FloatToHalf(65504.0f)), 65504.0f);
}

TEST(Float16Test, BFloat16RoundTripsEveryPattern) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float value = BFloat16ToFloat(static_cast<uint16_t>(bits));
    if (std::isnan(value)) continue;
    EXPECT_EQ(FloatToBFloat16(value), bits) << "bits " << bits;
  }
  EXPECT_EQ(FloatToBFloat16(1.0f + 0x1p-8f), FloatToBFloat16(1.0f));
}

}  // namespace
}  // namespace embedding
