#include "server/core/dtype.h"

#include <cstring>

#include "common/float16.h"

namespace embedding {

size_t ElementSize(DType dtype) {
  return dtype == DType::kFloat32 ? sizeof(float) : sizeof(uint16_t);
}

void ConvertFloats(const float* src, size_t count, DType dtype, void* dst) {
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kFloat16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < count; ++i) out[i] = FloatToHalf(src[i]);
      return;
    }
    case DType::kBFloat16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < count; ++i) out[i] = FloatToBFloat16(src[i]);
      return;
    }
  }
}

}  // namespace embedding
