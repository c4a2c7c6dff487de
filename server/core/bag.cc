#include "server/core/bag.h"

#include "common/cancel_check.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

// Backward of MAX: each element's gradient goes to the row that won it.
absl::Status ScatterMaxGradients(const ValidatedBagBatch& batch, int64_t dim,
                                 const BagMarkers& markers,
                                 absl::Span<const float> grad,
                                 absl::Span<const int64_t> max_indices,
                                 GradientAccumulator& gradient,
                                 const Cancellation& cancel) {
  EMBEDDING_RETURN_IF_ERROR(
      CheckMaxIndicesSize(batch, dim, max_indices.size()));
  // Only rows of the batch may get a gradient: the table checked those.
  const absl::Span<const int64_t> indices = batch.indices();
  const auto index_at = [&](uint32_t position) { return indices[position]; };
  PositionIndex in_batch;
  in_batch.Reset(indices.size());
  PeriodicCancelCheck check(cancel);
  for (size_t i = 0; i < indices.size(); ++i) {
    if (check.Cancelled()) return check.status();
    in_batch.FindOrInsert(indices[i], static_cast<uint32_t>(i), index_at);
  }
  return ForEachMaxGradient(
      max_indices, markers,
      [&](int64_t index) { return in_batch.Contains(index, index_at); },
      [&](size_t element, int64_t index) {
        gradient.AddElement(index, static_cast<int64_t>(element) % dim,
                            grad[element]);
      },
      cancel);
}

}  // namespace

absl::Status ScatterBagGradients(const ValidatedBagBatch& batch, int64_t dim,
                                 const BagMarkers& markers,
                                 absl::Span<const float> grad,
                                 absl::Span<const int64_t> max_indices,
                                 GradientAccumulator& gradient,
                                 const Cancellation& cancel) {
  if (batch.mode() == BagMode::kMax) {
    return ScatterMaxGradients(batch, dim, markers, grad, max_indices, gradient,
                               cancel);
  }
  return ForEachBagGradient(
      batch, markers,
      [&](int64_t bag, int64_t index, float scale) {
        gradient.Add(index, &grad[bag * dim], scale);
      },
      cancel);
}

}  // namespace embedding
