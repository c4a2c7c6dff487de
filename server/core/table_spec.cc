#include "server/core/table_spec.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/core/status_macros.h"

namespace embedding {
namespace {

constexpr size_t kMaxNameLength = 128;

bool IsNameCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

absl::Status ValidateName(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("table name must be 1 to ", kMaxNameLength,
                     " characters, got ", name.size()));
  }
  for (char c : name) {
    if (!IsNameCharacter(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "table name \"", name,
          "\" may only contain letters, digits, '_', '-' and '.'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateInitializer(const InitializerSpec& init) {
  if (!std::isfinite(init.a) || !std::isfinite(init.b)) {
    return absl::InvalidArgumentError("initializer parameters must be finite");
  }
  if (init.kind == InitializerSpec::Kind::kNormal && init.b < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("normal initializer std must be >= 0, got ", init.b));
  }
  if (init.kind == InitializerSpec::Kind::kUniform && init.b < init.a) {
    return absl::InvalidArgumentError(
        absl::StrCat("uniform initializer needs low <= high, got [", init.a,
                     ", ", init.b, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

const char* OptimizerName(OptimizerSpec::Kind kind) {
  switch (kind) {
    case OptimizerSpec::Kind::kSgd:
      return "sgd";
    case OptimizerSpec::Kind::kAdagrad:
      return "adagrad";
    case OptimizerSpec::Kind::kSparseAdam:
      return "sparse_adam";
    case OptimizerSpec::Kind::kRowwiseAdagrad:
      return "rowwise_adagrad";
  }
  return "unknown";
}

OptimizerSpec DefaultOptimizerSpec(OptimizerSpec::Kind kind) {
  OptimizerSpec spec;
  spec.kind = kind;
  if (kind == OptimizerSpec::Kind::kSparseAdam) {
    spec.lr = 1e-3f;
    spec.eps = 1e-8f;
  } else if (kind == OptimizerSpec::Kind::kRowwiseAdagrad) {
    spec.eps = 1e-8f;
  }
  return spec;
}

absl::Status ValidateOptimizerSpec(const OptimizerSpec& spec) {
  const char* name = OptimizerName(spec.kind);
  if (!(spec.lr > 0) || !std::isfinite(spec.lr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " lr must be a finite number > 0, got ", spec.lr));
  }
  if (!(spec.eps > 0) || !std::isfinite(spec.eps)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " eps must be a finite number > 0, got ", spec.eps));
  }
  if (!(spec.lr_decay >= 0) || !std::isfinite(spec.lr_decay)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " lr_decay must be a finite number >= 0, got ", spec.lr_decay));
  }
  if (!(spec.initial_accumulator_value >= 0) ||
      !std::isfinite(spec.initial_accumulator_value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " initial_accumulator_value must be >= 0, got ",
                     spec.initial_accumulator_value));
  }
  for (float beta : {spec.beta1, spec.beta2}) {
    if (!(beta >= 0 && beta < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " betas must be in [0, 1), got ", beta));
    }
  }
  return absl::OkStatus();
}

int64_t LocalRowCount(int64_t num_embeddings, int32_t shard_index,
                      int32_t shard_count) {
  if (num_embeddings <= shard_index) return 0;
  return (num_embeddings - shard_index + shard_count - 1) / shard_count;
}

absl::Status ValidateTableSpec(TableSpec& spec) {
  EMBEDDING_RETURN_IF_ERROR(ValidateName(spec.name));
  if (spec.num_embeddings <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_embeddings must be > 0, got ", spec.num_embeddings));
  }
  if (spec.embedding_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("embedding_dim must be > 0, got ", spec.embedding_dim));
  }
  if (spec.padding_idx.has_value()) {
    int64_t idx = *spec.padding_idx;
    if (idx < -spec.num_embeddings || idx >= spec.num_embeddings) {
      return absl::InvalidArgumentError(
          absl::StrCat("padding_idx ", idx, " must be within [",
                       -spec.num_embeddings, ", ", spec.num_embeddings, ")"));
    }
    if (idx < 0) spec.padding_idx = idx + spec.num_embeddings;
  }
  if (spec.max_norm.has_value() &&
      !(*spec.max_norm > 0 && std::isfinite(*spec.max_norm))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_norm must be a finite number > 0, got ", *spec.max_norm));
  }
  if (!(spec.norm_type > 0)) {  // Also rejects NaN; +inf is the max-norm.
    return absl::InvalidArgumentError(
        absl::StrCat("norm_type must be > 0, got ", spec.norm_type));
  }
  if (spec.shard_count < 1 || spec.shard_index < 0 ||
      spec.shard_index >= spec.shard_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard_index ", spec.shard_index, " must be in [0, ",
                     spec.shard_count, ")"));
  }
  EMBEDDING_RETURN_IF_ERROR(ValidateInitializer(spec.initializer));
  return ValidateOptimizerSpec(spec.optimizer);
}

}  // namespace embedding
