#include "common/shard_layout.h"

#include "absl/strings/str_cat.h"

namespace embedding {

absl::StatusOr<ShardLayout> ShardLayout::Create(int32_t shard_count,
                                                Routing routing) {
  if (shard_count < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard_count must be >= 1, got ", shard_count));
  }
  return ShardLayout(shard_count, routing);
}

}  // namespace embedding
