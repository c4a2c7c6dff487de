#include "common/row_checks.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/checked_math.h"

namespace embedding {

absl::Status CheckFiniteRows(absl::Span<const float> values, int64_t dim,
                             const char* what) {
  // A first pass that never stops early vectorises (a push's gradients are
  // checked in full on every push); the second only names the bad value.
  uint32_t non_finite = 0;
  for (const float value : values) {
    non_finite |= (std::bit_cast<uint32_t>(value) & 0x7f800000u) == 0x7f800000u;
  }
  if (non_finite == 0) return absl::OkStatus();
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " has a non-finite value (", values[i],
                       ") at row ", i / dim, ", column ", i % dim));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRowsShape(absl::Span<const float> values, int64_t rows,
                            int64_t dim, const char* what) {
  const std::optional<int64_t> expected = CheckedMul(rows, dim);
  if (!expected.has_value() ||
      static_cast<int64_t>(values.size()) != *expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " has ", values.size(), " elements, expected [", rows, ", ", dim,
        "] = ",
        expected.has_value() ? absl::StrCat(*expected) : "more than 2^63"));
  }
  return CheckFiniteRows(values, dim, what);
}

}  // namespace embedding
