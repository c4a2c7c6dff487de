// Snapshots and restores of dynamic tables: a full snapshot holds every
// slot holding an id at the cut, with its id, usage (touch, push count),
// weights and state, and the admission sketch; a delta holds the slots
// changed since the base, as of its cut even while pushes admit and evict
// during it; TableLoader rebuilds a table that then behaves exactly as the
// original (lookups, admissions, evictions, expiry).
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/embedding_table.h"
#include "server/core/table_loader.h"
#include "server/core/table_snapshot.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::embedding::testing::MakeTable;

using ::testing::HasSubstr;

constexpr int64_t kDim = 4;

// Capacity 64 is one stripe: every id competes with every other.
TableSpec ChurningSpec() {
  TableSpec spec;
  spec.name = "d";
  spec.embedding_dim = kDim;
  spec.seed = 5;
  spec.optimizer = DefaultOptimizerSpec(OptimizerKind::kAdagrad);
  spec.dynamic = DynamicSpec{.capacity = 64,
                             .admit_after = 2,
                             .eviction = DynamicSpec::Eviction::kLfu,
                             .ttl_pushes = 40};
  return spec;
}

// Pushes of ids from a pool of 150 (so that 64 rows churn), with repeats.
class Workload {
 public:
  explicit Workload(uint64_t seed) : random_(seed) {}

  PushResult Push(EmbeddingTable& table) {
    std::uniform_int_distribution<int64_t> id(-75, 74);
    std::normal_distribution<float> value;
    std::vector<int64_t> ids(12);
    for (int64_t& v : ids) v = id(random_) * 1000003;
    std::vector<float> grad(ids.size() * kDim);
    for (float& v : grad) v = value(random_);
    absl::StatusOr<PushResult> result = table.PushGradients(ids, grad, {});
    EXPECT_TRUE(result.ok()) << result.status();
    return result.value_or(PushResult{});
  }

 private:
  std::mt19937_64 random_;
};

std::vector<float> LookupPool(EmbeddingTable& table) {
  std::vector<int64_t> ids;
  for (int64_t i = -75; i < 75; ++i) ids.push_back(i * 1000003);
  std::vector<float> out(ids.size() * kDim);
  EXPECT_TRUE(table.Lookup(ids, DType::kFloat32, out.data()).ok());
  return out;
}

// A snapshot read whole.
struct DynamicImage {
  TableMetadata metadata;
  std::vector<int64_t> slots;
  std::vector<DynamicKey> keys;
  std::vector<float> weights;
  std::vector<float> state;
};

DynamicImage ReadAll(TableSnapshot& snapshot) {
  DynamicImage image{.metadata = snapshot.metadata()};
  const int64_t width = snapshot.state_width();
  const int64_t rows = snapshot.rows();
  image.slots.resize(rows);
  image.keys.resize(rows);
  image.weights.resize(rows * kDim);
  image.state.resize(rows * width);
  int64_t done = 0;
  // Chunks of 5: reads interleave with whatever the test does between.
  while (const int64_t n = snapshot.Read(
             5, image.slots.data() + done, image.weights.data() + done * kDim,
             image.state.data() + done * width, image.keys.data() + done)) {
    done += n;
  }
  EXPECT_EQ(done, rows);
  return image;
}

DynamicImage Capture(EmbeddingTable& table) {
  std::unique_ptr<TableSnapshot> snapshot = *table.BeginSnapshot(std::nullopt);
  return ReadAll(*snapshot);
}

// Loads `images` in order (a full one, then deltas).
std::unique_ptr<EmbeddingTable> Load(const TableSpec& spec,
                                     const std::vector<DynamicImage>& images) {
  std::unique_ptr<TableLoader> loader = *TableLoader::Create(spec);
  for (const DynamicImage& image : images) {
    const absl::Status put =
        loader->PutDynamic(image.slots, image.keys, image.weights, image.state);
    EXPECT_TRUE(put.ok()) << put;
  }
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
      std::move(*loader).Finish(images.back().metadata);
  EXPECT_TRUE(table.ok()) << table.status();
  return *std::move(table);
}

void ExpectSameImage(const DynamicImage& actual, const DynamicImage& expected) {
  EXPECT_EQ(actual.slots, expected.slots);
  ASSERT_EQ(actual.keys.size(), expected.keys.size());
  for (size_t i = 0; i < actual.keys.size(); ++i) {
    EXPECT_EQ(actual.keys[i].id, expected.keys[i].id) << i;
    EXPECT_EQ(actual.keys[i].usage.touch, expected.keys[i].usage.touch) << i;
    EXPECT_EQ(actual.keys[i].usage.push_count,
              expected.keys[i].usage.push_count)
        << i;
  }
  EXPECT_EQ(actual.weights, expected.weights);
  EXPECT_EQ(actual.state, expected.state);
  EXPECT_EQ(actual.metadata.admission.counters,
            expected.metadata.admission.counters);
  EXPECT_EQ(actual.metadata.admission.counts,
            expected.metadata.admission.counts);
  EXPECT_EQ(actual.metadata.step, expected.metadata.step);
  EXPECT_EQ(actual.metadata.version, expected.metadata.version);
}

