// TableSnapshot: the cut, pre-images, and incremental snapshots, one thread
// at a time (snapshot_concurrency_test.cc has the concurrent cases).
#include "server/core/table_snapshot.h"

#include <memory>
#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::embedding::testing::Capture;
using ::embedding::testing::ExpectSameImage;
using ::embedding::testing::ReadAll;
using ::embedding::testing::TableImage;

constexpr int64_t kRows = 40;
constexpr int64_t kDim = 4;

std::unique_ptr<EmbeddingTable> MakeTable(
    OptimizerKind kind = OptimizerKind::kAdagrad,
    std::optional<float> max_norm = std::nullopt) {
  TableSpec spec;
  spec.name = "snap";
  spec.num_embeddings = kRows;
  spec.embedding_dim = kDim;
  spec.max_norm = max_norm;
  spec.optimizer = DefaultOptimizerSpec(kind);
  return *EmbeddingTable::Create(spec, {});
}

void Push(EmbeddingTable& table, std::vector<int64_t> rows, float value = 1) {
  std::vector<float> grad(rows.size() * kDim, value);
  ASSERT_TRUE(table.PushGradients(rows, grad, {}).ok());
}

std::vector<float> Row(EmbeddingTable& table, int64_t row) {
  std::vector<float> out(kDim);
  EXPECT_TRUE(table.ReadRows({row}, out.data()).ok());
  return out;
}

std::unique_ptr<TableSnapshot> Begin(EmbeddingTable& table,
                                     std::optional<uint32_t> since) {
  absl::StatusOr<std::unique_ptr<TableSnapshot>> snapshot =
      table.BeginSnapshot(since);
  EXPECT_TRUE(snapshot.ok()) << snapshot.status();
  return snapshot.ok() ? *std::move(snapshot) : nullptr;
}

TEST(TableSnapshotTest, FullSnapshotHoldsEveryRowStateAndCounters) {
  auto table = MakeTable();
  Push(*table, {1, 2, 2});
  Push(*table, {2, 39});
  std::unique_ptr<TableSnapshot> snapshot = Begin(*table, std::nullopt);
  EXPECT_FALSE(snapshot->incremental());
  EXPECT_EQ(snapshot->rows(), kRows);
  EXPECT_EQ(snapshot->metadata().version, 2);
  EXPECT_EQ(snapshot->metadata().step, 2);
  const TableImage image = ReadAll(*snapshot);
  ASSERT_EQ(image.rows.size(), kRows);
  for (int64_t row = 0; row < kRows; ++row) {
    EXPECT_EQ(image.rows[row], row);
    const std::vector<float> live = Row(*table, row);
    EXPECT_EQ(std::vector<float>(&image.weights[row * kDim],
                                 &image.weights[(row + 1) * kDim]),
              live);
  }
  // Adagrad's accumulator of row 2: (1 + 1)^2 from the first push (a
  // duplicated index sums), 1 from the second.
  EXPECT_EQ(image.state[2 * kDim], 5.0f);
  EXPECT_EQ(image.state[1 * kDim], 1.0f);
  EXPECT_EQ(image.state[0], 0.0f);
}

TEST(TableSnapshotTest, ChangesAfterTheCutAreNotInTheSnapshot) {
  auto table = MakeTable();
  Push(*table, {5});
  const TableImage before = Capture(*table);
  std::unique_ptr<TableSnapshot> snapshot = Begin(*table, std::nullopt);
  // Pre-images: a push, a write and a range write after the cut, before
  // the snapshot copied the rows.
  Push(*table, {5, 6, 30});
  ASSERT_TRUE(table->WriteRows({7}, std::vector<float>(kDim, 9.0f)).ok());
  ASSERT_TRUE(
      table->WriteRowRange(20, std::vector<float>(3 * kDim, 8.0f)).ok());
  Push(*table, {5});  // A second change keeps the first pre-image.
  ExpectSameImage(ReadAll(*snapshot), before);
}

