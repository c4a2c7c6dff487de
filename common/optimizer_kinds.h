// The sparse optimizers, described once as data: kind, name, state floats per
// row and hyper-parameters with their defaults and ranges. The server's
// defaults, validation and proto conversion, and the CLI's flags and help,
// all iterate this table; adding an optimizer is one entry here plus its
// kernel (server/core/optimizer.cc) and its options message in the proto.
//
//   const OptimizerInfo& ftrl = InfoOf(OptimizerKind::kFtrl);
//   OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kFtrl);
//   spec.*ftrl.params[2].field = 0.5f;  // l1
//   absl::Status valid = ValidateOptimizerSpec(spec);
//
// Thread-safe: the table is immutable.
#ifndef COMMON_OPTIMIZER_KINDS_H_
#define COMMON_OPTIMIZER_KINDS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace embedding {

enum class OptimizerKind {
  kSgd,
  kAdagrad,
  kSparseAdam,
  kRowwiseAdagrad,
  kFtrl
};

// A table's optimizer: its kind and the hyper-parameters of every kind (only
// those InfoOf(kind).params lists are used). Plain values; thread-compatible.
struct OptimizerSpec {
  using Kind = OptimizerKind;
  Kind kind = Kind::kSgd;
  float lr = 0.01f;
  float lr_decay = 0.0f;                   // Adagrad.
  float initial_accumulator_value = 0.0f;  // Adagrad, FTRL.
  float beta1 = 0.9f;                      // SparseAdam.
  float beta2 = 0.999f;                    // SparseAdam.
  float eps = 1e-10f;                      // Adagrad, SparseAdam, row-wise.
  float lr_power = -0.5f;                  // FTRL.
  float l1 = 0.0f;                         // FTRL.
  float l2 = 0.0f;                         // FTRL.
  float beta = 0.0f;                       // FTRL.
};

// The values a hyper-parameter may take.
enum class ParamRange {
  kPositive,      // Finite, > 0.
  kNonNegative,   // Finite, >= 0.
  kNonPositive,   // Finite, <= 0.
  kUnitInterval,  // [0, 1).
};

// One hyper-parameter. `name` is its protobuf field name in the optimizer's
// options message, its CLI flag and its Python field.
struct HyperParameter {
  absl::string_view name;
  float OptimizerSpec::*field;
  float default_value;
  ParamRange range;
  absl::string_view help;
};

// One block of per-row optimizer state: `dim` floats, or one float.
struct StateSlot {
  absl::string_view name;
  bool per_element;  // dim floats when true, 1 when false.
  // The hyper-parameter it starts at, or null for 0.
  float OptimizerSpec::*initial_value;
};

struct OptimizerInfo {
  OptimizerKind kind;
  // The name in messages, the CLI and Python; the oneof field name in
  // embedding.v1.Optimizer.
  absl::string_view name;
  // What it matches, for help texts.
  absl::string_view reference;
  absl::Span<const HyperParameter> params;
  absl::Span<const StateSlot> state;
};

// Every optimizer, in the order of OptimizerKind.
absl::Span<const OptimizerInfo> AllOptimizers();

const OptimizerInfo& InfoOf(OptimizerKind kind);

// The optimizer called `name`, or null.
const OptimizerInfo* FindOptimizer(absl::string_view name);

// Floats of state per row for a table of `dim` columns.
int64_t OptimizerStateWidth(OptimizerKind kind, int64_t dim);

// `kind` with every hyper-parameter at its default.
OptimizerSpec DefaultOptimizerSpec(OptimizerKind kind);

// INVALID_ARGUMENT naming the first hyper-parameter outside its range.
absl::Status ValidateOptimizerSpec(const OptimizerSpec& spec);

}  // namespace embedding

#endif  // COMMON_OPTIMIZER_KINDS_H_
