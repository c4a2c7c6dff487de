// WriteRows on a dynamic table (an import): held ids are overwritten with
// their optimizer state kept, other ids are admitted with fresh state
// (admit_after aside), evicting by the table's policy but never a row of the
// same write; a refused write changes nothing; snapshots see the written
// rows as they see pushed ones.
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/embedding_table.h"
#include "server/core/initializer.h"
#include "server/core/table_snapshot.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::embedding::testing::MakeTable;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

constexpr int64_t kDim = 4;
constexpr int64_t kBigId = int64_t{1000000000000};

// Capacity 64 is one stripe: every id competes with every other.
TableSpec DynamicSpecOf(int64_t capacity, DynamicSpec::Eviction eviction =
                                              DynamicSpec::Eviction::kLru) {
  TableSpec spec;
  spec.name = "d";
  spec.embedding_dim = kDim;
  spec.seed = 11;
  spec.optimizer = DefaultOptimizerSpec(OptimizerKind::kAdagrad);
  spec.dynamic =
      DynamicSpec{.capacity = capacity, .admit_after = 3, .eviction = eviction};
  return spec;
}

// Row i of the result is [base + i, base + i, ...].
std::vector<float> RowsFrom(float base, size_t rows) {
  std::vector<float> values(rows * kDim);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = base + static_cast<float>(i / kDim);
  }
  return values;
}

std::vector<float> Read(EmbeddingTable& table,
                        const std::vector<int64_t>& ids) {
  std::vector<float> out(ids.size() * kDim);
  const absl::Status status = table.ReadRows(ids, out.data());
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

std::vector<float> Initial(const TableSpec& spec, int64_t id) {
  std::vector<float> row(kDim);
  FillRow(spec.initializer, spec.seed, id, kDim, row.data());
  return row;
}

std::vector<int64_t> Held(EmbeddingTable& table) {
  int64_t cursor = 0;
  return *table.HeldIds(&cursor, 1 << 20);
}

void PushTimes(EmbeddingTable& table, const std::vector<int64_t>& ids,
               int times) {
  const std::vector<float> grad(ids.size() * kDim, 0.5f);
  for (int i = 0; i < times; ++i) {
    ASSERT_TRUE(table.PushGradients(ids, grad, {}).ok());
  }
}

std::vector<int64_t> IdsFrom(int64_t first, int64_t count) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < count; ++i) ids.push_back(first + i);
  return ids;
}

// A snapshot's rows by id: weights and state.
struct Rows {
  std::vector<int64_t> ids;
  std::vector<std::vector<float>> weights;
  std::vector<std::vector<float>> state;
  std::vector<float> WeightsOf(int64_t id) const {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] == id) return weights[i];
    }
    return {};
  }
};

Rows ReadSnapshot(TableSnapshot& snapshot) {
  Rows rows;
  const int64_t width = snapshot.state_width();
  int64_t slot;
  DynamicKey key;
  std::vector<float> weights(kDim), state(width);
  while (snapshot.Read(1, &slot, weights.data(), state.data(), &key) == 1) {
    if (key.id == kReservedId) continue;  // A slot freed since the base.
    rows.ids.push_back(key.id);
    rows.weights.push_back(weights);
    rows.state.push_back(state);
  }
  return rows;
}

TEST(DynamicWriteTest, WriteAdmitsIdsWithoutARowAtOnce) {
  const TableSpec spec = DynamicSpecOf(64);
  auto table = MakeTable(spec);
  const std::vector<int64_t> ids = {kBigId + 1, -5, 0};
  const std::vector<float> values = RowsFrom(1.0f, ids.size());
  ASSERT_TRUE(table->WriteRows(ids, values).ok());
  EXPECT_EQ(Read(*table, ids), values);
  EXPECT_THAT(Held(*table), UnorderedElementsAreArray(ids));
  const DynamicCounts counts = *table->Stats().dynamic;
  EXPECT_EQ(counts.rows_held, 3);
  EXPECT_EQ(counts.admissions, 3);
  EXPECT_EQ(counts.evictions, 0);
  EXPECT_EQ(table->Stats().counts.rows_written, 3);
}

