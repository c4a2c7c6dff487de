// A batch of bags for EmbeddingBag lookups and pushes, and its validation.
//
//   BagBatch batch{indices, offsets, BagMode::kMean};
//   absl::StatusOr<int64_t> bags = ValidateBagBatch(batch);
//   for (int64_t b = 0; b < *bags; ++b) { auto [begin, end] = BagBounds(batch,
//   b); }
#ifndef SERVER_CORE_BAG_H_
#define SERVER_CORE_BAG_H_

#include <cstdint>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace embedding {

enum class BagMode { kSum, kMean, kMax };

// Views of the caller's arrays, as nn.EmbeddingBag takes them.
struct BagBatch {
  absl::Span<const int64_t> indices;
  absl::Span<const int64_t> offsets;
  BagMode mode = BagMode::kSum;
  // Empty, or one weight per index (SUM only).
  absl::Span<const float> per_sample_weights;
  bool include_last_offset = false;
};

// Returns the number of bags. INVALID_ARGUMENT when offsets are empty, do not
// start at 0, decrease or pass the end of indices, or when per_sample_weights
// are given with MEAN/MAX, have the wrong length or are not finite.
// Indices themselves are checked by the table.
absl::StatusOr<int64_t> ValidateBagBatch(const BagBatch& batch);

// [begin, end) positions in `indices` of bag `bag` of a validated batch.
std::pair<int64_t, int64_t> BagBounds(const BagBatch& batch, int64_t bag);

}  // namespace embedding

#endif  // SERVER_CORE_BAG_H_
