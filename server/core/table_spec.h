// TableSpec: what a table is, mirroring the torch.nn.Embedding constructor,
// plus its initializer and optimizer. Plain values; thread-compatible.
#ifndef SERVER_CORE_TABLE_SPEC_H_
#define SERVER_CORE_TABLE_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/optimizer_kinds.h"

namespace embedding {

// The widest table: embedding_dim may be 1 to this.
inline constexpr int64_t kMaxEmbeddingDim = 65536;

struct InitializerSpec {
  enum class Kind { kNormal, kUniform, kConstant };
  Kind kind = Kind::kNormal;
  // kNormal: mean and std. kUniform: [a, b). kConstant: a.
  float a = 0.0f;
  float b = 1.0f;
};

struct TableSpec {
  std::string name;
  int64_t num_embeddings = 0;  // Rows of the global table.
  int64_t embedding_dim = 0;
  // Normalised to [0, num_embeddings) by ValidateTableSpec.
  std::optional<int64_t> padding_idx;
  std::optional<float> max_norm;
  float norm_type = 2.0f;  // May be +inf.
  bool scale_grad_by_freq = false;
  InitializerSpec initializer;
  OptimizerSpec optimizer;
  uint64_t seed = 0;
  // This server holds global rows g with g % shard_count == shard_index.
  int32_t shard_index = 0;
  int32_t shard_count = 1;
};

// Checks every field and normalises a negative padding_idx.
// INVALID_ARGUMENT names the first bad field: among others an embedding_dim
// above kMaxEmbeddingDim, and initializer parameters whose draws can be
// non-finite in float32 (see ValidateInitializerRange).
absl::Status ValidateTableSpec(TableSpec& spec);

// Rows of the global table that the spec's shard holds, without overflow
// for any num_embeddings. REQUIRES: 0 <= shard_index < shard_count.
int64_t LocalRowCount(const TableSpec& spec);

// OK when `actual` describes the same table as `expected` (shard included)
// but perhaps for the optimizer's hyper-parameters, which SetOptimizer may
// change during its life; INVALID_ARGUMENT naming the first field that
// differs otherwise.
absl::Status CheckSameTable(const TableSpec& expected, const TableSpec& actual);

}  // namespace embedding

#endif  // SERVER_CORE_TABLE_SPEC_H_