// A held row keeps its optimizer state; a new one gets fresh state.
TEST(DynamicWriteTest, OverwriteKeepsTheStateAdmissionStartsFresh) {
  const TableSpec spec = DynamicSpecOf(64);
  auto table = MakeTable(spec);
  PushTimes(*table, {7}, 3);  // Admitted at its third push.
  Rows before;
  {
    auto snapshot = *table->BeginSnapshot(std::nullopt);
    before = ReadSnapshot(*snapshot);
  }
  ASSERT_EQ(before.ids, std::vector<int64_t>{7});
  const std::vector<float> values = RowsFrom(-2.0f, 2);
  ASSERT_TRUE(table->WriteRows({7, 8}, values).ok());
  auto snapshot = *table->BeginSnapshot(std::nullopt);
  const Rows after = ReadSnapshot(*snapshot);
  ASSERT_EQ(after.ids.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const bool held_before = after.ids[i] == 7;
    EXPECT_EQ(after.weights[i], RowsFrom(held_before ? -2.0f : -1.0f, 1));
    if (held_before) {
      EXPECT_EQ(after.state[i], before.state[0]);
    } else {
      // Adagrad's fresh accumulator.
      EXPECT_EQ(after.state[i],
                std::vector<float>(after.state[i].size(),
                                   spec.optimizer.initial_accumulator_value));
    }
  }
  EXPECT_EQ(table->Stats().dynamic->admissions, 2);
}

TEST(DynamicWriteTest, FullTableEvictsTheLeastRecentButNoneOfTheWrite) {
  const TableSpec spec = DynamicSpecOf(64);
  auto table = MakeTable(spec);
  const std::vector<int64_t> old_ids = IdsFrom(0, 64);
  ASSERT_TRUE(table->WriteRows(old_ids, RowsFrom(0.0f, 64)).ok());
  // Ids 0..9 pushed since: the others are the least recent.
  PushTimes(*table, IdsFrom(0, 10), 1);
  // Two writes in a row without a push between: the second one's rows
  // have the touch of the first one's, and must not evict each other.
  const std::vector<int64_t> first = IdsFrom(kBigId, 20);
  const std::vector<int64_t> second = IdsFrom(2 * kBigId, 50);
  ASSERT_TRUE(table->WriteRows(first, RowsFrom(100.0f, 20)).ok());
  ASSERT_TRUE(table->WriteRows(second, RowsFrom(200.0f, 50)).ok());
  // The second write evicts the 34 rows left of the first 64, then the 10
  // pushed ones, then 6 of the first write's.
  const std::vector<int64_t> held = Held(*table);
  EXPECT_EQ(held.size(), 64u);
  for (int64_t id : second) EXPECT_THAT(held, ::testing::Contains(id));
  EXPECT_EQ(Read(*table, second), RowsFrom(200.0f, 50));
  // An evicted id reads the initializer again.
  EXPECT_EQ(Read(*table, {63}), Initial(spec, 63));
  const DynamicCounts counts = *table->Stats().dynamic;
  EXPECT_EQ(counts.rows_held, 64);
  EXPECT_EQ(counts.admissions, 134);
  EXPECT_EQ(counts.evictions, 70);
}

TEST(DynamicWriteTest, LfuWriteKeepsEveryIdItWrites) {
  const TableSpec spec = DynamicSpecOf(64, DynamicSpec::Eviction::kLfu);
  auto table = MakeTable(spec);
  PushTimes(*table, IdsFrom(0, 64), 6);
  ASSERT_EQ(table->Stats().dynamic->rows_held, 64);
  const std::vector<int64_t> ids = IdsFrom(-kBigId, 10);
  ASSERT_TRUE(table->WriteRows(ids, RowsFrom(3.0f, 10)).ok());
  EXPECT_EQ(Read(*table, ids), RowsFrom(3.0f, 10));
  const std::vector<int64_t> held = Held(*table);
  for (int64_t id : ids) EXPECT_THAT(held, ::testing::Contains(id));
  EXPECT_EQ(table->Stats().dynamic->evictions, 10);
}

// Held ids of the write are not evicted by its admissions either.
TEST(DynamicWriteTest, HeldIdsOfTheWriteSurviveItsAdmissions) {
  const TableSpec spec = DynamicSpecOf(64, DynamicSpec::Eviction::kLfu);
  auto table = MakeTable(spec);
  PushTimes(*table, IdsFrom(0, 64), 3);  // Admitted at the third push.
  PushTimes(*table, IdsFrom(4, 60), 6);  // 0..3 the least pushed.
  std::vector<int64_t> ids = IdsFrom(0, 4);
  for (int64_t id : IdsFrom(kBigId, 4)) ids.push_back(id);
  ASSERT_TRUE(table->WriteRows(ids, RowsFrom(9.0f, 8)).ok());
  EXPECT_EQ(Read(*table, ids), RowsFrom(9.0f, 8));
  const std::vector<int64_t> held = Held(*table);
  for (int64_t id : ids) EXPECT_THAT(held, ::testing::Contains(id));
  EXPECT_EQ(table->Stats().dynamic->evictions, 4);
}

