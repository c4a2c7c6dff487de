// nn.EmbeddingBag's batch and arithmetic, one copy for the server's engine
// (server/core/bag.h) and the sharded C++ client, which pools bags whose rows
// live on several servers (client/cpp/bag_pooling.h): the batch and its
// validation, the pooling of F.embedding_bag (SUM, MEAN, MAX), the per-index
// scale of its backward and the checks of max_indices, with torch's rules:
// offsets and include_last_offset, per_sample_weights (SUM only), empty bags
// give zeros, the padding row is skipped and left out of MEAN's count. Who
// reads the rows (the table, or the client's gathered copy) and where the
// results go (a reply of some dtype, a GradientAccumulator, a PushGradients)
// is the caller's; the arithmetic being in one place makes server and client
// agree bit for bit.
//
//   EMBEDDING_ASSIGN_OR_RETURN(const ValidatedBagBatch batch,
//                              ValidateBagBatch({indices, offsets,
//                                                BagMode::kMean}));
//   const BagMarkers markers = BagMarkers::ForTable(dynamic, padding);
//   EMBEDDING_RETURN_IF_ERROR(PoolBagRows(
//       batch, dim, markers, read_row, /*max_indices=*/nullptr,
//       [&](int64_t bag, const float* pooled) { ... }));
//   EMBEDDING_RETURN_IF_ERROR(ForEachBagGradient(
//       batch, markers,
//       [&](int64_t bag, int64_t index, float scale) { ... }));
//
// Thread-compatible: plain values and functions. No gRPC, no protobuf.
#ifndef COMMON_BAG_MATH_H_
#define COMMON_BAG_MATH_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/cancel_check.h"
#include "common/cancellation.h"

namespace embedding {

enum class BagMode { kSum, kMean, kMax };

// The ids a table's bags treat apart: entries equal to `padding` are
// skipped (padding_idx), and `no_row` fills the elements of max_indices
// that no row won (empty bags). A dense table's rows are [0, N), so -1
// marks both (the wire contract); a dynamic table's ids are any int64 but
// INT64_MIN (kReservedId), which marks both there. Without a padding row
// `padding` is `no_row`, which no index of a valid batch equals.
struct BagMarkers {
  static constexpr int64_t kDenseNoRow = -1;
  static constexpr int64_t kDynamicNoRow = std::numeric_limits<int64_t>::min();

  // A table's markers: dynamic or dense, its padding id or row if any.
  static BagMarkers ForTable(bool dynamic, std::optional<int64_t> padding) {
    const int64_t no_row = dynamic ? kDynamicNoRow : kDenseNoRow;
    return BagMarkers(padding.value_or(no_row), no_row);
  }

  // A dense table's: its padding row, or -1 for none. Implicit, so that a
  // dense table's padding row is all its callers pass.
  BagMarkers(int64_t dense_padding_row)  // NOLINT(google-explicit-constructor)
      : BagMarkers(dense_padding_row, kDenseNoRow) {}
  BagMarkers(int64_t padding, int64_t no_row)
      : padding(padding), no_row(no_row) {}

  int64_t padding;
  int64_t no_row;
};

// Views of the caller's arrays, as nn.EmbeddingBag takes them. Unchecked:
// the arithmetic takes only a ValidatedBagBatch.
struct BagBatch {
  absl::Span<const int64_t> indices;
  absl::Span<const int64_t> offsets;
  BagMode mode = BagMode::kSum;
  // Empty, or one weight per index (SUM only).
  absl::Span<const float> per_sample_weights;
  bool include_last_offset = false;
};

// A BagBatch that ValidateBagBatch accepted, with its bag count. Only
// ValidateBagBatch makes one, so whoever takes one knows the batch was
// checked. It views the caller's arrays, which must outlive it. A plain
// value; thread-compatible.
class ValidatedBagBatch {
 public:
  BagMode mode() const { return batch_.mode; }
  absl::Span<const int64_t> indices() const { return batch_.indices; }
  int64_t bags() const { return bags_; }

