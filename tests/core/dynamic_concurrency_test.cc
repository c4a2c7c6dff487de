// A dynamic table under concurrent lookups, pushes, admissions and
// evictions (also built under ThreadSanitizer, with fewer rounds). Rows
// start at 0 (constant initializer) and every push adds 1 to each element of
// its rows (SGD, lr 1, gradient -1), so a row is always uniform: a reader
// that sees two values in one row saw it torn, and a row held throughout
// must end at exactly its number of pushes.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/config.h"
#include "gtest/gtest.h"
#include "server/core/dynamic_rows.h"
#include "server/core/embedding_table.h"
#include "server/core/table_snapshot.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::embedding::testing::MakeTable;

TableSpec ZeroSgdSpec(int64_t capacity, int64_t dim) {
  TableSpec spec;
  spec.name = "dyn";
  spec.embedding_dim = dim;
  spec.initializer = {InitializerSpec::Kind::kConstant, 0.0f, 0.0f};
  spec.optimizer.lr = 1.0f;
  spec.dynamic = DynamicSpec{.capacity = capacity};
  return spec;
}

bool IsUniform(const float* row, int64_t dim) {
  for (int64_t d = 1; d < dim; ++d) {
    if (std::memcmp(&row[d], &row[0], sizeof(float)) != 0) return false;
  }
  return true;
}

// Ids of the table's stripes [first, last), `per_stripe` of each, from a
// pool of ids starting at `from`.
std::vector<int64_t> IdsInStripes(const DynamicRows& rows, uint32_t first,
                                  uint32_t last, int per_stripe, int64_t from) {
  std::vector<int> taken(rows.stripes(), 0);
  std::vector<int64_t> ids;
  const size_t wanted = static_cast<size_t>(last - first) * per_stripe;
  for (int64_t id = from; ids.size() < wanted; ++id) {
    const uint32_t stripe = rows.PlaceOf(id).stripe;
    if (stripe >= first && stripe < last && taken[stripe] < per_stripe) {
      ++taken[stripe];
      ids.push_back(id);
    }
  }
  return ids;
}

// The admission and eviction options the churn test runs under.
struct ChurnPolicy {
  const char* name;
  uint32_t admit_after;
  DynamicSpec::Eviction eviction;
  std::optional<int64_t> ttl_pushes;
};

class DynamicChurnTest : public ::testing::TestWithParam<ChurnPolicy> {};

