// EmbeddingBag in the engine: a batch of bags, its validation, the pooling
// of F.embedding_bag (SUM, MEAN, MAX) and its backward, the scatter of each
// bag's gradient to the rows it pooled. The table supplies the rows and
// applies the gradient; this file holds torch's bag semantics: offsets and
// include_last_offset, per_sample_weights (SUM only), empty bags give zeros,
// the padding row is skipped and left out of MEAN's count.
//
//   absl::StatusOr<ValidatedBagBatch> batch =
//       ValidateBagBatch({indices, offsets, BagMode::kMean});
//   if (!batch.ok()) return batch.status();
//   absl::Status pooled = PoolBags(*batch, dim, padding_row, read_row,
//                                  DType::kFloat32, out,
//                                  /*max_indices=*/nullptr);
//   absl::Status s = ScatterBagGradients(*batch, dim, padding_row, grad,
//                                        /*max_indices=*/{}, gradient);
//
// Thread-compatible: plain values and functions; PoolBags reads rows only
// through `read_row`, which the table makes safe.
#ifndef SERVER_CORE_BAG_H_
#define SERVER_CORE_BAG_H_

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/cancel_check.h"
#include "common/cancellation.h"
#include "server/core/dtype.h"
#include "server/core/gradient_accumulator.h"

namespace embedding {

enum class BagMode { kSum, kMean, kMax };

// Views of the caller's arrays, as nn.EmbeddingBag takes them. Unchecked:
// the engine takes only a ValidatedBagBatch.
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
// checked, exactly once. It views the caller's arrays, which must outlive it.
// A plain value; thread-compatible.
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
// checked by the table, which knows its rows.
absl::StatusOr<ValidatedBagBatch> ValidateBagBatch(const BagBatch& batch);

// F.embedding_bag's forward: writes [bags, dim] pooled rows to `out` as
// `dtype`. Entries equal to `padding_row` (-1: none) are skipped. In MAX
// mode, `max_indices` (bags * dim) receives the winning row per element (-1
// for empty bags); it may be null otherwise. `read_row(index, use)` calls
// `use(const float* row)` with the floats of global row `index`, read as of
// one update (the table holds the row's lock during the call). REQUIRES:
// `read_row` can read every index of the batch. Asks `cancel` every
// kRowsBetweenCancelChecks rows and returns cancel.Status() when it says so
// (`out` then partly written).
//
// A template so that the row read and the pooling inline into one loop: an
// absl::FunctionRef per row made LookupBag 12% slower.
template <typename ReadRow>
absl::Status PoolBags(const ValidatedBagBatch& batch, int64_t dim,
                      int64_t padding_row, ReadRow&& read_row, DType dtype,
                      void* out, int64_t* max_indices,
                      const Cancellation& cancel = NeverCancelled());

// Backward of PoolBags: adds `grad` ([bags, dim]) to `gradient`, row by
// global row id. SUM scales by the per-sample weight, MEAN by 1 / count; in
// MAX mode each element goes to the row `max_indices` names (what PoolBags
// returned). INVALID_ARGUMENT when max_indices has the wrong size or names a
// row that is not in the batch; cancel.Status() when `cancel`, asked every
// kRowsBetweenCancelChecks rows, says so. Scratch: MAX mode indexes the
// batch's rows, PositionIndex::BytesBound(indices) bytes. REQUIRES:
// grad.size() == bags * dim.
absl::Status ScatterBagGradients(const ValidatedBagBatch& batch, int64_t dim,
                                 int64_t padding_row,
                                 absl::Span<const float> grad,
                                 absl::Span<const int64_t> max_indices,
                                 GradientAccumulator& gradient,
                                 const Cancellation& cancel = NeverCancelled());

// Implementation.

template <typename ReadRow>
absl::Status PoolBags(const ValidatedBagBatch& batch, int64_t dim,
                      int64_t padding_row, ReadRow&& read_row, DType dtype,
                      void* out, int64_t* max_indices,
                      const Cancellation& cancel) {
  PeriodicCancelCheck check(cancel);
  const bool is_max = batch.mode() == BagMode::kMax;
  const size_t row_bytes = dim * ElementSize(dtype);
  std::vector<float> pooled(dim);
  for (int64_t bag = 0; bag < batch.bags(); ++bag) {
    std::fill(pooled.begin(), pooled.end(), 0.0f);
    int64_t* bag_max_indices = is_max ? max_indices + bag * dim : nullptr;
    if (is_max) std::fill_n(bag_max_indices, dim, int64_t{-1});
    int64_t count = 0;
    const auto [begin, end] = batch.Bounds(bag);
    for (int64_t position = begin; position < end; ++position) {
      if (check.Cancelled()) return check.status();
      const int64_t index = batch.indices()[position];
      if (index == padding_row) continue;
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
    ConvertFloats(pooled.data(), dim, dtype,
                  static_cast<char*>(out) + bag * row_bytes);
  }
  return absl::OkStatus();
}

}  // namespace embedding

#endif  // SERVER_CORE_BAG_H_