TEST(TableSnapshotTest, RowsChangedAfterBeingCopiedKeepTheirCopy) {
  auto table = MakeTable();
  const TableImage before = Capture(*table);
  std::unique_ptr<TableSnapshot> snapshot = Begin(*table, std::nullopt);
  std::vector<int64_t> rows(10);
  std::vector<float> weights(10 * kDim), state(10 * kDim);
  ASSERT_EQ(snapshot->Read(10, rows.data(), weights.data(), state.data()), 10);
  Push(*table, {0, 9, 10, 39});  // Two copied, two not yet.
  TableImage rest = ReadAll(*snapshot);
  EXPECT_EQ(rest.rows.front(), 10);
  EXPECT_EQ(std::vector<float>(weights.begin(), weights.end()),
            std::vector<float>(before.weights.begin(),
                               before.weights.begin() + 10 * kDim));
  EXPECT_EQ(rest.weights, std::vector<float>(before.weights.begin() + 10 * kDim,
                                             before.weights.end()));
  EXPECT_EQ(rest.state, std::vector<float>(before.state.begin() + 10 * kDim,
                                           before.state.end()));
}

TEST(TableSnapshotTest, IncrementalHoldsRowsChangedSinceTheEarlierCut) {
  auto table = MakeTable();
  Push(*table, {1});
  const uint32_t base = Begin(*table, std::nullopt)->epoch();
  Push(*table, {3, 7});
  ASSERT_TRUE(table->WriteRows({11}, std::vector<float>(kDim, 2.0f)).ok());
  std::unique_ptr<TableSnapshot> delta = Begin(*table, base);
  EXPECT_TRUE(delta->incremental());
  EXPECT_EQ(delta->rows(), 3);
  const TableImage image = ReadAll(*delta);
  EXPECT_EQ(image.rows, (std::vector<int64_t>{3, 7, 11}));
  EXPECT_EQ(image.metadata.version, 3);
  EXPECT_EQ(image.weights[2 * kDim], 2.0f);
}

TEST(TableSnapshotTest, BasePlusDeltasEqualsTheTable) {
  auto table = MakeTable(OptimizerKind::kSparseAdam);
  Push(*table, {1, 2});
  std::unique_ptr<TableSnapshot> full = Begin(*table, std::nullopt);
  Push(*table, {2, 3});  // During the full snapshot: in the next delta.
  TableImage image = ReadAll(*full);
  const uint32_t base = full->epoch();
  full.reset();
  for (int round = 0; round < 3; ++round) {
    Push(*table, {static_cast<int64_t>(round * 10), 3}, 0.5f);
    // Each delta since the full one holds every row changed since.
    testing::ApplyDelta(image, ReadAll(*Begin(*table, base)));
    ExpectSameImage(image, Capture(*table));
  }
}

TEST(TableSnapshotTest, ADeltaChangedDuringItsSnapshotHoldsTheCut) {
  auto table = MakeTable();
  const uint32_t base = Begin(*table, std::nullopt)->epoch();
  Push(*table, {3});
  const std::vector<float> row3 = Row(*table, 3);
  std::unique_ptr<TableSnapshot> delta = Begin(*table, base);
  Push(*table, {3, 5});  // 3 is in the delta (pre-image), 5 is not.
  const TableImage image = ReadAll(*delta);
  EXPECT_EQ(image.rows, (std::vector<int64_t>{3}));
  EXPECT_EQ(std::vector<float>(image.weights.begin(), image.weights.end()),
            row3);
  // The next delta holds both: changed after this one's cut.
  const uint32_t cut = delta->epoch();
  delta.reset();
  EXPECT_EQ(ReadAll(*Begin(*table, cut)).rows, (std::vector<int64_t>{3, 5}));
}

