#include "common/bag_math.h"

#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/checked_math.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

absl::Status CheckOffsets(const BagBatch& batch) {
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
  const int64_t num_indices = static_cast<int64_t>(batch.indices.size());
  if (batch.offsets[num_offsets - 1] > num_indices) {
    return absl::InvalidArgumentError(absl::StrCat(
        "offsets[", num_offsets - 1, "] = ", batch.offsets[num_offsets - 1],
        " is past the end of indices (", num_indices, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckPerSampleWeights(const BagBatch& batch) {
  if (batch.per_sample_weights.empty()) return absl::OkStatus();
  if (batch.mode != BagMode::kSum) {
    return absl::InvalidArgumentError(
        "per_sample_weights are only supported with mode SUM, as in torch");
  }
  if (batch.per_sample_weights.size() != batch.indices.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "per_sample_weights has ", batch.per_sample_weights.size(),
        " entries, expected one per index (", batch.indices.size(), ")"));
  }
  for (size_t i = 0; i < batch.per_sample_weights.size(); ++i) {
    if (!std::isfinite(batch.per_sample_weights[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("per_sample_weights[", i, "] is not finite"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ValidatedBagBatch> ValidateBagBatch(const BagBatch& batch) {
  EMBEDDING_RETURN_IF_ERROR(CheckOffsets(batch));
  EMBEDDING_RETURN_IF_ERROR(CheckPerSampleWeights(batch));
  const int64_t num_offsets = static_cast<int64_t>(batch.offsets.size());
  return ValidatedBagBatch(
      batch, batch.include_last_offset ? num_offsets - 1 : num_offsets);
}

absl::Status CheckMaxIndicesSize(const ValidatedBagBatch& batch, int64_t dim,
                                 size_t size) {
  const std::optional<int64_t> elements = CheckedMul(batch.bags(), dim);
  if (elements.has_value() && static_cast<int64_t>(size) == *elements) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "max_indices has ", size, " entries, expected bags x embedding_dim = ",
      elements.has_value() ? absl::StrCat(*elements) : "more than 2^63",
      " (as LookupBag returned them)"));
}

namespace internal {

absl::Status MaxIndexNotInBatchError(size_t element, int64_t index) {
  return absl::InvalidArgumentError(
      absl::StrCat("max_indices[", element, "] = ", index,
                   " is not one of the batch's indices"));
}

}  // namespace internal
}  // namespace embedding
