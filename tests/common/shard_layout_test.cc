#include "common/shard_layout.h"

#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace embedding {
namespace {

TEST(ShardLayoutTest, NonPositiveShardCountIsInvalidArgument) {
  for (int32_t count : {0, -1}) {
    absl::StatusOr<ShardLayout> layout = ShardLayout::Create(count);
    EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(layout.status().message().find("shard_count"),
              absl::string_view::npos);
  }
}

TEST(ShardLayoutTest, DefaultIsOneShardHoldingEveryRow) {
  const ShardLayout layout;
  EXPECT_EQ(layout.shard_count(), 1);
  EXPECT_EQ(layout.OwnerShard(12345), 0);
  EXPECT_EQ(layout.LocalRow(12345), 12345);
  EXPECT_EQ(layout.RowsOnShard(10, 0), 10);
}

// Against a direct enumeration: every global row is on exactly one shard,
// its local rows count 0, 1, ... in global order, and RowsOnShard agrees.
TEST(ShardLayoutTest, RowsSplitRoundRobinAndMapBack) {
  for (int32_t count = 1; count <= 5; ++count) {
    const ShardLayout layout = *ShardLayout::Create(count);
    for (int64_t rows : {0, 1, 4, 5, 11}) {
      std::vector<int64_t> held(count, 0);
      for (int64_t global = 0; global < rows; ++global) {
        const int32_t shard = layout.OwnerShard(global);
        ASSERT_GE(shard, 0);
        ASSERT_LT(shard, count);
        EXPECT_EQ(layout.LocalRow(global), held[shard]);
        EXPECT_EQ(layout.GlobalRow(shard, held[shard]), global);
        ++held[shard];
      }
      for (int32_t shard = 0; shard < count; ++shard) {
        EXPECT_EQ(layout.RowsOnShard(rows, shard), held[shard])
            << rows << " rows, shard " << shard << " of " << count;
      }
    }
  }
}

// Once (n - shard + count - 1) / count: signed overflow near 2^63 (UBSan),
// which a sharded CreateTable of 2^63 - 1 rows reached.
TEST(ShardLayoutTest, RowsOnShardOfTheLargestTableDoesNotOverflow) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  for (int32_t count : {2, 4, 8}) {
    const ShardLayout layout = *ShardLayout::Create(count);
    int64_t total = 0;
    for (int32_t shard = 0; shard < count; ++shard) {
      const int64_t rows = layout.RowsOnShard(kMax, shard);
      EXPECT_EQ(rows, kMax / count + (shard < kMax % count ? 1 : 0));
      total += rows - kMax / count;
    }
    EXPECT_EQ(total, kMax % count);
  }
}

}  // namespace
}  // namespace embedding
