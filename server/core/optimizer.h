// Sparse optimizer steps applied to one row at a time, matching torch.optim
// on sparse gradients (FBGEMM for row-wise Adagrad, TensorFlow for FTRL).
// What each optimizer is (name, state, hyper-parameters) is described in
// common/optimizer_kinds.h; this file holds only the kernels.
//
// State lives beside the rows: OptimizerStateWidth() floats per row, laid
// out slot after slot as InfoOf(kind).state lists them. A push coalesces its
// gradient and then calls ApplyOptimizerRowShared once per touched row,
// holding that row's lock.
//
//   InitializeOptimizerState(spec, dim, state);  // at creation
//   StepParams params = MakeStepParams(spec, step, lr_override);
//   ApplyOptimizerRow(spec, params, dim, grad, weights, state);
#ifndef SERVER_CORE_OPTIMIZER_H_
#define SERVER_CORE_OPTIMIZER_H_

#include <cstdint>
#include <optional>

#include "common/optimizer_kinds.h"

namespace embedding {

// Writes the starting state of one row (OptimizerStateWidth floats).
void InitializeOptimizerState(const OptimizerSpec& spec, int64_t dim,
                              float* state);

// Per-push scalars, computed once per push as torch computes them per step
// (in double, then used as float).
struct StepParams {
  float lr = 0;         // Effective learning rate (Adagrad: with lr_decay).
  float step_size = 0;  // SparseAdam: lr * sqrt(1 - beta2^t) / (1 - beta1^t).
};

// `step` is the table's step count including this push (>= 1).
StepParams MakeStepParams(const OptimizerSpec& spec, int64_t step,
                          std::optional<float> lr_override);

// Applies one step to a row: `weights` and `state` (OptimizerStateWidth
// floats) are updated in place from the coalesced `grad`.
void ApplyOptimizerRow(const OptimizerSpec& spec, const StepParams& params,
                       int64_t dim, const float* grad, float* weights,
                       float* state);

// ApplyOptimizerRow for a row that lock-free readers may load while it runs
// (seqlock.h): each new weight is stored as a relaxed atomic. The same
// arithmetic, one float at a time.
void ApplyOptimizerRowShared(const OptimizerSpec& spec,
                             const StepParams& params, int64_t dim,
                             const float* grad, float* weights, float* state);

}  // namespace embedding

#endif  // SERVER_CORE_OPTIMIZER_H_