TEST(DynamicWriteTest, RefusedWritesChangeNothing) {
  const TableSpec spec = DynamicSpecOf(64);
  auto table = MakeTable(spec);
  ASSERT_TRUE(table->WriteRows({1, 2}, RowsFrom(1.0f, 2)).ok());
  const TableStats before = table->Stats();
  // More ids than the stripe holds (capacity 64 is one stripe).
  const absl::Status too_many =
      table->WriteRows(IdsFrom(100, 65), RowsFrom(0.0f, 65)).status();
  EXPECT_EQ(too_many.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_many.message(), HasSubstr("65 ids of the write"));
  const absl::Status twice =
      table->WriteRows({5, 6, 5}, RowsFrom(0.0f, 3)).status();
  EXPECT_EQ(twice.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(twice.message(), HasSubstr("written twice"));
  const absl::Status reserved =
      table->WriteRows({5, kReservedId}, RowsFrom(0.0f, 2)).status();
  EXPECT_EQ(reserved.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table->WriteRows({5, 6}, RowsFrom(0.0f, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table->WriteRowRange(0, RowsFrom(0.0f, 1)).status().code(),
            absl::StatusCode::kUnimplemented);
  const TableStats after = table->Stats();
  EXPECT_EQ(after.version, before.version);
  EXPECT_EQ(after.dynamic->admissions, 2);
  EXPECT_THAT(Held(*table), UnorderedElementsAreArray({1, 2}));
  EXPECT_EQ(Read(*table, {1, 2}), RowsFrom(1.0f, 2));
}

// An incremental snapshot holds the rows a write admitted or overwrote,
// and the slots its evictions freed hold the new ids.
TEST(DynamicWriteTest, IncrementalSnapshotSeesTheWrittenRows) {
  const TableSpec spec = DynamicSpecOf(64);
  auto table = MakeTable(spec);
  ASSERT_TRUE(table->WriteRows(IdsFrom(0, 64), RowsFrom(0.0f, 64)).ok());
  uint32_t epoch;
  {
    auto full = *table->BeginSnapshot(std::nullopt);
    EXPECT_EQ(ReadSnapshot(*full).ids.size(), 64u);
    epoch = full->epoch();
  }
  const std::vector<int64_t> ids = {5, kBigId, kBigId + 1};
  ASSERT_TRUE(table->WriteRows(ids, RowsFrom(50.0f, 3)).ok());
  auto delta = *table->BeginSnapshot(epoch);
  const Rows rows = ReadSnapshot(*delta);
  EXPECT_THAT(rows.ids, UnorderedElementsAreArray(ids));
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(rows.WeightsOf(ids[i]), RowsFrom(50.0f + i, 1));
  }
}

// A snapshot open during a write holds the table as it was at its cut:
// the write saved the pre-images of the rows it overwrote and evicted.
TEST(DynamicWriteTest, OpenSnapshotKeepsTheRowsAsAtItsCut) {
  const TableSpec spec = DynamicSpecOf(64);
  auto table = MakeTable(spec);
  ASSERT_TRUE(table->WriteRows(IdsFrom(0, 64), RowsFrom(0.0f, 64)).ok());
  auto snapshot = *table->BeginSnapshot(std::nullopt);
  ASSERT_TRUE(table->WriteRows(IdsFrom(kBigId, 40), RowsFrom(-1.0f, 40)).ok());
  ASSERT_TRUE(table->WriteRows(IdsFrom(50, 10), RowsFrom(7.0f, 10)).ok());
  const Rows rows = ReadSnapshot(*snapshot);
  EXPECT_THAT(rows.ids, UnorderedElementsAreArray(IdsFrom(0, 64)));
  for (int64_t id = 0; id < 64; ++id) {
    EXPECT_EQ(rows.WeightsOf(id), RowsFrom(static_cast<float>(id), 1)) << id;
  }
}

}  // namespace
}  // namespace embedding
