#include "server/core/table_loader.h"

#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::embedding::testing::Capture;
using ::embedding::testing::ExpectSameImage;
using ::embedding::testing::TableImage;

constexpr int64_t kDim = 3;

TableSpec Spec() {
  TableSpec spec;
  spec.name = "load";
  spec.num_embeddings = 10;
  spec.embedding_dim = kDim;
  spec.optimizer = DefaultOptimizerSpec(OptimizerKind::kSparseAdam);
  return spec;
}

// Loads a capture into a new table, in two puts of the rows.
absl::StatusOr<std::unique_ptr<EmbeddingTable>> Load(const TableImage& image) {
  absl::StatusOr<std::unique_ptr<TableLoader>> loader =
      TableLoader::Create(image.metadata.spec);
  if (!loader.ok()) return loader.status();
  const size_t half = image.rows.size() / 2;
  const absl::Span<const int64_t> rows(image.rows);
  const absl::Span<const float> weights(image.weights), state(image.state);
  absl::Status put =
      (*loader)->Put(rows.subspan(half), weights.subspan(half * image.dim),
                     state.subspan(half * image.state_width));
  if (put.ok()) {
    put = (*loader)->Put(rows.subspan(0, half),
                         weights.subspan(0, half * image.dim),
                         state.subspan(0, half * image.state_width));
  }
  if (!put.ok()) return put;
  return std::move(**loader).Finish(image.metadata);
}

TEST(TableLoaderTest, LoadedTableEqualsTheCapturedOne) {
  auto table = *EmbeddingTable::Create(Spec(), {});
  OptimizerSpec optimizer = DefaultOptimizerSpec(OptimizerKind::kSparseAdam);
  optimizer.lr = 0.25f;
  ASSERT_TRUE(table->SetOptimizer(optimizer).ok());
  std::vector<float> grad(2 * kDim, 0.5f);
  ASSERT_TRUE(
      table->PushGradients({1, 8}, grad, {.client_id = "c", .sequence = 4})
          .ok());
  const TableImage image = Capture(*table);
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> loaded = Load(image);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameImage(Capture(**loaded), image);

  // The next push gives the same on both; a retried one is a duplicate.
  const PushOptions next{.client_id = "c", .sequence = 5};
  ASSERT_TRUE(table->PushGradients({1, 8}, grad, next).ok());
  ASSERT_TRUE((*loaded)->PushGradients({1, 8}, grad, next).ok());
  ExpectSameImage(Capture(**loaded), Capture(*table));
  absl::StatusOr<PushResult> retried =
      (*loaded)->PushGradients({1, 8}, grad, {.client_id = "c", .sequence = 4});
  ASSERT_TRUE(retried.ok());
  EXPECT_TRUE(retried->duplicate);
}

TEST(TableLoaderTest, LoadedRowsCountAsUnchangedForSnapshots) {
  auto table = *EmbeddingTable::Create(Spec(), {});
  auto loaded = *Load(Capture(*table));
  EXPECT_EQ((*loaded->BeginSnapshot(TableLoader::kRestoredEpoch))->rows(), 0);
  ASSERT_TRUE(loaded->WriteRows({2}, std::vector<float>(kDim, 1.0f)).ok());
  EXPECT_EQ((*loaded->BeginSnapshot(TableLoader::kRestoredEpoch))->rows(), 1);
}

TEST(TableLoaderTest, ARowNeverPutIsInvalidArgument) {
  TableImage image = Capture(**EmbeddingTable::Create(Spec(), {}));
  image.rows.erase(image.rows.begin() + 7);
  image.weights.erase(image.weights.begin() + 7 * kDim,
                      image.weights.begin() + 8 * kDim);
  image.state.erase(image.state.begin() + 7 * 2 * kDim,
                    image.state.begin() + 8 * 2 * kDim);
  absl::Status status = Load(image).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "row 7 is missing (1 rows missing)");
}

TEST(TableLoaderTest, ARowOfAnotherShardIsInvalidArgument) {
  TableSpec spec = Spec();
  spec.shard_count = 2;
  auto loader = *TableLoader::Create(spec);
  absl::Status status =
      loader->Put({1}, std::vector<float>(kDim), std::vector<float>(2 * kDim));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "row 1 at position 0 belongs to shard 1; this server is shard 0 "
            "of 2");
}

TEST(TableLoaderTest, ANonFiniteValueIsInvalidArgument) {
  auto loader = *TableLoader::Create(Spec());
  std::vector<float> state(2 * kDim);
  state[4] = std::numeric_limits<float>::quiet_NaN();
  absl::Status status = loader->Put({3}, std::vector<float>(kDim), state);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "optimizer state of row 3 has a non-finite value (nan) at column "
            "4");
}

TEST(TableLoaderTest, MetadataOfAnotherTableIsInvalidArgument) {
  TableImage image = Capture(**EmbeddingTable::Create(Spec(), {}));
  auto loader = *TableLoader::Create(Spec());
  ASSERT_TRUE(loader->Put(image.rows, image.weights, image.state).ok());
  image.metadata.spec.seed = 99;
  absl::Status status = std::move(*loader).Finish(image.metadata).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "spec field seed differs from the table's");
}

}  // namespace
}  // namespace embedding
