#include "server/core/gradient_accumulator.h"

namespace embedding {

GradientAccumulator& GradientAccumulator::ForThisThread(int64_t dim,
                                                        size_t expected_rows) {
  thread_local GradientAccumulator accumulator;
  accumulator.dim_ = dim;
  accumulator.slots_.clear();
  accumulator.slots_.reserve(expected_rows);
  accumulator.rows_.clear();
  accumulator.sums_.clear();
  return accumulator;
}

void GradientAccumulator::ScaleByFrequency(absl::Span<const int64_t> indices) {
  counts_.assign(rows_.size(), 0);
  for (int64_t index : indices) {
    // Rows the push skipped (the padding row) have no slot and no count.
    auto it = slots_.find(index);
    if (it != slots_.end()) ++counts_[it->second];
  }
  for (size_t slot = 0; slot < rows_.size(); ++slot) {
    const float count = static_cast<float>(counts_[slot]);
    float* sum = &sums_[slot * dim_];
    for (int64_t d = 0; d < dim_; ++d) sum[d] /= count;
  }
}

}  // namespace embedding
