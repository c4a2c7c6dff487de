// ShardLayout: where the rows of a table live across servers. Global row g
// of a table on `shard_count` servers lives on server g % shard_count, at
// local row g / shard_count. The server uses it for its own shard; the
// sharded client uses it to route, scatter and gather.
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

namespace embedding {

class ShardLayout {
 public:
  // INVALID_ARGUMENT unless shard_count >= 1.
  static absl::StatusOr<ShardLayout> Create(int32_t shard_count);

  // One server holds everything.
  ShardLayout() = default;

  int32_t shard_count() const { return shard_count_; }

  int32_t OwnerShard(int64_t global_row) const {
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
  explicit ShardLayout(int32_t shard_count) : shard_count_(shard_count) {}

  int32_t shard_count_ = 1;
};

}  // namespace embedding

#endif  // COMMON_SHARD_LAYOUT_H_
