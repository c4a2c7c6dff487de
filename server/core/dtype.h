// Element types rows can be returned in, and float32 conversions to them
// (the codecs are in common/float16.h).
//
// Tables store float32. Lookups may return float16 (IEEE binary16) or
// bfloat16, both rounded to nearest even, to halve the bytes on the wire.
#ifndef SERVER_CORE_DTYPE_H_
#define SERVER_CORE_DTYPE_H_

#include <cstddef>
#include <cstdint>

namespace embedding {

enum class DType { kFloat32, kFloat16, kBFloat16 };

// Bytes per element of `dtype`.
size_t ElementSize(DType dtype);

// Writes `count` floats from `src` to `dst` as `dtype` (little-endian).
void ConvertFloats(const float* src, size_t count, DType dtype, void* dst);

}  // namespace embedding

#endif  // SERVER_CORE_DTYPE_H_
