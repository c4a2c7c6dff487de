// 64-bit size arithmetic that reports overflow instead of wrapping: every
// size a client sends (shapes, row counts, byte counts) goes through here.
//
//   absl::StatusOr<int64_t> n = ShapeElementCount(tensor.shape(), "grad");
//   std::optional<int64_t> bytes = CheckedMul(rows, row_bytes);
//
// Thread-safe: pure functions.
#ifndef COMMON_CHECKED_MATH_H_
#define COMMON_CHECKED_MATH_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace embedding {

// a * b, or nullopt when it overflows int64.
inline std::optional<int64_t> CheckedMul(int64_t a, int64_t b) {
  int64_t product;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

// a + b, or nullopt when it overflows int64.
inline std::optional<int64_t> CheckedAdd(int64_t a, int64_t b) {
  int64_t sum;
  if (__builtin_add_overflow(a, b, &sum)) return std::nullopt;
  return sum;
}

// a - b, or nullopt when it overflows int64.
inline std::optional<int64_t> CheckedSub(int64_t a, int64_t b) {
  int64_t difference;
  if (__builtin_sub_overflow(a, b, &difference)) return std::nullopt;
  return difference;
}

// a * b + c, or nullopt when a step overflows int64: the bytes of `a`
// items of `b` bytes plus `c` more.
inline std::optional<int64_t> CheckedMulAdd(int64_t a, int64_t b, int64_t c) {
  const std::optional<int64_t> product = CheckedMul(a, b);
  if (!product.has_value()) return std::nullopt;
  return CheckedAdd(*product, c);
}

// The number of elements of a tensor of `shape` (any container of int64).
// INVALID_ARGUMENT naming `what` when a dimension is negative or the product
// overflows int64.
template <typename Shape>
absl::StatusOr<int64_t> ShapeElementCount(const Shape& shape,
                                          absl::string_view what) {
  int64_t count = 1;
  for (int64_t dimension : shape) {
    std::optional<int64_t> product = CheckedMul(count, dimension);
    if (dimension < 0 || !product.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " has an invalid shape [", absl::StrJoin(shape, ", "), "]"));
    }
    count = *product;
  }
  return count;
}

}  // namespace embedding

#endif  // COMMON_CHECKED_MATH_H_
