// TableSpec: what a table is, mirroring the torch.nn.Embedding constructor,
// plus its initializer and optimizer. Plain values; thread-compatible.
#ifndef SERVER_CORE_TABLE_SPEC_H_
#define SERVER_CORE_TABLE_SPEC_H_

#include <cstdint>
#include <limits>
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

// A dynamic table's options (proto DynamicTable): its ids are any int64 but
// INT64_MIN, and rows exist only once admitted by pushes.
struct DynamicSpec {
  enum class Eviction { kLru, kLfu };
  int64_t capacity = 0;      // Most rows this server holds.
  uint32_t admit_after = 1;  // Pushes before an id gets a row; 1 to 255.
  Eviction eviction = Eviction::kLru;
  std::optional<int64_t> ttl_pushes;  // > 0 when set.

  friend bool operator==(const DynamicSpec&, const DynamicSpec&) = default;
};

// No dynamic table has this id (requests naming it are refused): it marks
// "no row", e.g. the winner of an empty bag in MAX mode.
inline constexpr int64_t kReservedId = std::numeric_limits<int64_t>::min();

// The most rows a dynamic table may hold on one server.
inline constexpr int64_t kMaxDynamicCapacity = int64_t{1} << 40;
// The most pushes admission may wait for (the counters are 8 bits).
inline constexpr uint32_t kMaxAdmitAfter = 255;

struct TableSpec {
  std::string name;
  int64_t num_embeddings = 0;  // Rows of the global table; 0 when dynamic.
  int64_t embedding_dim = 0;
  // Normalised to [0, num_embeddings) by ValidateTableSpec. In a dynamic
  // table the padding id: any int64 but INT64_MIN, as given.
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
  // Set for a dynamic table, whose shards hold the ids whose
  // SplitMix64(id) % shard_count is their shard_index (ShardLayout kHash).
  std::optional<DynamicSpec> dynamic;
};

// Checks every field, normalises a negative padding_idx of a dense table and
// an admit_after of 0 (to 1).
// INVALID_ARGUMENT names the first bad field: among others an embedding_dim
// above kMaxEmbeddingDim, and initializer parameters whose draws can be
// non-finite in float32 (see ValidateInitializerRange).
absl::Status ValidateTableSpec(TableSpec& spec);

// Rows of the global table that the spec's shard holds, without overflow
// for any num_embeddings; a dynamic table's capacity. REQUIRES:
// 0 <= shard_index < shard_count.
int64_t LocalRowCount(const TableSpec& spec);

// OK when `actual` describes the same table as `expected` (shard included)
// but perhaps for the optimizer's hyper-parameters, which SetOptimizer may
// change during its life; INVALID_ARGUMENT naming the first field that
// differs otherwise.
absl::Status CheckSameTable(const TableSpec& expected, const TableSpec& actual);

}  // namespace embedding

#endif  // SERVER_CORE_TABLE_SPEC_H_
