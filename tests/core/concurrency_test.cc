// Stress test of the concurrency promise: lookups never see a torn row and
// concurrent pushes never lose an update. Runs in the normal suite and, with
// the rest of the engine tests, under ThreadSanitizer.
#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/core/embedding_table.h"

namespace embedding {
namespace {

constexpr int64_t kDim = 32;
constexpr int64_t kWrittenRows = 8;  // Rows [0, 8) get whole-row writes.
constexpr int64_t kPushedRows = 8;   // Rows [8, 16) get pushes.

std::unique_ptr<EmbeddingTable> MakeTable() {
  TableSpec spec;
  spec.name = "stress";
  spec.num_embeddings = kWrittenRows + kPushedRows;
  spec.embedding_dim = kDim;
  spec.initializer = {InitializerSpec::Kind::kConstant, 0.0f, 0.0f};
  spec.optimizer.lr = 1.0f;
  return *EmbeddingTable::Create(spec, {});
}

bool IsUniform(const float* row) {
  for (int64_t d = 1; d < kDim; ++d) {
    if (row[d] != row[0]) return false;
  }
  return true;
}

TEST(ConcurrencyTest, NoTornRowsAndNoLostPushes) {
  auto table = MakeTable();
  constexpr int kWriters = 2, kPushers = 3, kReaders = 2;
  constexpr int kPushesPerThread = 20000;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> torn_rows{0}, rows_checked{0};
  std::vector<std::thread> threads;

  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      // Each write fills a whole row with one value.
      for (int i = 0; !stop.load(); ++i) {
        const int64_t row = (i + w) % kWrittenRows;
        std::vector<float> values(kDim, static_cast<float>(i * 2 + w));
        ASSERT_TRUE(table->WriteRows({row}, values).ok());
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&] {
      std::vector<int64_t> all(kWrittenRows + kPushedRows);
      for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
      std::vector<float> out(all.size() * kDim);
      while (!stop.load()) {
        ASSERT_TRUE(table->Lookup(all, DType::kFloat32, out.data()).ok());
        for (size_t i = 0; i < all.size(); ++i) {
          if (!IsUniform(&out[i * kDim])) ++torn_rows;
          ++rows_checked;
        }
      }
    });
  }
  // Each push adds gradient 1 to every element of every pushed row, twice for
  // a duplicated row: with lr 1 the final value is exact in float.
  std::vector<std::thread> pushers;
  for (int p = 0; p < kPushers; ++p) {
    pushers.emplace_back([&] {
      std::vector<int64_t> indices;
      for (int64_t row = kWrittenRows; row < kWrittenRows + kPushedRows;
           ++row) {
        indices.push_back(row);
      }
      indices.push_back(kWrittenRows);  // A duplicate within the push.
      std::vector<float> grad(indices.size() * kDim, 1.0f);
      for (int i = 0; i < kPushesPerThread; ++i) {
        ASSERT_TRUE(table->PushGradients(indices, grad, {}).ok());
      }
    });
  }
  for (auto& t : pushers) t.join();
  stop = true;
  for (auto& t : threads) t.join();

  EXPECT_EQ(torn_rows.load(), 0) << "of " << rows_checked.load();
  EXPECT_GT(rows_checked.load(), 0);
  std::vector<float> row(kDim);
  const float pushes = static_cast<float>(kPushers * kPushesPerThread);
  for (int64_t r = kWrittenRows; r < kWrittenRows + kPushedRows; ++r) {
    ASSERT_TRUE(table->ReadRows({r}, row.data()).ok());
    const float expected = r == kWrittenRows ? -2 * pushes : -pushes;
    for (float value : row) ASSERT_EQ(value, expected) << "row " << r;
  }
  EXPECT_EQ(table->Stats().step, kPushers * kPushesPerThread);
}

TEST(ConcurrencyTest, ConcurrentRetriesOfOnePushApplyItOnce) {
  auto table = MakeTable();
  std::atomic<int> applied{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (uint64_t sequence = 1; sequence <= 200; ++sequence) {
        PushOptions options{.client_id = "trainer", .sequence = sequence};
        absl::StatusOr<PushResult> result = table->PushGradients(
            {kWrittenRows}, std::vector<float>(kDim, 1.0f), options);
        ASSERT_TRUE(result.ok()) << result.status();
        if (!result->duplicate) ++applied;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(applied.load(), 200);
  std::vector<float> row(kDim);
  ASSERT_TRUE(table->ReadRows({kWrittenRows}, row.data()).ok());
  EXPECT_EQ(row[0], -200.0f);
}

}  // namespace
}  // namespace embedding