TEST(TableSnapshotTest, AnAbandonedDeltaLosesNothingForTheNext) {
  auto table = MakeTable();
  const uint32_t base = Begin(*table, std::nullopt)->epoch();
  Push(*table, {1});
  {
    // A save that fails: begun, partly read, never written.
    std::unique_ptr<TableSnapshot> failed = Begin(*table, base);
    std::vector<int64_t> rows(1);
    std::vector<float> weights(kDim), state(kDim);
    failed->Read(1, rows.data(), weights.data(), state.data());
  }
  Push(*table, {2});
  EXPECT_EQ(ReadAll(*Begin(*table, base)).rows, (std::vector<int64_t>{1, 2}));
}

TEST(TableSnapshotTest, MaxNormRenormIsAChangeForSnapshots) {
  auto table = MakeTable(OptimizerKind::kSgd, /*max_norm=*/0.5f);
  ASSERT_TRUE(table->WriteRows({4}, std::vector<float>(kDim, 3.0f)).ok());
  const uint32_t base = Begin(*table, std::nullopt)->epoch();
  std::unique_ptr<TableSnapshot> snapshot = Begin(*table, std::nullopt);
  std::vector<float> out(kDim);
  ASSERT_TRUE(table->Lookup({4}, DType::kFloat32, out.data()).ok());
  EXPECT_LT(out[0], 3.0f);  // Renormed in place by the lookup...
  const TableImage image = ReadAll(*snapshot);
  EXPECT_EQ(image.weights[4 * kDim], 3.0f);  // ...after the cut.
  const uint32_t cut = snapshot->epoch();
  snapshot.reset();
  EXPECT_EQ(ReadAll(*Begin(*table, cut)).rows, (std::vector<int64_t>{4}));
  EXPECT_EQ(ReadAll(*Begin(*table, base)).rows, (std::vector<int64_t>{4}));
}

TEST(TableSnapshotTest, MetadataHoldsOptimizerAndExactlyOnceWindows) {
  auto table = MakeTable();
  OptimizerSpec optimizer = DefaultOptimizerSpec(OptimizerKind::kAdagrad);
  optimizer.lr = 0.5f;
  ASSERT_TRUE(table->SetOptimizer(optimizer).ok());
  std::vector<float> grad(kDim, 1.0f);
  ASSERT_TRUE(
      table->PushGradients({1}, grad, {.client_id = "b", .sequence = 2}).ok());
  ASSERT_TRUE(
      table->PushGradients({1}, grad, {.client_id = "a", .sequence = 7}).ok());
  std::unique_ptr<TableSnapshot> snapshot = Begin(*table, std::nullopt);
  ASSERT_TRUE(
      table->PushGradients({1}, grad, {.client_id = "a", .sequence = 8}).ok());
  EXPECT_EQ(snapshot->metadata().spec.optimizer.lr, 0.5f);
  EXPECT_EQ(snapshot->metadata().exactly_once,
            (std::vector<ClientWindow>{{"a", {7}}, {"b", {2}}}));
}

TEST(TableSnapshotTest, OneSnapshotAtATime) {
  auto table = MakeTable();
  std::unique_ptr<TableSnapshot> open = Begin(*table, std::nullopt);
  absl::Status second = table->BeginSnapshot(std::nullopt).status();
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(second.message(),
            "table \"snap\" already has a snapshot in progress");
  open.reset();
  EXPECT_TRUE(table->BeginSnapshot(std::nullopt).ok());
}

TEST(TableSnapshotTest, SinceAnEpochNotYetReachedIsInvalidArgument) {
  auto table = MakeTable();
  absl::Status status = table->BeginSnapshot(1).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "snapshot since epoch 1 of table \"snap\", which is only at "
            "epoch 1");
}

TEST(TableSnapshotTest, ShardedSnapshotHoldsGlobalRowIds) {
  TableSpec spec;
  spec.name = "sharded";
  spec.num_embeddings = 10;
  spec.embedding_dim = kDim;
  spec.shard_index = 1;
  spec.shard_count = 3;
  auto table = *EmbeddingTable::Create(spec, {});
  EXPECT_EQ(Capture(*table).rows, (std::vector<int64_t>{1, 4, 7}));
}

}  // namespace
}  // namespace embedding