TEST(DynamicSnapshotTest, FullSnapshotHoldsTheSlotsHoldingIds) {
  const TableSpec spec = ChurningSpec();
  auto table = MakeTable(spec);
  Workload workload(1);
  for (int i = 0; i < 40; ++i) workload.Push(*table);
  const DynamicImage image = Capture(*table);
  EXPECT_EQ(static_cast<int64_t>(image.slots.size()),
            table->Stats().dynamic->rows_held);
  EXPECT_GT(image.slots.size(), 30u);
  for (size_t i = 1; i < image.slots.size(); ++i) {
    EXPECT_LT(image.slots[i - 1], image.slots[i]);  // Ascending slots.
  }
  // Each key is an id the table holds, with its row.
  for (size_t i = 0; i < image.keys.size(); ++i) {
    std::vector<float> row(kDim);
    ASSERT_TRUE(table->ReadRows({&image.keys[i].id, 1}, row.data()).ok());
    EXPECT_EQ(row, std::vector<float>(image.weights.begin() + i * kDim,
                                      image.weights.begin() + (i + 1) * kDim));
  }
  EXPECT_FALSE(image.metadata.admission.counters.empty());
}

// The restored table answers and evolves as the original: same lookups,
// same admissions, drops, evictions and expiries for the same pushes.
TEST(DynamicSnapshotTest, RestoredTableBehavesAsTheOriginal) {
  const TableSpec spec = ChurningSpec();
  auto original = MakeTable(spec);
  Workload before(2);
  for (int i = 0; i < 40; ++i) before.Push(*original);
  auto restored = Load(spec, {Capture(*original)});
  EXPECT_EQ(restored->Stats().dynamic->rows_held,
            original->Stats().dynamic->rows_held);
  Workload after_original(3), after_restored(3);
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(LookupPool(*restored), LookupPool(*original)) << "push " << i;
    const PushResult a = after_original.Push(*original);
    const PushResult b = after_restored.Push(*restored);
    EXPECT_EQ(b.rows_updated, a.rows_updated);
    EXPECT_EQ(b.rows_admitted, a.rows_admitted);
    EXPECT_EQ(b.rows_dropped, a.rows_dropped);
    EXPECT_EQ(b.rows_evicted, a.rows_evicted);
  }
  ExpectSameImage(Capture(*restored), Capture(*original));
}

// Base + delta = the table at the delta's cut, although pushes that admit
// and evict run while the delta is read; the twin, pushed the same way up
// to the cut, is the table at the cut.
TEST(DynamicSnapshotTest, BasePlusDeltaIsTheTableAtTheDeltasCut) {
  const TableSpec spec = ChurningSpec();
  auto table = MakeTable(spec);
  auto twin = MakeTable(spec);
  Workload workload(4), twin_workload(4);
  for (int i = 0; i < 30; ++i) {
    workload.Push(*table);
    twin_workload.Push(*twin);
  }
  std::unique_ptr<TableSnapshot> full = *table->BeginSnapshot(std::nullopt);
  const DynamicImage base = ReadAll(*full);
  const uint32_t epoch = full->epoch();
  full.reset();
  for (int i = 0; i < 20; ++i) {
    workload.Push(*table);
    twin_workload.Push(*twin);
  }
  std::unique_ptr<TableSnapshot> delta = *table->BeginSnapshot(epoch);
  EXPECT_TRUE(delta->incremental());
  // After the cut: admissions and evictions of slots the delta has yet to
  // copy keep their pre-images.
  for (int i = 0; i < 20; ++i) workload.Push(*table);
  const DynamicImage changes = ReadAll(*delta);
  delta.reset();
  EXPECT_LT(changes.slots.size(), 64u);
  ExpectSameImage(Capture(*Load(spec, {base, changes})), Capture(*twin));
}

TEST(DynamicSnapshotTest, LoaderRefusesSlotsAndIdsThatDoNotFit) {
  TableSpec spec = ChurningSpec();
  spec.dynamic->capacity = 4096;  // 8 stripes.
  spec.shard_count = 2;
  spec.shard_index = 0;
  std::unique_ptr<TableLoader> loader = *TableLoader::Create(spec);
  const std::unique_ptr<DynamicRows> layout =
      *DynamicRows::Create(*spec.dynamic);
  const ShardLayout shards =
      *ShardLayout::Create(2, ShardLayout::Routing::kHash);
  int64_t mine = 0;
  while (shards.OwnerShard(mine) != 0) ++mine;
  int64_t theirs = 0;
  while (shards.OwnerShard(theirs) != 1) ++theirs;
  const int64_t slot = layout->PlaceOf(mine).stripe;  // Row 0 of its stripe.
  const std::vector<float> weights(kDim, 1.0f), state(kDim, 0.1f);
  const auto put = [&](int64_t at, int64_t id) {
    const DynamicKey key{.id = id};
    return loader->PutDynamic({&at, 1}, {&key, 1}, weights, state);
  };
  EXPECT_TRUE(put(slot, mine).ok());
  EXPECT_THAT(put(4096, mine).message(),
              HasSubstr("slot 4096 is not one of the table's 4096 slots"));
  EXPECT_THAT(put(slot + 1, mine).message(), HasSubstr("belongs to stripe"));
  EXPECT_THAT(put(slot, theirs).message(), HasSubstr("belongs to shard 1"));
  const std::vector<float> bad(kDim, std::nanf(""));
  const DynamicKey key{.id = mine};
  EXPECT_THAT(loader->PutDynamic({&slot, 1}, {&key, 1}, bad, state).message(),
              HasSubstr("non-finite"));
}

}  // namespace
}  // namespace embedding