// Capacity 4096 is 8 stripes of 512 rows. Stripes 0-3 hold a hot set and
// a few other ids (never full: nothing is evicted there, while admissions
// run); stripes 4-7 churn (admissions and evictions all the time, and
// under a TTL expirations). The held ids are admitted first (by pushes of
// zeros) and pushed by every push, so they never expire.
TEST_P(DynamicChurnTest, HeldRowsKeepEveryUpdateUnderChurn) {
  const ChurnPolicy& policy = GetParam();
  constexpr int64_t kCapacity = 4096;
  constexpr int64_t kDim = 16;
#ifdef ABSL_HAVE_THREAD_SANITIZER
  constexpr int kRounds = 30;
#else
  constexpr int kRounds = 400;
#endif
  TableSpec spec = ZeroSgdSpec(kCapacity, kDim);
  spec.dynamic->admit_after = policy.admit_after;
  spec.dynamic->eviction = policy.eviction;
  spec.dynamic->ttl_pushes = policy.ttl_pushes;
  auto table = MakeTable(spec);
  const std::unique_ptr<DynamicRows> layout =
      *DynamicRows::Create(*spec.dynamic);
  ASSERT_EQ(layout->stripes(), 8);
  std::vector<int64_t> held = IdsInStripes(*layout, 0, 4, 8, 1000000000000);
  for (int64_t id : IdsInStripes(*layout, 0, 4, 100, -500000)) {
    held.push_back(id);
  }
  const std::vector<int64_t> churn = IdsInStripes(*layout, 4, 8, 3000, 0);
  const std::vector<float> zeros(held.size() * kDim, 0.0f);
  for (uint32_t push = 0; push < policy.admit_after; ++push) {
    ASSERT_TRUE(table->PushGradients(held, zeros, {}).ok());
  }
  ASSERT_EQ(table->Stats().dynamic->rows_held,
            static_cast<int64_t>(held.size()));

  std::atomic<bool> stop{false};
  std::atomic<int64_t> torn{0}, over_capacity{0}, reads{0};
  std::thread reader([&] {
    std::vector<int64_t> ids(held.begin(), held.begin() + 32);
    ids.insert(ids.end(), churn.begin(), churn.begin() + 2000);
    std::vector<float> out(ids.size() * kDim);
    while (!stop.load()) {
      ASSERT_TRUE(table->Lookup(ids, DType::kFloat32, out.data()).ok());
      for (size_t i = 0; i < ids.size(); ++i) {
        if (!IsUniform(&out[i * kDim], kDim)) ++torn;
      }
      if (table->Stats().dynamic->rows_held > kCapacity) ++over_capacity;
      ++reads;
    }
  });
  // Two pushers of the held ids (in opposite orders), one of the held ids
  // and random churn ids.
  std::vector<std::thread> pushers;
  for (int p = 0; p < 2; ++p) {
    pushers.emplace_back([&, p] {
      std::vector<int64_t> ids = held;
      if (p == 1) std::reverse(ids.begin(), ids.end());
      const std::vector<float> grad(ids.size() * kDim, -1.0f);
      for (int round = 0; round < kRounds; ++round) {
        ASSERT_TRUE(table->PushGradients(ids, grad, {}).ok());
      }
    });
  }
  pushers.emplace_back([&] {
    std::mt19937_64 random(3);
    std::uniform_int_distribution<size_t> pick(0, churn.size() - 1);
    std::vector<int64_t> ids(256);
    ids.insert(ids.end(), held.begin(), held.end());
    const std::vector<float> grad(ids.size() * kDim, -1.0f);
    // Each draw pushed admit_after times: admitted, or (early, by the
    // sketch) not dropped.
    for (int round = 0; round < 2 * kRounds; ++round) {
      for (size_t i = 0; i < 256; ++i) ids[i] = churn[pick(random)];
      for (uint32_t push = 0; push < policy.admit_after; ++push) {
        ASSERT_TRUE(table->PushGradients(ids, grad, {}).ok());
      }
    }
  });
  for (auto& t : pushers) t.join();
  stop = true;
  reader.join();

  EXPECT_EQ(torn.load(), 0) << "of " << reads.load() << " lookups";
  EXPECT_EQ(over_capacity.load(), 0);
  std::vector<float> out(held.size() * kDim);
  ASSERT_TRUE(table->ReadRows(held, out.data()).ok());
  for (size_t i = 0; i < held.size(); ++i) {
    for (int64_t d = 0; d < kDim; ++d) {
      ASSERT_EQ(out[i * kDim + d], 2.0f * kRounds * (1 + policy.admit_after))
          << "id " << held[i];
    }
  }
  const DynamicCounts counts = *table->Stats().dynamic;
  EXPECT_GT(counts.evictions + counts.expirations, 0);
  if (policy.ttl_pushes.has_value()) {
    EXPECT_GT(counts.expirations, 0);
  }
  if (policy.admit_after > 1) {
    EXPECT_GT(counts.dropped_rows, 0);
  }
  EXPECT_EQ(counts.rows_held,
            counts.admissions - counts.evictions - counts.expirations);
  EXPECT_LE(counts.rows_held, kCapacity);
}

INSTANTIATE_TEST_SUITE_P(
    Policies, DynamicChurnTest,
    ::testing::Values(
        ChurnPolicy{"Lru", 1, DynamicSpec::Eviction::kLru, std::nullopt},
        ChurnPolicy{"Lfu", 1, DynamicSpec::Eviction::kLfu, std::nullopt},
        ChurnPolicy{"AdmitAfter3", 3, DynamicSpec::Eviction::kLru,
                    std::nullopt},
        ChurnPolicy{"Ttl", 1, DynamicSpec::Eviction::kLru, 16}),
    [](const ::testing::TestParamInfo<ChurnPolicy>& info) {
      return std::string(info.param.name);
    });

