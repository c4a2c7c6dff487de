// Per-table counters (server/core) as TableMetrics exports them: each call
// the engine answers counts once, a refused call not at all.
#include "server/metrics/table_metrics.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/core/bag.h"
#include "server/core/table_registry.h"
#include "tests/metrics/metric_testing.h"

namespace embedding {
namespace {

constexpr int64_t kDim = 2;

class TableMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TableSpec spec;
    spec.name = "t";
    spec.num_embeddings = 10;
    spec.embedding_dim = kDim;
    ASSERT_TRUE(registry_.Create(spec, {}).ok());
    absl::StatusOr<std::shared_ptr<EmbeddingTable>> table = registry_.Get("t");
    ASSERT_TRUE(table.ok());
    table_ = *table;
  }

  double Value(const std::string& name, const std::string& table = "t") {
    return ValueOf(metrics_.Collect(), name, {{"table", table}});
  }

  absl::StatusOr<PushResult> Push(std::vector<int64_t> indices,
                                  uint64_t sequence) {
    const std::vector<float> grad(indices.size() * kDim, 0.5f);
    return table_->PushGradients(indices, grad,
                                 {.client_id = "c", .sequence = sequence});
  }

  TableRegistry registry_{{.memory_budget_bytes = 1 << 20}};
  TableMetrics metrics_{&registry_};
  std::shared_ptr<EmbeddingTable> table_;
};

TEST_F(TableMetricsTest, LookupsCountTheirIndices) {
  std::vector<float> out(8 * kDim);
  ASSERT_TRUE(table_->Lookup({1, 1, 2}, DType::kFloat32, out.data()).ok());
  // Refused: out of range. Nothing counts.
  ASSERT_FALSE(table_->Lookup({1, 10}, DType::kFloat32, out.data()).ok());
  const std::vector<int64_t> indices = {3, 4, 5, 6};
  const std::vector<int64_t> offsets = {0, 2};
  absl::StatusOr<ValidatedBagBatch> bags = ValidateBagBatch(
      {.indices = indices, .offsets = offsets, .mode = BagMode::kSum});
  ASSERT_TRUE(bags.ok()) << bags.status();
  ASSERT_TRUE(
      table_->LookupBag(*bags, DType::kFloat32, out.data(), nullptr).ok());
  ASSERT_TRUE(table_->ReadRows({7, 8}, out.data()).ok());
  EXPECT_EQ(Value("embedding_table_rows_looked_up_total"), 3 + 4);
  EXPECT_EQ(Value("embedding_table_rows_read_total"), 2);
  EXPECT_EQ(Value("embedding_table_rows"), 10);
  EXPECT_EQ(Value("embedding_table_memory_bytes"), 10 * kDim * 4);
}

TEST_F(TableMetricsTest, PushesCountRowsAndDuplicates) {
  ASSERT_TRUE(Push({1, 1, 2}, 1).ok());  // Two distinct rows.
  absl::StatusOr<PushResult> retry = Push({1, 1, 2}, 1);
  ASSERT_TRUE(retry.ok());
  ASSERT_TRUE(retry->duplicate);
  ASSERT_TRUE(Push({3}, 2).ok());
  ASSERT_FALSE(Push({11}, 3).ok());  // Refused: not counted.
  const std::vector<float> values(3 * kDim, 1.0f);
  ASSERT_TRUE(table_->WriteRows({4, 5, 6}, values).ok());
  ASSERT_TRUE(table_->WriteRowRange(0, std::vector<float>(2 * kDim)).ok());
  EXPECT_EQ(Value("embedding_table_pushes_total"), 3);
  EXPECT_EQ(Value("embedding_table_duplicate_pushes_total"), 1);
  EXPECT_EQ(Value("embedding_table_rows_updated_total"), 2 + 1);
  EXPECT_EQ(Value("embedding_table_rows_written_total"), 3 + 2);
}

TEST_F(TableMetricsTest, MemoryBudgetAndUse) {
  const auto families = metrics_.Collect();
  EXPECT_EQ(ValueOf(families, "embedding_memory_budget_bytes", {}), 1 << 20);
  EXPECT_EQ(ValueOf(families, "embedding_memory_used_bytes", {}),
            10 * kDim * 4);
  for (const prometheus::MetricFamily& family : families) {
    EXPECT_FALSE(family.help.empty()) << family.name;
  }
}

TEST_F(TableMetricsTest, DeletedTablesLeave) {
  ASSERT_TRUE(registry_.Delete("t").ok());
  EXPECT_EQ(Value("embedding_table_rows"), -1);  // No sample.
}

}  // namespace
}  // namespace embedding
