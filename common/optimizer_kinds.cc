#include "common/optimizer_kinds.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace embedding {
namespace {

using S = OptimizerSpec;

// Defaults follow torch.optim, FBGEMM (row-wise Adagrad) and TensorFlow
// (FTRL).
constexpr HyperParameter kSgdParams[] = {
    {"lr", &S::lr, 0.01f, ParamRange::kPositive, "learning rate"},
};
constexpr HyperParameter kAdagradParams[] = {
    {"lr", &S::lr, 0.01f, ParamRange::kPositive, "learning rate"},
    {"lr_decay", &S::lr_decay, 0.0f, ParamRange::kNonNegative,
     "lr / (1 + (step - 1) * lr_decay)"},
    {"initial_accumulator_value", &S::initial_accumulator_value, 0.0f,
     ParamRange::kNonNegative, "starting sum of squared gradients"},
    {"eps", &S::eps, 1e-10f, ParamRange::kPositive, "added to the root"},
};
constexpr HyperParameter kSparseAdamParams[] = {
    {"lr", &S::lr, 1e-3f, ParamRange::kPositive, "learning rate"},
    {"beta1", &S::beta1, 0.9f, ParamRange::kUnitInterval,
     "decay of the first moment"},
    {"beta2", &S::beta2, 0.999f, ParamRange::kUnitInterval,
     "decay of the second moment"},
    {"eps", &S::eps, 1e-8f, ParamRange::kPositive, "added to the root"},
};
constexpr HyperParameter kRowwiseAdagradParams[] = {
    {"lr", &S::lr, 0.01f, ParamRange::kPositive, "learning rate"},
    {"eps", &S::eps, 1e-8f, ParamRange::kPositive, "added to the root"},
};
constexpr HyperParameter kFtrlParams[] = {
    {"lr", &S::lr, 0.01f, ParamRange::kPositive, "alpha, the learning rate"},
    {"lr_power", &S::lr_power, -0.5f, ParamRange::kNonPositive,
     "power of the accumulator in the rate (-0.5: square root)"},
    {"l1", &S::l1, 0.0f, ParamRange::kNonNegative,
     "L1 strength; drives weights to exactly zero"},
    {"l2", &S::l2, 0.0f, ParamRange::kNonNegative, "L2 strength"},
    {"beta", &S::beta, 0.0f, ParamRange::kNonNegative,
     "added to the accumulator's root in the denominator"},
    {"initial_accumulator_value", &S::initial_accumulator_value, 0.1f,
     ParamRange::kNonNegative, "starting sum of squared gradients"},
};

constexpr StateSlot kAdagradState[] = {
    {"sum", true, &S::initial_accumulator_value}};
constexpr StateSlot kSparseAdamState[] = {{"exp_avg", true, nullptr},
                                          {"exp_avg_sq", true, nullptr}};
constexpr StateSlot kRowwiseAdagradState[] = {{"sum", false, nullptr}};
constexpr StateSlot kFtrlState[] = {
    {"accumulator", true, &S::initial_accumulator_value},
    {"linear", true, nullptr}};

constexpr OptimizerInfo kOptimizers[] = {
    {OptimizerKind::kSgd, "sgd", "torch.optim.SGD", kSgdParams, {}},
    {OptimizerKind::kAdagrad, "adagrad", "torch.optim.Adagrad", kAdagradParams,
     kAdagradState},
    {OptimizerKind::kSparseAdam, "sparse_adam", "torch.optim.SparseAdam",
     kSparseAdamParams, kSparseAdamState},
    {OptimizerKind::kRowwiseAdagrad, "rowwise_adagrad",
     "FBGEMM rowwise_adagrad", kRowwiseAdagradParams, kRowwiseAdagradState},
    {OptimizerKind::kFtrl, "ftrl", "FTRL-Proximal (TensorFlow Ftrl)",
     kFtrlParams, kFtrlState},
};

bool InRange(float value, ParamRange range) {
  switch (range) {
    case ParamRange::kPositive:
      return std::isfinite(value) && value > 0;
    case ParamRange::kNonNegative:
      return std::isfinite(value) && value >= 0;
    case ParamRange::kNonPositive:
      return std::isfinite(value) && value <= 0;
    case ParamRange::kUnitInterval:
      return value >= 0 && value < 1;
  }
  return false;
}

const char* RangeText(ParamRange range) {
  switch (range) {
    case ParamRange::kPositive:
      return "a finite number > 0";
    case ParamRange::kNonNegative:
      return "a finite number >= 0";
    case ParamRange::kNonPositive:
      return "a finite number <= 0";
    case ParamRange::kUnitInterval:
      return "in [0, 1)";
  }
  return "valid";
}

}  // namespace

absl::Span<const OptimizerInfo> AllOptimizers() { return kOptimizers; }

const OptimizerInfo& InfoOf(OptimizerKind kind) {
  return kOptimizers[static_cast<int>(kind)];
}

const OptimizerInfo* FindOptimizer(absl::string_view name) {
  for (const OptimizerInfo& info : kOptimizers) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

int64_t OptimizerStateWidth(OptimizerKind kind, int64_t dim) {
  int64_t width = 0;
  for (const StateSlot& slot : InfoOf(kind).state) {
    width += slot.per_element ? dim : 1;
  }
  return width;
}

OptimizerSpec DefaultOptimizerSpec(OptimizerKind kind) {
  OptimizerSpec spec;
  spec.kind = kind;
  for (const HyperParameter& param : InfoOf(kind).params) {
    spec.*param.field = param.default_value;
  }
  return spec;
}

absl::Status ValidateOptimizerSpec(const OptimizerSpec& spec) {
  const OptimizerInfo& info = InfoOf(spec.kind);
  for (const HyperParameter& param : info.params) {
    const float value = spec.*param.field;
    if (!InRange(value, param.range)) {
      return absl::InvalidArgumentError(
          absl::StrCat(info.name, " ", param.name, " must be ",
                       RangeText(param.range), ", got ", value));
    }
  }
  return absl::OkStatus();
}

}  // namespace embedding
