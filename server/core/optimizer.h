// Sparse optimizer steps applied to one row at a time, matching torch.optim
// on sparse gradients (and FBGEMM's row-wise Adagrad).
//
// State lives beside the rows: OptimizerStateWidth() floats per row,
// initialised to InitialOptimizerState(). A push coalesces its gradient and
// then calls ApplyOptimizerRow once per touched row, holding that row's lock.
//
//   StepParams params = MakeStepParams(spec, step, lr_override);
//   ApplyOptimizerRow(spec, params, dim, grad, weights, state);
#ifndef SERVER_CORE_OPTIMIZER_H_
#define SERVER_CORE_OPTIMIZER_H_

#include <cstdint>
#include <optional>

#include "server/core/table_spec.h"

namespace embedding {

// Floats of state per row: 0 (SGD), dim (Adagrad), 2 * dim (SparseAdam),
// 1 (row-wise Adagrad).
int64_t OptimizerStateWidth(OptimizerSpec::Kind kind, int64_t dim);

// Value each state float starts at.
float InitialOptimizerState(const OptimizerSpec& spec);

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

}  // namespace embedding

#endif  // SERVER_CORE_OPTIMIZER_H_
