// GradientAccumulator: the coalesce step of a push. It sums the gradient of
// each distinct row once, so that the optimizer then steps each touched row
// exactly once, under that row's lock (the "fused coalesce + optimizer"
// push of DESIGN.md): a batch that names a row many times costs one locked
// update, not many.
//
//   GradientAccumulator& gradient =
//       GradientAccumulator::ForThisThread(dim, indices.size());
//   for (size_t i = 0; i < indices.size(); ++i) {
//     gradient.Add(indices[i], &grad[i * dim], 1.0f);
//   }
//   if (scale_grad_by_freq) gradient.ScaleByFrequency(indices);
//   for (size_t s = 0; s < gradient.size(); ++s) {
//     Step(gradient.row(s), gradient.sum(s));
//   }
//
// Thread-compatible: one push uses one accumulator; ForThisThread gives each
// thread its own.
#ifndef SERVER_CORE_GRADIENT_ACCUMULATOR_H_
#define SERVER_CORE_GRADIENT_ACCUMULATOR_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"

namespace embedding {

class GradientAccumulator {
 public:
  // This thread's accumulator for rows of `dim` floats, emptied. Its buffers
  // stay allocated between pushes, so a steady stream of pushes allocates
  // (and page-faults) nothing.
  static GradientAccumulator& ForThisThread(int64_t dim, size_t expected_rows);

  GradientAccumulator(const GradientAccumulator&) = delete;
  GradientAccumulator& operator=(const GradientAccumulator&) = delete;

  // Adds scale * grad[0, dim) to the sum of `row`. Inline: it runs once per
  // index of every push.
  void Add(int64_t row, const float* grad, float scale) {
    float* sum = SumOf(row);
    for (int64_t d = 0; d < dim_; ++d) sum[d] += scale * grad[d];
  }

  // Adds `value` to one column of the sum of `row`.
  void AddElement(int64_t row, int64_t column, float value) {
    SumOf(row)[column] += value;
  }

  // Divides each row's sum by the number of times the row occurs in
  // `indices` (the batch's), as scale_grad_by_freq does. REQUIRES: every
  // accumulated row occurs in `indices`.
  void ScaleByFrequency(absl::Span<const int64_t> indices);

  // Distinct rows accumulated, in the order they first came.
  size_t size() const { return rows_.size(); }
  int64_t row(size_t slot) const { return rows_[slot]; }
  // The `dim` summed floats of the row in `slot`.
  const float* sum(size_t slot) const { return &sums_[slot * dim_]; }

 private:
  GradientAccumulator() = default;

  // The row's sum, created as zeros on first use.
  float* SumOf(int64_t row) {
    auto [it, inserted] = slots_.try_emplace(row, rows_.size());
    if (inserted) {
      rows_.push_back(row);
      sums_.resize(sums_.size() + dim_, 0.0f);
    }
    return &sums_[it->second * dim_];
  }

  int64_t dim_ = 0;
  absl::flat_hash_map<int64_t, size_t> slots_;  // Row -> slot.
  std::vector<int64_t> rows_;                   // Slot -> row.
  std::vector<float> sums_;                     // Slot -> dim floats.
  std::vector<int64_t> counts_;  // Slot -> occurrences (ScaleByFrequency).
};

}  // namespace embedding

#endif  // SERVER_CORE_GRADIENT_ACCUMULATOR_H_
