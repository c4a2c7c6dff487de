// ShardLayout: where the rows of a table live across servers. Global row g
// of a dense table on `shard_count` servers lives on server g % shard_count,
// at local row g / shard_count. An id of a dynamic table (any int64) lives on
// server SplitMix64(id) % shard_count (Routing::kHash; the Python client's
// routing.hash_owner_shards computes the same); the server places it itself,
// so LocalRow, GlobalRow and RowsOnShard are for dense tables only. The
// server uses it for its own shard; the sharded client uses it to route,
// scatter and gather.
//
//   absl::StatusOr<ShardLayout> layout = ShardLayout::Create(3);
//   layout->OwnerShard(7);             // 1
//   layout->LocalRow(7);               // 2
//   layout->GlobalRow(/*shard=*/1, 2);  // 7
//   layout->RowsOnShard(10, 1);        // 3: rows 1, 4, 7
//
// A plain value; thread-compatible.
#ifndef COMMON_SHARD_LAYOUT_H_
#define COMMON_SHARD_LAYOUT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/hash64.h"

namespace embedding {

class ShardLayout {
 public:
  enum class Routing : uint8_t {
    kModulo,  // Dense tables: g % shard_count.
    kHash,    // Dynamic tables: SplitMix64(id) % shard_count.
  };

  // INVALID_ARGUMENT unless shard_count >= 1.
  static absl::StatusOr<ShardLayout> Create(int32_t shard_count,
                                            Routing routing = Routing::kModulo);

  // One server holds everything.
  ShardLayout() = default;

  int32_t shard_count() const { return shard_count_; }
  Routing routing() const { return routing_; }

  // REQUIRES for kModulo: global_row >= 0.
  int32_t OwnerShard(int64_t global_row) const {
    if (routing_ == Routing::kHash) {
      return static_cast<int32_t>(
          SplitMix64(static_cast<uint64_t>(global_row)) %
          static_cast<uint64_t>(shard_count_));
    }
    return static_cast<int32_t>(global_row % shard_count_);
  }
  int64_t LocalRow(int64_t global_row) const {
    return shard_count_ == 1 ? global_row : global_row / shard_count_;
  }
  int64_t GlobalRow(int32_t shard, int64_t local_row) const {
    return local_row * shard_count_ + shard;
  }
  // Rows of a table of `num_embeddings` (>= 0) rows that `shard` holds.
  // No intermediate sum: exact up to num_embeddings = 2^63 - 1.
  int64_t RowsOnShard(int64_t num_embeddings, int32_t shard) const {
    return num_embeddings / shard_count_ +
           (shard < num_embeddings % shard_count_ ? 1 : 0);
  }

  friend bool operator==(const ShardLayout&, const ShardLayout&) = default;

 private:
  ShardLayout(int32_t shard_count, Routing routing)
      : shard_count_(shard_count), routing_(routing) {}

  int32_t shard_count_ = 1;
  Routing routing_ = Routing::kModulo;
};

}  // namespace embedding

#endif  // COMMON_SHARD_LAYOUT_H_
