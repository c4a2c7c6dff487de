// TableSpec: what a table is, mirroring the torch.nn.Embedding constructor,
// plus its initializer and optimizer. Plain values; thread-compatible.
#ifndef SERVER_CORE_TABLE_SPEC_H_
#define SERVER_CORE_TABLE_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace embedding {

struct InitializerSpec {
  enum class Kind { kNormal, kUniform, kConstant };
  Kind kind = Kind::kNormal;
  // kNormal: mean and std. kUniform: [a, b). kConstant: a.
  float a = 0.0f;
  float b = 1.0f;
};

struct OptimizerSpec {
  enum class Kind { kSgd, kAdagrad, kSparseAdam, kRowwiseAdagrad };
  Kind kind = Kind::kSgd;
  // Defaults follow torch.optim (and FBGEMM for row-wise Adagrad).
  float lr = 0.01f;
  float lr_decay = 0.0f;                   // Adagrad.
  float initial_accumulator_value = 0.0f;  // Adagrad.
  float beta1 = 0.9f;                      // SparseAdam.
  float beta2 = 0.999f;                    // SparseAdam.
  float eps = 1e-10f;
};

// The defaults of `kind`: torch.optim's (FBGEMM's for row-wise Adagrad).
OptimizerSpec DefaultOptimizerSpec(OptimizerSpec::Kind kind);

// Returns the name used in messages and the CLI ("sgd", "adagrad", ...).
const char* OptimizerName(OptimizerSpec::Kind kind);

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
// INVALID_ARGUMENT names the first bad field.
absl::Status ValidateTableSpec(TableSpec& spec);

// Checks optimizer hyper-parameters (lr > 0, 0 <= betas < 1, eps > 0, ...).
absl::Status ValidateOptimizerSpec(const OptimizerSpec& spec);

// Rows of the global table that shard `shard_index` of `shard_count` holds.
int64_t LocalRowCount(int64_t num_embeddings, int32_t shard_index,
                      int32_t shard_count);

}  // namespace embedding

#endif  // SERVER_CORE_TABLE_SPEC_H_
