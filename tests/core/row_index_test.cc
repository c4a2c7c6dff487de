// The row index (server/core/row_index.h): geometry, hashing, insert/find/erase
// (backward shift across the end of a stripe's buckets, long collision runs),
// restores by slot, full stripes, random operations against a model, and the
// memory account.
#include "server/core/row_index.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/config.h"
#include "absl/container/flat_hash_map.h"
#include "common/hash64.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kNoKey = std::numeric_limits<int64_t>::min();

using Index = OpenAddressingRowIndex;

class RowIndexTest : public ::testing::Test {
 public:
  static std::unique_ptr<Index> Make(int64_t capacity, int32_t stripes) {
    absl::StatusOr<std::unique_ptr<Index>> index =
        Index::Create(capacity, stripes);
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? *std::move(index) : nullptr;
  }
  static uint32_t StripeOfId(const Index& index, int64_t id) {
    return index.StripeOf(Index::Hash(id));
  }
  static int64_t Find(const Index& index, int64_t id) {
    const uint64_t hash = Index::Hash(id);
    return index.Find(index.StripeOf(hash), id, hash);
  }
  static uint32_t Insert(Index& index, int64_t id) {
    const uint64_t hash = Index::Hash(id);
    return index.Insert(index.StripeOf(hash), id, hash);
  }
  static void Erase(Index& index, int64_t id) {
    const int64_t j = Find(index, id);
    ASSERT_GE(j, 0) << id;
    index.EraseSlot(StripeOfId(index, id), static_cast<uint32_t>(j));
  }
};

// The first bucket for `id` in a one-stripe index of `buckets` buckets:
// the formula the header documents (the first of its group of four).
uint32_t HomeBucket(int64_t id, uint32_t buckets) {
  const uint64_t hash = Index::Hash(id);
  return static_cast<uint32_t>(
             (uint64_t{static_cast<uint32_t>(hash)} * (buckets / 4)) >> 32) *
         4;
}

// The buckets per stripe at this geometry.
uint32_t BucketsOf(int64_t capacity, int32_t stripes) {
  return (*Index::Create(capacity, stripes))->buckets_per_stripe();
}

// The first `count` ids from `start` up whose home bucket is `home`.
std::vector<int64_t> IdsWithHome(uint32_t home, uint32_t buckets, int count,
                                 int64_t start) {
  std::vector<int64_t> ids;
  for (int64_t id = start; static_cast<int>(ids.size()) < count; ++id) {
    if (HomeBucket(id, buckets) == home) ids.push_back(id);
  }
  return ids;
}

TEST(RowIndexGeometryTest, StripesForClampsPowerOfTwoFloor) {
  EXPECT_EQ(OpenAddressingRowIndex::StripesFor(1), 1);
  EXPECT_EQ(OpenAddressingRowIndex::StripesFor(1023), 1);
  EXPECT_EQ(OpenAddressingRowIndex::StripesFor(1024), 2);
  EXPECT_EQ(OpenAddressingRowIndex::StripesFor(4096), 8);
  EXPECT_EQ(OpenAddressingRowIndex::StripesFor(1000000), 1024);
  EXPECT_EQ(OpenAddressingRowIndex::StripesFor(int64_t{1} << 40), 65536);
  EXPECT_EQ(OpenAddressingRowIndex::StripesFor(int64_t{1} << 30), 65536);
}

TEST(RowIndexGeometryTest, HashIsSaltedSplitMix) {
  for (int64_t id : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{1} << 40}) {
    EXPECT_NE(OpenAddressingRowIndex::Hash(id),
              SplitMix64(static_cast<uint64_t>(id)));
  }
}

TEST_F(RowIndexTest, RejectsBadGeometry) {
  for (const auto& [capacity, stripes] :
       std::vector<std::pair<int64_t, int32_t>>{{0, 1},
                                                {(int64_t{1} << 40) + 1, 1},
                                                {100, 0},
                                                {100, 3},
                                                {100, 131072}}) {
    const auto index = Index::Create(capacity, stripes);
    EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument)
        << capacity << " " << stripes;
  }
  EXPECT_THAT(std::string(Index::Create(100, 3).status().message()),
              HasSubstr("stripes 3 is not a power of two"));
}

