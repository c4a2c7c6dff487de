#include "server/core/bag.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace embedding {

absl::StatusOr<int64_t> ValidateBagBatch(const BagBatch& batch) {
  const int64_t num_indices = static_cast<int64_t>(batch.indices.size());
  const int64_t num_offsets = static_cast<int64_t>(batch.offsets.size());
  if (num_offsets == 0 || (batch.include_last_offset && num_offsets < 2)) {
    return absl::InvalidArgumentError(
        batch.include_last_offset
            ? "offsets needs at least 2 entries with include_last_offset"
            : "offsets is empty: a batch needs at least one bag");
  }
  if (batch.offsets[0] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("offsets[0] must be 0, got ", batch.offsets[0]));
  }
  for (int64_t i = 1; i < num_offsets; ++i) {
    if (batch.offsets[i] < batch.offsets[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("offsets must be non-decreasing: offsets[", i,
                       "] = ", batch.offsets[i], " < offsets[", i - 1,
                       "] = ", batch.offsets[i - 1]));
    }
  }
  if (batch.offsets[num_offsets - 1] > num_indices) {
    return absl::InvalidArgumentError(absl::StrCat(
        "offsets[", num_offsets - 1, "] = ", batch.offsets[num_offsets - 1],
        " is past the end of indices (", num_indices, ")"));
  }
  if (!batch.per_sample_weights.empty()) {
    if (batch.mode != BagMode::kSum) {
      return absl::InvalidArgumentError(
          "per_sample_weights are only supported with mode SUM, as in torch");
    }
    if (static_cast<int64_t>(batch.per_sample_weights.size()) != num_indices) {
      return absl::InvalidArgumentError(absl::StrCat(
          "per_sample_weights has ", batch.per_sample_weights.size(),
          " entries, expected one per index (", num_indices, ")"));
    }
    for (size_t i = 0; i < batch.per_sample_weights.size(); ++i) {
      if (!std::isfinite(batch.per_sample_weights[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("per_sample_weights[", i, "] is not finite"));
      }
    }
  }
  return batch.include_last_offset ? num_offsets - 1 : num_offsets;
}

std::pair<int64_t, int64_t> BagBounds(const BagBatch& batch, int64_t bag) {
  const int64_t begin = batch.offsets[bag];
  const int64_t end = bag + 1 < static_cast<int64_t>(batch.offsets.size())
                          ? batch.offsets[bag + 1]
                          : static_cast<int64_t>(batch.indices.size());
  return {begin, end};
}

}  // namespace embedding
