#include "server/core/optimizer.h"

#include <cmath>

namespace embedding {

int64_t OptimizerStateWidth(OptimizerSpec::Kind kind, int64_t dim) {
  switch (kind) {
    case OptimizerSpec::Kind::kSgd:
      return 0;
    case OptimizerSpec::Kind::kAdagrad:
      return dim;
    case OptimizerSpec::Kind::kSparseAdam:
      return 2 * dim;
    case OptimizerSpec::Kind::kRowwiseAdagrad:
      return 1;
  }
  return 0;
}

float InitialOptimizerState(const OptimizerSpec& spec) {
  return spec.kind == OptimizerSpec::Kind::kAdagrad
             ? spec.initial_accumulator_value
             : 0.0f;
}

StepParams MakeStepParams(const OptimizerSpec& spec, int64_t step,
                          std::optional<float> lr_override) {
  const double lr = lr_override.value_or(spec.lr);
  StepParams params;
  params.lr = static_cast<float>(lr);
  if (spec.kind == OptimizerSpec::Kind::kAdagrad) {
    params.lr = static_cast<float>(
        lr / (1.0 + static_cast<double>(step - 1) * spec.lr_decay));
  } else if (spec.kind == OptimizerSpec::Kind::kSparseAdam) {
    const double t = static_cast<double>(step);
    const double bias_correction1 = 1.0 - std::pow(double{spec.beta1}, t);
    const double bias_correction2 = 1.0 - std::pow(double{spec.beta2}, t);
    params.step_size =
        static_cast<float>(lr * std::sqrt(bias_correction2) / bias_correction1);
  }
  return params;
}

void ApplyOptimizerRow(const OptimizerSpec& spec, const StepParams& params,
                       int64_t dim, const float* grad, float* weights,
                       float* state) {
  switch (spec.kind) {
    case OptimizerSpec::Kind::kSgd:
      for (int64_t d = 0; d < dim; ++d) weights[d] -= params.lr * grad[d];
      return;
    case OptimizerSpec::Kind::kAdagrad:
      for (int64_t d = 0; d < dim; ++d) {
        state[d] += grad[d] * grad[d];
        weights[d] -= params.lr * (grad[d] / (std::sqrt(state[d]) + spec.eps));
      }
      return;
    case OptimizerSpec::Kind::kSparseAdam: {
      // torch.optim.SparseAdam's update, term by term.
      float* exp_avg = state;
      float* exp_avg_sq = state + dim;
      const float one_minus_beta1 = 1.0f - spec.beta1;
      const float one_minus_beta2 = 1.0f - spec.beta2;
      for (int64_t d = 0; d < dim; ++d) {
        const float g = grad[d];
        exp_avg[d] += (g - exp_avg[d]) * one_minus_beta1;
        exp_avg_sq[d] += (g * g - exp_avg_sq[d]) * one_minus_beta2;
        const float denom = std::sqrt(exp_avg_sq[d]) + spec.eps;
        weights[d] += -params.step_size * (exp_avg[d] / denom);
      }
      return;
    }
    case OptimizerSpec::Kind::kRowwiseAdagrad: {
      // FBGEMM: one accumulator per row, fed the mean squared gradient.
      float sum_squares = 0;
      for (int64_t d = 0; d < dim; ++d) sum_squares += grad[d] * grad[d];
      state[0] += sum_squares / static_cast<float>(dim);
      const float multiplier = params.lr / (std::sqrt(state[0]) + spec.eps);
      for (int64_t d = 0; d < dim; ++d) weights[d] -= multiplier * grad[d];
      return;
    }
  }
}

}  // namespace embedding
