#include "server/core/table_registry.h"

#include "gtest/gtest.h"

namespace embedding {
namespace {

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

}  // namespace
}  // namespace embedding
