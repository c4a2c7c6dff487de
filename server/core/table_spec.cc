#include "server/core/table_spec.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/optimizer_kinds.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "server/core/initializer.h"

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
      return absl::InvalidArgumentError(
          absl::StrCat("table name ", QuoteForMessage(name),
                       " may only contain letters, digits, '_', '-' and '.'"));
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
  return CheckInitializerStaysFinite(init);
}

template <typename T>
absl::Status CheckSame(const char* field, const T& expected, const T& actual) {
  if (expected == actual) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("spec field ", field, " differs from the table's"));
}

absl::Status ValidateDynamicSpec(DynamicSpec& dynamic) {
  if (dynamic.capacity < 1 || dynamic.capacity > kMaxDynamicCapacity) {
    return absl::InvalidArgumentError(
        absl::StrCat("dynamic capacity must be in [1, ", kMaxDynamicCapacity,
                     "], got ", dynamic.capacity));
  }
  if (dynamic.admit_after > kMaxAdmitAfter) {
    return absl::InvalidArgumentError(
        absl::StrCat("dynamic admit_after must be at most ", kMaxAdmitAfter,
                     ", got ", dynamic.admit_after));
  }
  if (dynamic.admit_after == 0) dynamic.admit_after = 1;
  if (dynamic.ttl_pushes.has_value() && *dynamic.ttl_pushes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dynamic ttl_pushes must be > 0 when set, got ", *dynamic.ttl_pushes));
  }
  return absl::OkStatus();
}

// A dynamic table has no rows to count: its ids are any int64 but the
// reserved INT64_MIN, and its padding id is taken as it is.
absl::Status ValidateDynamicRows(TableSpec& spec) {
  if (spec.num_embeddings != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_embeddings must be 0 for a dynamic table (its ids "
                     "are any int64), got ",
                     spec.num_embeddings));
  }
  if (spec.padding_idx == kReservedId) {
    return absl::InvalidArgumentError(absl::StrCat(
        "padding_idx ", kReservedId, " is reserved in a dynamic table"));
  }
  return ValidateDynamicSpec(*spec.dynamic);
}

absl::Status ValidateDenseRows(TableSpec& spec) {
  if (spec.num_embeddings <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_embeddings must be > 0, got ", spec.num_embeddings));
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
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTableSpec(TableSpec& spec) {
  EMBEDDING_RETURN_IF_ERROR(ValidateName(spec.name));
  EMBEDDING_RETURN_IF_ERROR(spec.dynamic.has_value() ? ValidateDynamicRows(spec)
                                                     : ValidateDenseRows(spec));
  if (spec.embedding_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("embedding_dim must be > 0, got ", spec.embedding_dim));
  }
  if (spec.embedding_dim > kMaxEmbeddingDim) {
    return absl::InvalidArgumentError(
        absl::StrCat("embedding_dim must be at most ", kMaxEmbeddingDim,
                     ", got ", spec.embedding_dim));
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

int64_t LocalRowCount(const TableSpec& spec) {
  // Global rows g < n with g % count == index: n / count full rounds, plus
  // one more when the last partial round reaches the shard. No sum of n and
  // anything, so no overflow for n near 2^63.
  if (spec.dynamic.has_value()) return spec.dynamic->capacity;
  if (spec.num_embeddings <= 0) return 0;
  const int64_t count = spec.shard_count;
  return spec.num_embeddings / count +
         (spec.shard_index < spec.num_embeddings % count ? 1 : 0);
}

absl::Status CheckSameTable(const TableSpec& expected,
                            const TableSpec& actual) {
  EMBEDDING_RETURN_IF_ERROR(CheckSame("name", expected.name, actual.name));
  EMBEDDING_RETURN_IF_ERROR(CheckSame("num_embeddings", expected.num_embeddings,
                                      actual.num_embeddings));
  EMBEDDING_RETURN_IF_ERROR(
      CheckSame("embedding_dim", expected.embedding_dim, actual.embedding_dim));
  EMBEDDING_RETURN_IF_ERROR(
      CheckSame("padding_idx", expected.padding_idx, actual.padding_idx));
  EMBEDDING_RETURN_IF_ERROR(
      CheckSame("max_norm", expected.max_norm, actual.max_norm));
  EMBEDDING_RETURN_IF_ERROR(
      CheckSame("norm_type", expected.norm_type, actual.norm_type));
  EMBEDDING_RETURN_IF_ERROR(CheckSame("scale_grad_by_freq",
                                      expected.scale_grad_by_freq,
                                      actual.scale_grad_by_freq));
  EMBEDDING_RETURN_IF_ERROR(CheckSame(
      "initializer.kind", expected.initializer.kind, actual.initializer.kind));
  EMBEDDING_RETURN_IF_ERROR(
      CheckSame("initializer.a", expected.initializer.a, actual.initializer.a));
  EMBEDDING_RETURN_IF_ERROR(
      CheckSame("initializer.b", expected.initializer.b, actual.initializer.b));
  EMBEDDING_RETURN_IF_ERROR(CheckSame("seed", expected.seed, actual.seed));
  EMBEDDING_RETURN_IF_ERROR(
      CheckSame("shard_index", expected.shard_index, actual.shard_index));
  EMBEDDING_RETURN_IF_ERROR(
      CheckSame("shard_count", expected.shard_count, actual.shard_count));
  EMBEDDING_RETURN_IF_ERROR(
      CheckSame("dynamic", expected.dynamic, actual.dynamic));
  return CheckSame("optimizer kind", expected.optimizer.kind,
                   actual.optimizer.kind);
}

}  // namespace embedding