TEST_F(RowIndexTest, AllocationFailureIsResourceExhausted) {
#if defined(ABSL_HAVE_THREAD_SANITIZER) || defined(ABSL_HAVE_ADDRESS_SANITIZER)
  GTEST_SKIP() << "the sanitizers' allocators abort instead of failing";
#endif
  // Under "always overcommit" the allocation would succeed and be touched.
  std::ifstream overcommit("/proc/sys/vm/overcommit_memory");
  int mode = 0;
  if (overcommit >> mode && mode == 1) GTEST_SKIP() << "overcommit_memory=1";
  const auto index = Index::Create(int64_t{1} << 40, 65536);
  EXPECT_EQ(index.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(RowIndexTest, StripesSplitCapacityAndSlotsCoverIt) {
  auto index = Make(1001, 4);
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(index->StripeCapacity(0), 251);
  EXPECT_EQ(index->StripeCapacity(1), 250);
  EXPECT_EQ(index->StripeCapacity(3), 250);
  std::vector<bool> seen(1001);
  for (uint32_t s = 0; s < 4; ++s) {
    for (uint32_t j = 0; j < index->StripeCapacity(s); ++j) {
      const int64_t slot = index->Slot(s, j);
      ASSERT_LT(slot, 1001);
      EXPECT_EQ(slot % 4, s);
      EXPECT_FALSE(seen[slot]);
      seen[slot] = true;
    }
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), 1001);
}

TEST_F(RowIndexTest, OneStripeTakesEveryHash) {
  auto index = Make(100, 1);
  ASSERT_NE(index, nullptr);
  for (uint64_t hash : {uint64_t{0}, ~uint64_t{0}, uint64_t{1} << 63}) {
    EXPECT_EQ(index->StripeOf(hash), 0u);
  }
  auto four = Make(100, 4);
  EXPECT_EQ(four->StripeOf(~uint64_t{0}), 3u);
  EXPECT_EQ(four->StripeOf(uint64_t{1} << 62), 1u);
}

TEST_F(RowIndexTest, InsertFindErase) {
  auto index = Make(64, 1);
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(Find(*index, 7), -1);
  const uint32_t j = Insert(*index, 7);
  EXPECT_EQ(j, 0u);
  EXPECT_EQ(Find(*index, 7), 0);
  EXPECT_EQ(index->KeyAt(0, 0), 7);
  EXPECT_EQ(index->KeyAt(0, 1), kNoKey);
  EXPECT_EQ(index->Size(0), 1);
  Erase(*index, 7);
  EXPECT_EQ(Find(*index, 7), -1);
  EXPECT_EQ(index->KeyAt(0, 0), kNoKey);
  EXPECT_EQ(index->Size(0), 0);
  EXPECT_TRUE(index->CheckInvariants().ok());
}

TEST_F(RowIndexTest, BackwardShiftAcrossTheEndOfTheBuckets) {
  constexpr int64_t kCapacity = 48;
  const uint32_t buckets = BucketsOf(kCapacity, 1);
  // A run that fills the last group, wraps to bucket 0 and goes on to
  // bucket 2 with the keys of the first group.
  ASSERT_EQ(buckets % 4, 0u);
  std::vector<int64_t> ids = IdsWithHome(buckets - 4, buckets, 5, 0);
  for (int64_t id : IdsWithHome(0, buckets, 2, 0)) ids.push_back(id);
  std::vector<int> order(ids.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  // Every order of erasure, each from the same full run.
  do {
    auto index = Make(kCapacity, 1);
    ASSERT_NE(index, nullptr);
    for (int64_t id : ids) Insert(*index, id);
    std::vector<bool> erased(ids.size());
    for (int k : order) {
      Erase(*index, ids[k]);
      erased[k] = true;
      for (size_t i = 0; i < ids.size(); ++i) {
        ASSERT_EQ(Find(*index, ids[i]) >= 0, !erased[i])
            << "id " << ids[i] << " after erasing " << ids[k];
      }
      ASSERT_TRUE(index->CheckInvariants().ok()) << index->CheckInvariants();
    }
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST_F(RowIndexTest, ManyKeysInOneBucket) {
  constexpr int64_t kCapacity = 48;
  const uint32_t buckets = BucketsOf(kCapacity, 1);
  const std::vector<int64_t> ids = IdsWithHome(buckets - 8, buckets, 40, -5000);
  auto index = Make(kCapacity, 1);
  ASSERT_NE(index, nullptr);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(Insert(*index, ids[i]), i);
  }
  ASSERT_TRUE(index->CheckInvariants().ok()) << index->CheckInvariants();
  for (size_t i = 0; i < ids.size(); i += 2) Erase(*index, ids[i]);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(Find(*index, ids[i]), i % 2 == 0 ? -1 : int64_t(i));
  }
  EXPECT_TRUE(index->CheckInvariants().ok()) << index->CheckInvariants();
}

TEST_F(RowIndexTest, ExtremeIds) {
  const std::vector<int64_t> ids = {0,
                                    -1,
                                    -1000000000000,
                                    std::numeric_limits<int64_t>::max(),
                                    kNoKey + 1,
                                    int64_t{1000000000000} + 5};
  auto index = Make(8, 1);
  ASSERT_NE(index, nullptr);
  for (int64_t id : ids) Insert(*index, id);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(Find(*index, ids[i]), int64_t(i));
    EXPECT_EQ(index->KeyAt(0, static_cast<uint32_t>(i)), ids[i]);
  }
  EXPECT_EQ(Find(*index, 1), -1);
  EXPECT_EQ(Find(*index, kNoKey), -1);
  EXPECT_TRUE(index->CheckInvariants().ok()) << index->CheckInvariants();
}

TEST_F(RowIndexTest, FullStripeReusesTheLowestFreedRow) {
  auto index = Make(5, 1);
  ASSERT_NE(index, nullptr);
  for (int64_t id = 10; id < 15; ++id) Insert(*index, id);
  EXPECT_TRUE(index->Full(0));
  EXPECT_EQ(index->Size(0), 5);
  index->EraseSlot(0, 3);
  index->EraseSlot(0, 1);
  EXPECT_FALSE(index->Full(0));
  EXPECT_EQ(Insert(*index, 20), 1u);
  EXPECT_EQ(Insert(*index, 21), 3u);
  EXPECT_TRUE(index->Full(0));
  EXPECT_EQ(Find(*index, 13), -1);
  EXPECT_EQ(Find(*index, 21), 3);
  EXPECT_TRUE(index->CheckInvariants().ok()) << index->CheckInvariants();
}

TEST_F(RowIndexTest, InsertAtRestoresBySlot) {
  auto index = Make(100, 4);
  ASSERT_NE(index, nullptr);
  // Ids of stripe 2, restored into its rows from the top down.
  std::vector<int64_t> ids;
  for (int64_t id = 0; ids.size() < 10; ++id) {
    if (StripeOfId(*index, id) == 2) ids.push_back(id);
  }
  for (size_t k = 0; k < ids.size(); ++k) {
    const uint32_t j = 24 - 2 * static_cast<uint32_t>(k);
    index->InsertAt(2, ids[k], Index::Hash(ids[k]), j);
    EXPECT_EQ(Find(*index, ids[k]), j);
    EXPECT_EQ(index->KeyAt(2, j), ids[k]);
  }
  EXPECT_EQ(index->Size(2), 10);
  EXPECT_EQ(index->KeyAt(2, 23), kNoKey);
  ASSERT_TRUE(index->CheckInvariants().ok()) << index->CheckInvariants();
  // New rows fill the holes from the bottom.
  std::vector<int64_t> more;
  for (int64_t id = 1000; more.size() < 3; ++id) {
    if (StripeOfId(*index, id) == 2) more.push_back(id);
  }
  EXPECT_EQ(Insert(*index, more[0]), 0u);
  EXPECT_EQ(Insert(*index, more[1]), 1u);
  EXPECT_EQ(Insert(*index, more[2]), 2u);
  EXPECT_EQ(index->KeyAt(2, 6), ids[9]);
  EXPECT_TRUE(index->CheckInvariants().ok()) << index->CheckInvariants();
}

// Random inserts, restores, erases and finds against a map of id -> row.
void RandomOpsAgainstModel(int64_t capacity, int32_t stripes, int ops,
                           uint64_t seed) {
  auto index = RowIndexTest::Make(capacity, stripes);
  ASSERT_NE(index, nullptr);
  std::mt19937_64 random(seed);
  // More ids than rows: stripes fill up.
  std::vector<int64_t> pool(capacity * 3 / 2);
  for (int64_t& id : pool) {
    id = static_cast<int64_t>(random());
    if (id == kNoKey) id = 0;
  }
  absl::flat_hash_map<int64_t, int64_t> model;
  std::vector<int64_t> present;
  for (int op = 1; op <= ops; ++op) {
    const int64_t id = pool[random() % pool.size()];
    const uint64_t hash = Index::Hash(id);
    const uint32_t s = index->StripeOf(hash);
    const auto it = model.find(id);
    const int64_t found = index->Find(s, id, hash);
    ASSERT_EQ(found, it == model.end() ? -1 : it->second) << "op " << op;
    const uint64_t kind = random() % 10;
    if (it == model.end() && !index->Full(s) && kind < 5) {
      uint32_t j;
      if (kind == 0) {  // A restore into a random free row.
        do {
          j = static_cast<uint32_t>(random() % index->StripeCapacity(s));
        } while (index->KeyAt(s, j) != kNoKey);
        index->InsertAt(s, id, hash, j);
      } else {
        j = index->Insert(s, id, hash);
      }
      ASSERT_EQ(index->KeyAt(s, j), id);
      model[id] = j;
      present.push_back(id);
    } else if (!present.empty() && kind >= 5 && kind < 9) {
      const size_t victim = random() % present.size();
      const int64_t gone = present[victim];
      const uint64_t gone_hash = Index::Hash(gone);
      index->EraseSlot(index->StripeOf(gone_hash),
                       static_cast<uint32_t>(model[gone]));
      model.erase(gone);
      present[victim] = present.back();
      present.pop_back();
    }
    if (op % 1000 == 0) {
      ASSERT_TRUE(index->CheckInvariants().ok())
          << "op " << op << ": " << index->CheckInvariants();
      int64_t held = 0;
      for (uint32_t t = 0; t < static_cast<uint32_t>(stripes); ++t) {
        held += index->Size(t);
      }
      ASSERT_EQ(held, static_cast<int64_t>(model.size()));
    }
  }
}

TEST_F(RowIndexTest, RandomOpsMatchAModelEightStripes) {
  RandomOpsAgainstModel(4096, 8, 100000, 1);
}

TEST_F(RowIndexTest, RandomOpsMatchAModelOneSmallStripe) {
  RandomOpsAgainstModel(100, 1, 30000, 2);
}

TEST_F(RowIndexTest, StripesAreUniformForSequentialAndEvenIds) {
  constexpr int32_t kStripes = 64;
  constexpr int64_t kPerStripe = 10000;  // Standard deviation about 100.
  auto index = Make(kStripes * 512, kStripes);
  ASSERT_NE(index, nullptr);
  for (int64_t step : {1, 2, 1024}) {
    std::vector<int64_t> count(kStripes);
    for (int64_t k = 0; k < kStripes * kPerStripe; ++k) {
      ++count[StripeOfId(*index, k * step)];
    }
    const auto [low, high] = std::minmax_element(count.begin(), count.end());
    EXPECT_GT(*low, kPerStripe * 95 / 100) << "ids step " << step;
    EXPECT_LT(*high, kPerStripe * 105 / 100) << "ids step " << step;
  }
}

TEST_F(RowIndexTest, MemoryBytesCoversEveryAllocationAfterChurn) {
  for (const auto& [capacity, stripes] :
       std::vector<std::pair<int64_t, int32_t>>{
           {10, 1}, {448, 1}, {1000, 1}, {4096, 8}, {1000000, 1024}}) {
    auto index = Make(capacity, stripes);
    ASSERT_NE(index, nullptr);
    const int64_t budget = Index::MemoryBytes(capacity, stripes);
    EXPECT_GE(budget, index->AllocatedBytes()) << capacity;
    // Fill, then replace rows many times over.
    std::mt19937_64 random(capacity);
    int64_t next_id = 0;
    for (uint32_t s = 0; s < static_cast<uint32_t>(stripes); ++s) {
      if (capacity > 5000 && s > 3) break;
      for (int round = 0; round < 20 * index->StripeCapacity(s); ++round) {
        if (index->Full(s)) {
          index->EraseSlot(
              s, static_cast<uint32_t>(random() % index->StripeCapacity(s)));
        }
        int64_t id;
        do {
          id = next_id++;
        } while (StripeOfId(*index, id) != s);
        Insert(*index, id);
      }
    }
    EXPECT_GE(budget, index->AllocatedBytes()) << capacity;
    EXPECT_TRUE(index->CheckInvariants().ok()) << index->CheckInvariants();
    if (capacity == 1000000) {
      ::testing::Test::RecordProperty(
          "bytes_per_row_1M", std::to_string(double(budget) / capacity));
      std::printf("%.2f bytes per row at capacity 1M\n",
                  double(budget) / capacity);
    }
  }
}

}  // namespace
}  // namespace embedding
