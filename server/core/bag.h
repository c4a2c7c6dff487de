// EmbeddingBag in the engine: the pooling of F.embedding_bag (SUM, MEAN,
// MAX) into a reply of some dtype, and its backward, the scatter of each
// bag's gradient into a GradientAccumulator. The batch, its validation and
// torch's bag arithmetic are common/bag_math.h's (the sharded client shares
// them); the table supplies the rows and applies the gradient.
//
//   absl::StatusOr<ValidatedBagBatch> batch =
//       ValidateBagBatch({indices, offsets, BagMode::kMean});
//   if (!batch.ok()) return batch.status();
//   absl::Status pooled = PoolBags(*batch, dim, markers, read_row,
//                                  DType::kFloat32, out,
//                                  /*max_indices=*/nullptr);
//   absl::Status s = ScatterBagGradients(*batch, dim, markers, grad,
//                                        /*max_indices=*/{}, gradient);
//
// `markers` (common/bag_math.h): the padding row to skip and what marks an
// empty bag in max_indices; a dense table's padding row (-1: none) converts
// to its markers.
//
// Thread-compatible: plain values and functions; PoolBags reads rows only
// through `read_row`, which the table makes safe.
#ifndef SERVER_CORE_BAG_H_
#define SERVER_CORE_BAG_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/bag_math.h"
#include "common/cancellation.h"
#include "server/core/dtype.h"
#include "server/core/gradient_accumulator.h"

namespace embedding {

// F.embedding_bag's forward (PoolBagRows): writes [bags, dim] pooled rows to
// `out` as `dtype`. Entries equal to markers.padding are skipped. In MAX
// mode, `max_indices` (bags * dim) receives the winning row per element
// (markers.no_row for empty bags); it may be null otherwise. `read_row(index,
// use)` calls `use(const float* row)` with the floats of global row `index`,
// read as of one update (a consistent copy, see EmbeddingTable). REQUIRES:
// `read_row` can read every index of the batch. Asks `cancel` every
// kRowsBetweenCancelChecks rows and returns cancel.Status() when it says so
// (`out` then partly written).
template <typename ReadRow>
absl::Status PoolBags(const ValidatedBagBatch& batch, int64_t dim,
                      const BagMarkers& markers, ReadRow&& read_row,
                      DType dtype, void* out, int64_t* max_indices,
                      const Cancellation& cancel = NeverCancelled()) {
  const size_t row_bytes = dim * ElementSize(dtype);
  return PoolBagRows(
      batch, dim, markers, read_row, max_indices,
      [&](int64_t bag, const float* pooled) {
        ConvertFloats(pooled, dim, dtype,
                      static_cast<char*>(out) + bag * row_bytes);
      },
      cancel);
}

// Backward of PoolBags: adds `grad` ([bags, dim]) to `gradient`, row by
// global row id. SUM scales by the per-sample weight, MEAN by 1 / count; in
// MAX mode each element goes to the row `max_indices` names (what PoolBags
// returned). INVALID_ARGUMENT when max_indices has the wrong size or names a
// row that is not in the batch; cancel.Status() when `cancel`, asked every
// kRowsBetweenCancelChecks rows, says so. Scratch: MAX mode indexes the
// batch's rows, PositionIndex::BytesBound(indices) bytes. REQUIRES:
// grad.size() == bags * dim.
absl::Status ScatterBagGradients(const ValidatedBagBatch& batch, int64_t dim,
                                 const BagMarkers& markers,
                                 absl::Span<const float> grad,
                                 absl::Span<const int64_t> max_indices,
                                 GradientAccumulator& gradient,
                                 const Cancellation& cancel = NeverCancelled());

}  // namespace embedding

#endif  // SERVER_CORE_BAG_H_
