#include "common/shard_layout.h"

#include <limits>
#include <utility>
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

// Frozen values (the Python client's routing tests hold the same): a change
// of the hash moves every dynamic table's rows to other servers.
TEST(ShardLayoutTest, SplitMix64GoldenValues) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::vector<std::pair<int64_t, uint64_t>> golden = {
      {0, 16294208416658607535ull},   {1, 10451216379200822465ull},
      {-1, 16490336266968443936ull},  {1000000000005, 14134809305837172702ull},
      {kMin, 5196802822362493915ull}, {kMax, 3055647633038352039ull}};
  for (const auto& [id, hash] : golden) {
    EXPECT_EQ(SplitMix64(static_cast<uint64_t>(id)), hash) << id;
    for (int32_t count : {1, 2, 3, 7}) {
      const ShardLayout layout =
          *ShardLayout::Create(count, ShardLayout::Routing::kHash);
      EXPECT_EQ(layout.OwnerShard(id), static_cast<int32_t>(hash % count))
          << id << " on " << count << " shards";
    }
  }
}

// Sequential ids (and ids with a common stride, as g % M would split
// unevenly) spread evenly over the servers.
TEST(ShardLayoutTest, HashRoutingSpreadsIdsEvenly) {
  constexpr int64_t kIds = 30000;
  for (int64_t stride : {1, 3, 1000}) {
    const ShardLayout layout =
        *ShardLayout::Create(3, ShardLayout::Routing::kHash);
    std::vector<int64_t> held(3, 0);
    for (int64_t i = 0; i < kIds; ++i) {
      ++held[layout.OwnerShard(1000000000000 + i * stride)];
    }
    for (int64_t count : held) {
      EXPECT_NEAR(count, kIds / 3, kIds / 3 / 20) << "stride " << stride;
    }
  }
}

TEST(ShardLayoutTest, LayoutsOfDifferentRoutingDiffer) {
  EXPECT_NE(*ShardLayout::Create(2),
            *ShardLayout::Create(2, ShardLayout::Routing::kHash));
  EXPECT_EQ(ShardLayout::Create(2, ShardLayout::Routing::kHash)->routing(),
            ShardLayout::Routing::kHash);
}

}  // namespace
}  // namespace embedding
