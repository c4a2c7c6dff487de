#include "server/core/optimizer.h"

#include <algorithm>
#include <atomic>
#include <cmath>

namespace embedding {

namespace {

// FTRL-Proximal per coordinate, as TensorFlow's ApplyFtrl (with beta, as its
// Ftrl optimizer): the accumulator n sums squared gradients, the linear term
// z tracks the gradient minus the proximal pull, and the weight is the
// closed-form minimiser, exactly 0 while |z| <= l1. Computed in double so
// that the float results do not depend on the order of the terms.
template <typename StoreWeight>
void ApplyFtrlRow(const OptimizerSpec& spec, float lr, int64_t dim,
                  const float* grad, float* weights, float* state,
                  StoreWeight store) {
  float* accumulator = state;
  float* linear = state + dim;
  const double alpha = lr;
  const double power = -double{spec.lr_power};
  const bool square_root = spec.lr_power == -0.5f;
  const auto rate = [&](double n) {
    return square_root ? std::sqrt(n) : std::pow(n, power);
  };
  for (int64_t d = 0; d < dim; ++d) {
    const double g = grad[d];
    const double n = accumulator[d];
    const double new_n = n + g * g;
    const double sigma = (rate(new_n) - rate(n)) / alpha;
    const double z = linear[d] + g - sigma * weights[d];
    linear[d] = static_cast<float>(z);
    accumulator[d] = static_cast<float>(new_n);
    if (std::abs(z) <= spec.l1) {
      store(&weights[d], 0.0f);
    } else {
      const double quadratic =
          (spec.beta + rate(new_n)) / alpha + 2.0 * spec.l2;
      const double l1 = z > 0 ? spec.l1 : -double{spec.l1};
      store(&weights[d], static_cast<float>((l1 - z) / quadratic));
    }
  }
}

}  // namespace

void InitializeOptimizerState(const OptimizerSpec& spec, int64_t dim,
                              float* state) {
  for (const StateSlot& slot : InfoOf(spec.kind).state) {
    const int64_t width = slot.per_element ? dim : 1;
    const float value =
        slot.initial_value == nullptr ? 0.0f : spec.*slot.initial_value;
    std::fill(state, state + width, value);
    state += width;
  }
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

namespace {

// ApplyOptimizerRow with each new weight written by store(&weight, value).
template <typename StoreWeight>
void StepRow(const OptimizerSpec& spec, const StepParams& params, int64_t dim,
             const float* grad, float* weights, float* state,
             StoreWeight store) {
  switch (spec.kind) {
    case OptimizerSpec::Kind::kSgd:
      for (int64_t d = 0; d < dim; ++d) {
        store(&weights[d], weights[d] - params.lr * grad[d]);
      }
      return;
    case OptimizerSpec::Kind::kAdagrad:
      for (int64_t d = 0; d < dim; ++d) {
        state[d] += grad[d] * grad[d];
        store(&weights[d],
              weights[d] -
                  params.lr * (grad[d] / (std::sqrt(state[d]) + spec.eps)));
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
        store(&weights[d],
              weights[d] + -params.step_size * (exp_avg[d] / denom));
      }
      return;
    }
    case OptimizerSpec::Kind::kRowwiseAdagrad: {
      // FBGEMM: one accumulator per row, fed the mean squared gradient.
      float sum_squares = 0;
      for (int64_t d = 0; d < dim; ++d) sum_squares += grad[d] * grad[d];
      state[0] += sum_squares / static_cast<float>(dim);
      const float multiplier = params.lr / (std::sqrt(state[0]) + spec.eps);
      for (int64_t d = 0; d < dim; ++d) {
        store(&weights[d], weights[d] - multiplier * grad[d]);
      }
      return;
    }
    case OptimizerSpec::Kind::kFtrl:
      ApplyFtrlRow(spec, params.lr, dim, grad, weights, state, store);
      return;
  }
}

}  // namespace

void ApplyOptimizerRow(const OptimizerSpec& spec, const StepParams& params,
                       int64_t dim, const float* grad, float* weights,
                       float* state) {
  StepRow(spec, params, dim, grad, weights, state,
          [](float* weight, float value) { *weight = value; });
}

void ApplyOptimizerRowShared(const OptimizerSpec& spec,
                             const StepParams& params, int64_t dim,
                             const float* grad, float* weights, float* state) {
  StepRow(
      spec, params, dim, grad, weights, state, [](float* weight, float value) {
        std::atomic_ref<float>(*weight).store(value, std::memory_order_relaxed);
      });
}

}  // namespace embedding
