#include "server/core/table_registry.h"

#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/table_snapshot.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::embedding::testing::CancelAfter;

TableSpec Spec(const std::string& name, int64_t rows, int64_t dim) {
  TableSpec spec;
  spec.name = name;
  spec.num_embeddings = rows;
  spec.embedding_dim = dim;
  return spec;
}

TEST(TableRegistryTest, DuplicateNameIsAlreadyExists) {
  TableRegistry registry({});
  ASSERT_TRUE(registry.Create(Spec("a", 4, 2), {}).ok());
  absl::Status status = registry.Create(Spec("a", 4, 2), {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(status.message(), "table \"a\" already exists");
}

TEST(TableRegistryTest, UnknownNameIsNotFound) {
  TableRegistry registry({});
  for (const absl::Status& status :
       {registry.Get("nope").status(), registry.Delete("nope")}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(status.message(), "table \"nope\" not found");
  }
}

TEST(TableRegistryTest, MemoryBudgetRefusesAndDeleteFrees) {
  TableRegistry registry({.memory_budget_bytes = 1000});
  ASSERT_TRUE(registry.Create(Spec("a", 50, 4), {}).ok());  // 800 bytes.
  absl::Status status = registry.Create(Spec("b", 50, 4), {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(),
            "table \"b\" needs 800 bytes; the memory budget is 1000 bytes of "
            "which 200 are free");
  EXPECT_EQ(registry.memory_used_bytes(), 800);
  ASSERT_TRUE(registry.Delete("a").ok());
  EXPECT_EQ(registry.memory_used_bytes(), 0);
  EXPECT_TRUE(registry.Create(Spec("b", 50, 4), {}).ok());
}

TEST(TableRegistryTest, FailedCreateReleasesNameAndBudget) {
  TableRegistry registry({.memory_budget_bytes = 1000});
  absl::Status status = registry.Create(Spec("a", 4, 2), {1.0f}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "initial_weights has 1 elements, expected [4, 2] = 8");
  EXPECT_EQ(registry.memory_used_bytes(), 0);
  EXPECT_TRUE(registry.Create(Spec("a", 4, 2), {}).ok());
}

TEST(TableRegistryTest, ListIsSortedAndCarriesShardFields) {
  TableRegistry registry({.shard_index = 1, .shard_count = 2});
  ASSERT_TRUE(registry.Create(Spec("b", 5, 2), {}).ok());
  ASSERT_TRUE(registry.Create(Spec("a", 5, 2), {}).ok());
  std::vector<TableStats> tables = registry.List();
  ASSERT_EQ(tables.size(), 2u);
  EXPECT_EQ(tables[0].spec.name, "a");
  EXPECT_EQ(tables[0].spec.shard_index, 1);
  EXPECT_EQ(tables[0].local_rows, 2);  // Rows 1 and 3 of 5.
}

TEST(TableRegistryTest, CreateWithBuildsFromTheValidatedSpecWithShardFields) {
  TableRegistry registry({.shard_index = 1, .shard_count = 2});
  TableSpec seen;
  absl::StatusOr<TableStats> created =
      registry.CreateWith(Spec("a", 5, 2), [&](const TableSpec& spec) {
        seen = spec;
        return EmbeddingTable::Create(spec, {});
      });
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(seen.shard_index, 1);
  EXPECT_EQ(seen.shard_count, 2);
  EXPECT_TRUE(registry.Get("a").ok());
}

TEST(TableRegistryTest, FailedCreateWithReleasesNameAndBudget) {
  TableRegistry registry({.memory_budget_bytes = 1000});
  absl::Status status =
      registry
          .CreateWith(Spec("a", 4, 2),
                      [&](const TableSpec&)
                          -> absl::StatusOr<std::unique_ptr<EmbeddingTable>> {
                        EXPECT_EQ(registry.memory_used_bytes(), 32);
                        return absl::DataLossError("bad checkpoint");
                      })
          .status();
  EXPECT_EQ(status, absl::DataLossError("bad checkpoint"));
  EXPECT_EQ(registry.memory_used_bytes(), 0);
  EXPECT_FALSE(registry.Get("a").ok());
}

// Issue 10, defect 1: 2^63 - 1 rows on 4 or 8 shards overflowed the local
// row count, allocation threw and the name and budget stayed reserved.
TEST(TableRegistryTest, HugeShardedCreateFailsCleanlyAndLeavesNoTrace) {
  for (int32_t shard_count : {4, 8}) {
    SCOPED_TRACE(shard_count);
    TableRegistry registry({.memory_budget_bytes = 400'000'000,
                            .shard_index = 0,
                            .shard_count = shard_count});
    const TableSpec huge = Spec("huge", std::numeric_limits<int64_t>::max(), 1);
    const absl::Status status = registry.Create(huge, {}).status();
    // 2^61 local rows of 4 bytes do not fit 64 bits; 2^60 do, but not the
    // budget.
    EXPECT_EQ(status.code(), shard_count == 4
                                 ? absl::StatusCode::kInvalidArgument
                                 : absl::StatusCode::kResourceExhausted)
        << status;
    EXPECT_EQ(registry.Create(huge, {}).status(), status);
    EXPECT_EQ(registry.Get("huge").status().code(),
              absl::StatusCode::kNotFound);
    EXPECT_EQ(registry.memory_used_bytes(), 0);
    ASSERT_TRUE(registry.Create(Spec("huge", 1000, 4), {}).ok());
    EXPECT_EQ(registry.memory_used_bytes(), 1000 / shard_count * 4 * 4);
    ASSERT_TRUE(registry.Delete("huge").ok());
    EXPECT_EQ(registry.memory_used_bytes(), 0);
  }
}

TEST(TableRegistryTest, HugeCreateWithoutABudgetIsResourceExhausted) {
  TableRegistry registry({.shard_index = 0, .shard_count = 8});
  const absl::Status status =
      registry.Create(Spec("huge", std::numeric_limits<int64_t>::max(), 1), {})
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_EQ(registry.memory_used_bytes(), 0);
  EXPECT_TRUE(registry.Create(Spec("huge", 10, 1), {}).ok());
}

TEST(TableRegistryTest, BadAllocWhileBuildingIsResourceExhaustedAndUndone) {
  TableRegistry registry({.memory_budget_bytes = 1000});
  const absl::Status status =
      registry
          .CreateWith(Spec("a", 4, 2),
                      [](const TableSpec&)
                          -> absl::StatusOr<std::unique_ptr<EmbeddingTable>> {
                        throw std::bad_alloc();
                      })
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("\"a\""));
  EXPECT_EQ(registry.memory_used_bytes(), 0);
  EXPECT_TRUE(registry.Create(Spec("a", 4, 2), {}).ok());
}

// Issue 10: a deleted table held by a reader left the budget at Delete.
TEST(TableRegistryTest, DeletedTableCountsUntilItsLastHolderLetsGo) {
  TableRegistry registry({.memory_budget_bytes = 1000});
  ASSERT_TRUE(registry.Create(Spec("a", 50, 4), {}).ok());  // 800 bytes.
  std::shared_ptr<EmbeddingTable> reader = *registry.Get("a");
  ASSERT_TRUE(registry.Delete("a").ok());
  // The name is free at once, the memory is not.
  EXPECT_EQ(registry.Get("a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.memory_used_bytes(), 800);
  const absl::Status status = registry.Create(Spec("a", 50, 4), {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(),
            "table \"a\" needs 800 bytes; the memory budget is 1000 bytes of "
            "which 200 are free");
  // A table that fits beside the held one may take the name.
  ASSERT_TRUE(registry.Create(Spec("a", 10, 4), {}).ok());  // 160 bytes.
  EXPECT_EQ(registry.memory_used_bytes(), 960);
  ASSERT_TRUE(registry.Delete("a").ok());
  reader.reset();
  EXPECT_EQ(registry.memory_used_bytes(), 0);
  EXPECT_TRUE(registry.Create(Spec("a", 50, 4), {}).ok());
}

// Issue 10: an unknown name of 8000 characters came back whole.
TEST(TableRegistryTest, LongNamesAreQuotedCutShort) {
  TableRegistry registry({});
  const std::string name(8000, 'n');
  for (const absl::Status& status :
       {registry.Get(name).status(), registry.Delete(name)}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(status.message(), absl::StrCat("table \"", std::string(64, 'n'),
                                             "\"... (8000 bytes) not found"));
  }
}

// Issue 10, defect 8: a create that is cancelled leaves nothing reserved.
TEST(TableRegistryTest, CancelledCreateFreesTheNameAndTheBudget) {
  TableRegistry registry({.memory_budget_bytes = 1 << 20});
  const TableSpec spec = Spec("a", 3 * kRowsBetweenCancelChecks, 1);
  // Before building, during the initialisation (three blocks of rows), and
  // once built but before it is published.
  for (int64_t checks : {0, 2, 4}) {
    CancelAfter cancel(checks);
    EXPECT_EQ(registry.Create(spec, {}, cancel).status(),
              absl::UnavailableError("cancelled by the test"));
    EXPECT_EQ(cancel.calls(), checks + 1);
    EXPECT_EQ(registry.memory_used_bytes(), 0);
    EXPECT_EQ(registry.Get("a").status().code(), absl::StatusCode::kNotFound);
  }
  CancelAfter never(5);
  EXPECT_TRUE(registry.Create(spec, {}, never).ok());
  EXPECT_EQ(never.calls(), 5);
  EXPECT_EQ(registry.memory_used_bytes(), 3 * kRowsBetweenCancelChecks * 4);
}

TEST(TableRegistryTest, ExactlyOnceTrackingUsesTheRegistryOptions) {
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  TableRegistry registry({.exactly_once_idle = absl::Seconds(10),
                          .exactly_once_max_clients = 1,
                          .clock = [&] { return now; }});
  ASSERT_TRUE(registry.Create(Spec("t", 4, 1), {}).ok());
  std::shared_ptr<EmbeddingTable> table = *registry.Get("t");
  ASSERT_TRUE(
      table->PushGradients({1}, {1}, {.client_id = "a", .sequence = 1}).ok());
  EXPECT_EQ(table->PushGradients({1}, {1}, {.client_id = "b", .sequence = 1})
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  now += absl::Seconds(11);
  ASSERT_TRUE(
      table->PushGradients({1}, {1}, {.client_id = "b", .sequence = 1}).ok());
  const absl::Status status =
      table->PushGradients({1}, {1}, {.client_id = "a", .sequence = 1})
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(),
              ::testing::HasSubstr("forgotten after being idle for more "
                                   "than 10s"));
}

TEST(TableRegistryTest, SnapshotPreImagesCountAgainstTheBudget) {
  TableRegistry registry({.memory_budget_bytes = 10'000});
  ASSERT_TRUE(registry.Create(Spec("t", 100, 4), {}).ok());  // 1600 bytes.
  std::shared_ptr<EmbeddingTable> table = *registry.Get("t");
  std::unique_ptr<TableSnapshot> snapshot = *table->BeginSnapshot(std::nullopt);
  ASSERT_TRUE(
      table->PushGradients({1, 2, 3}, std::vector<float>(12, 1), {}).ok());
  // Three pre-images of 4 floats and their bookkeeping.
  const int64_t with_pre_images = registry.memory_used_bytes();
  EXPECT_EQ(with_pre_images, 1600 + 3 * (16 + 96));
  // Reading a row frees its pre-image; ending the snapshot the rest.
  std::vector<int64_t> rows(2);
  std::vector<float> weights(8);
  ASSERT_EQ(snapshot->Read(2, rows.data(), weights.data(), nullptr), 2);
  EXPECT_EQ(registry.memory_used_bytes(), 1600 + 2 * (16 + 96));
  snapshot.reset();
  EXPECT_EQ(registry.memory_used_bytes(), 1600);
}

}  // namespace
}  // namespace embedding