  // [begin, end) positions in indices() of bag `bag` (in [0, bags())).
  std::pair<int64_t, int64_t> Bounds(int64_t bag) const {
    const int64_t begin = batch_.offsets[bag];
    const int64_t end = bag + 1 < static_cast<int64_t>(batch_.offsets.size())
                            ? batch_.offsets[bag + 1]
                            : static_cast<int64_t>(batch_.indices.size());
    return {begin, end};
  }

  // Where the last bag ends: indices from here on (include_last_offset with
  // a last offset short of the end) belong to no bag.
  int64_t BagsEnd() const { return Bounds(bags_ - 1).second; }

  // The weight of the index at `position`: 1 without per_sample_weights.
  float Weight(int64_t position) const {
    return batch_.per_sample_weights.empty()
               ? 1.0f
               : batch_.per_sample_weights[position];
  }

 private:
  friend absl::StatusOr<ValidatedBagBatch> ValidateBagBatch(
      const BagBatch& batch);
  ValidatedBagBatch(const BagBatch& batch, int64_t bags)
      : batch_(batch), bags_(bags) {}

  BagBatch batch_;
  int64_t bags_;
};

// INVALID_ARGUMENT when offsets are empty, do not start at 0, decrease or
// pass the end of indices, or when per_sample_weights are given with
// MEAN/MAX, have the wrong length or are not finite. Indices themselves are
// checked by whoever knows the table's rows.
absl::StatusOr<ValidatedBagBatch> ValidateBagBatch(const BagBatch& batch);

// F.embedding_bag's forward, bag by bag in float32: `emit(bag, pooled)` gets
// the `dim` pooled floats of each bag (zeros when empty). Entries equal to
// `markers.padding` are skipped. In MAX mode, `max_indices` (bags * dim)
// receives the winning row per element (markers.no_row for empty bags; ties
// stay with the earlier position); it may be null otherwise. `read_row(index,
// use)` calls `use(const float* row)` with the floats of row `index`.
// REQUIRES: `read_row` can read every index of the batch. Asks `cancel` every
// kRowsBetweenCancelChecks rows and returns cancel.Status() when it says so.
//
// Templates so that the row read, the pooling and the output inline into one
// loop: an absl::FunctionRef per row made the server's LookupBag 12% slower.
template <typename ReadRow, typename Emit>
absl::Status PoolBagRows(const ValidatedBagBatch& batch, int64_t dim,
                         const BagMarkers& markers, ReadRow&& read_row,
                         int64_t* max_indices, Emit&& emit,
                         const Cancellation& cancel = NeverCancelled());

// Backward of PoolBagRows in SUM and MEAN mode: calls `add(bag, index,
// scale)` for each pooled entry in position order, where the entry's row
// gets `scale` times the bag's gradient row (the per-sample weight for SUM,
// 1 / count for MEAN); entries equal to markers.padding get none. Returns
// cancel.Status() when `cancel`, asked every kRowsBetweenCancelChecks rows,
// says so. REQUIRES: mode is not MAX.
template <typename Add>
absl::Status ForEachBagGradient(const ValidatedBagBatch& batch,
                                const BagMarkers& markers, Add&& add,
                                const Cancellation& cancel = NeverCancelled());

// Backward of MAX: INVALID_ARGUMENT unless `max_indices` has bags * dim
// entries (what PoolBagRows returned).
absl::Status CheckMaxIndicesSize(const ValidatedBagBatch& batch, int64_t dim,
                                 size_t size);

// Backward of MAX: calls `add(element, index)` for each element of
// `max_indices` that names a row (not markers.no_row, not markers.padding),
// in order.
// INVALID_ARGUMENT for a row of which `in_batch(index)` says false (not one
// of the batch's indices); cancel.Status() as ForEachBagGradient.
template <typename InBatch, typename Add>
absl::Status ForEachMaxGradient(absl::Span<const int64_t> max_indices,
                                const BagMarkers& markers, InBatch&& in_batch,
                                Add&& add,
                                const Cancellation& cancel = NeverCancelled());

// Implementation.

namespace internal {

absl::Status MaxIndexNotInBatchError(size_t element, int64_t index);

}  // namespace internal

template <typename ReadRow, typename Emit>
absl::Status PoolBagRows(const ValidatedBagBatch& batch, int64_t dim,
                         const BagMarkers& markers, ReadRow&& read_row,
                         int64_t* max_indices, Emit&& emit,
                         const Cancellation& cancel) {
  PeriodicCancelCheck check(cancel);
  const bool is_max = batch.mode() == BagMode::kMax;
  std::vector<float> pooled(dim);
  for (int64_t bag = 0; bag < batch.bags(); ++bag) {
    std::fill(pooled.begin(), pooled.end(), 0.0f);
    int64_t* bag_max_indices = is_max ? max_indices + bag * dim : nullptr;
    if (is_max) std::fill_n(bag_max_indices, dim, markers.no_row);
    int64_t count = 0;
    const auto [begin, end] = batch.Bounds(bag);
    for (int64_t position = begin; position < end; ++position) {
      if (check.Cancelled()) return check.status();
      const int64_t index = batch.indices()[position];
      if (index == markers.padding) continue;
      const float weight = batch.Weight(position);
      const bool first = count == 0;
      read_row(index, [&](const float* row) {
        if (is_max) {
          for (int64_t d = 0; d < dim; ++d) {
            if (first || row[d] > pooled[d]) {
              pooled[d] = row[d];
              bag_max_indices[d] = index;
            }
          }
        } else {
          for (int64_t d = 0; d < dim; ++d) pooled[d] += weight * row[d];
        }
      });
      ++count;
    }
    if (batch.mode() == BagMode::kMean && count > 0) {
      for (float& value : pooled) value /= static_cast<float>(count);
    }
    emit(bag, static_cast<const float*>(pooled.data()));
  }
  return absl::OkStatus();
}

template <typename Add>
absl::Status ForEachBagGradient(const ValidatedBagBatch& batch,
                                const BagMarkers& markers, Add&& add,
                                const Cancellation& cancel) {
  PeriodicCancelCheck check(cancel);
  const absl::Span<const int64_t> indices = batch.indices();
  for (int64_t bag = 0; bag < batch.bags(); ++bag) {
    const auto [begin, end] = batch.Bounds(bag);
    int64_t count = 0;
    for (int64_t position = begin; position < end; ++position) {
      count += indices[position] == markers.padding ? 0 : 1;
    }
    for (int64_t position = begin; position < end; ++position) {
      if (check.Cancelled()) return check.status();
      const int64_t index = indices[position];
      if (index == markers.padding) continue;
      const float scale = batch.mode() == BagMode::kMean
                              ? 1.0f / static_cast<float>(count)
                              : batch.Weight(position);
      add(bag, index, scale);
    }
  }
  return absl::OkStatus();
}

template <typename InBatch, typename Add>
absl::Status ForEachMaxGradient(absl::Span<const int64_t> max_indices,
                                const BagMarkers& markers, InBatch&& in_batch,
                                Add&& add, const Cancellation& cancel) {
  PeriodicCancelCheck check(cancel);
  for (size_t i = 0; i < max_indices.size(); ++i) {
    if (check.Cancelled()) return check.status();
    const int64_t index = max_indices[i];
    if (index == markers.no_row || index == markers.padding) continue;
    if (!in_batch(index)) return internal::MaxIndexNotInBatchError(i, index);
    add(i, index);
  }
  return absl::OkStatus();
}

}  // namespace embedding

#endif  // COMMON_BAG_MATH_H_
