#include "server/core/bag.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/cancel_check.h"
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

// Backward of MAX: each element's gradient goes to the row that won it.
absl::Status ScatterMaxGradients(const ValidatedBagBatch& batch, int64_t dim,
                                 int64_t padding_row,
                                 absl::Span<const float> grad,
                                 absl::Span<const int64_t> max_indices,
                                 GradientAccumulator& gradient,
                                 PeriodicCancelCheck& check) {
  const std::optional<int64_t> elements = CheckedMul(batch.bags(), dim);
  if (!elements.has_value() ||
      static_cast<int64_t>(max_indices.size()) != *elements) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_indices has ", max_indices.size(),
        " entries, expected bags x embedding_dim = ",
        elements.has_value() ? absl::StrCat(*elements) : "more than 2^63",
        " (as LookupBag returned them)"));
  }
  // Only rows of the batch may get a gradient: the table checked those.
  const absl::Span<const int64_t> indices = batch.indices();
  const auto index_at = [&](uint32_t position) { return indices[position]; };
  PositionIndex in_batch;
  in_batch.Reset(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    if (check.Cancelled()) return check.status();
    in_batch.FindOrInsert(indices[i], static_cast<uint32_t>(i), index_at);
  }
  for (size_t i = 0; i < max_indices.size(); ++i) {
    if (check.Cancelled()) return check.status();
    const int64_t index = max_indices[i];
    if (index == -1 || index == padding_row) continue;
    if (!in_batch.Contains(index, index_at)) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_indices[", i, "] = ", index,
                       " is not one of the batch's indices"));
    }
    gradient.AddElement(index, static_cast<int64_t>(i) % dim, grad[i]);
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

absl::Status ScatterBagGradients(const ValidatedBagBatch& batch, int64_t dim,
                                 int64_t padding_row,
                                 absl::Span<const float> grad,
                                 absl::Span<const int64_t> max_indices,
                                 GradientAccumulator& gradient,
                                 const Cancellation& cancel) {
  PeriodicCancelCheck check(cancel);
  if (batch.mode() == BagMode::kMax) {
    return ScatterMaxGradients(batch, dim, padding_row, grad, max_indices,
                               gradient, check);
  }
  for (int64_t bag = 0; bag < batch.bags(); ++bag) {
    const auto [begin, end] = batch.Bounds(bag);
    int64_t count = 0;
    for (int64_t position = begin; position < end; ++position) {
      count += batch.indices()[position] == padding_row ? 0 : 1;
    }
    for (int64_t position = begin; position < end; ++position) {
      if (check.Cancelled()) return check.status();
      const int64_t index = batch.indices()[position];
      if (index == padding_row) continue;
      const float scale = batch.mode() == BagMode::kMean
                              ? 1.0f / static_cast<float>(count)
                              : batch.Weight(position);
      gradient.Add(index, &grad[bag * dim], scale);
    }
  }
  return absl::OkStatus();
}

}  // namespace embedding
