// float16 (IEEE binary16) and bfloat16 codecs: float32 to 16 bits rounds to
// nearest even, NaN stays a quiet NaN; 16 bits to float32 is exact. The
// server encodes lookups with them and the clients decode.
//
//   uint16_t bits = FloatToHalf(1.5f);
//   float back = HalfToFloat(bits);  // 1.5f
//
// Thread-safe: pure functions.
#ifndef COMMON_FLOAT16_H_
#define COMMON_FLOAT16_H_

#include <cstdint>

namespace embedding {

uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t bits);
uint16_t FloatToBFloat16(float value);
float BFloat16ToFloat(uint16_t bits);

}  // namespace embedding

#endif  // COMMON_FLOAT16_H_