// Rows wide enough (4 KiB) that a copy overlapping a write would catch it
// half done, in a table of 64 rows (one stripe) that 96 ids take turns to
// hold: every push steps some rows and admits ids in place of others, all
// under one window of the stripe's counter, while a reader copies. Without
// the seqlock check in CopyDynamicRow this finds torn rows (in 5 runs of 5
// when it was removed).
TEST(DynamicConcurrencyTest, NoTornRowsWhileIdsTakeTurnsToHoldRows) {
  constexpr int64_t kWideDim = 1024;
  constexpr int64_t kIds = 96;
  constexpr int64_t kPushed = 48;
#ifdef ABSL_HAVE_THREAD_SANITIZER
  constexpr int kReads = 20;
#else
  constexpr int kReads = 6000;
#endif
  auto table = MakeTable(ZeroSgdSpec(64, kWideDim));
  std::atomic<bool> stop{false};
  std::atomic<int64_t> torn{0};
  std::thread reader([&] {
    std::vector<int64_t> ids(kIds);
    for (int64_t i = 0; i < kIds; ++i) ids[i] = i;
    std::vector<float> out(ids.size() * kWideDim);
    for (int i = 0; i < kReads; ++i) {
      ASSERT_TRUE(table->Lookup(ids, DType::kFloat32, out.data()).ok());
      for (size_t k = 0; k < ids.size(); ++k) {
        if (!IsUniform(&out[k * kWideDim], kWideDim)) ++torn;
      }
    }
  });
  std::thread pusher([&] {
    const std::vector<float> grad(kPushed * kWideDim, -1.0f);
    std::vector<int64_t> ids(kPushed);
    for (int64_t first = 0; !stop.load(); first = (first + 7) % kIds) {
      for (int64_t i = 0; i < kPushed; ++i) ids[i] = (first + i) % kIds;
      ASSERT_TRUE(table->PushGradients(ids, grad, {}).ok());
    }
  });
  reader.join();
  stop = true;
  pusher.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(table->Stats().dynamic->rows_held, 64);
}

// Snapshots taken while pushes admit and evict: each holds as many rows as
// the table held at its cut, each id once, each row whole (uniform).
TEST(DynamicConcurrencyTest, SnapshotsDuringChurnAreWholeCuts) {
  constexpr int64_t kDim = 8;
#ifdef ABSL_HAVE_THREAD_SANITIZER
  constexpr int kSnapshots = 3;
#else
  constexpr int kSnapshots = 30;
#endif
  auto table = MakeTable(ZeroSgdSpec(1024, kDim));
  std::atomic<bool> stop{false};
  std::thread pusher([&] {
    std::mt19937_64 random(7);
    std::uniform_int_distribution<int64_t> pick(0, 5000);
    std::vector<int64_t> ids(64);
    const std::vector<float> grad(ids.size() * kDim, -1.0f);
    while (!stop.load()) {
      for (int64_t& id : ids) id = pick(random);
      ASSERT_TRUE(table->PushGradients(ids, grad, {}).ok());
    }
  });
  for (int s = 0; s < kSnapshots; ++s) {
    std::unique_ptr<TableSnapshot> snapshot =
        *table->BeginSnapshot(std::nullopt);
    const int64_t rows = snapshot->rows();
    std::vector<int64_t> slots(rows);
    std::vector<DynamicKey> keys(rows);
    std::vector<float> weights(rows * kDim);
    int64_t done = 0;
    while (const int64_t n = snapshot->Read(16, slots.data() + done,
                                            weights.data() + done * kDim,
                                            nullptr, keys.data() + done)) {
      done += n;
    }
    ASSERT_EQ(done, rows);
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < rows; ++i) {
      EXPECT_TRUE(IsUniform(&weights[i * kDim], kDim)) << "slot " << slots[i];
      EXPECT_GE(weights[i * kDim], 1.0f);  // Admitted rows were pushed.
      ids.push_back(keys[i].id);
    }
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
  }
  stop = true;
  pusher.join();
}

}  // namespace
}  // namespace embedding
