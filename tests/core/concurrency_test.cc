// Stress test of the concurrency promise: lookups never see a torn row and
// concurrent pushes never lose an update. Runs in the normal suite and, with
// the rest of the engine tests, under ThreadSanitizer.
//
// Able to fail: with the seqlock's check skipped (CopyRow returning its
// first copy unchecked), both torn-row tests fail in a release build
// (TornRowsUnderWideWrites counted 2 to 72 torn rows in 5 of 5 runs).
#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/base/config.h"
#include "gtest/gtest.h"
#include "server/core/embedding_table.h"

namespace embedding {
namespace {

constexpr int64_t kDim = 32;
constexpr int64_t kWrittenRows = 8;  // Rows [0, 8) get whole-row writes.
constexpr int64_t kPushedRows = 8;   // Rows [8, 16) get pushes.

// A table of zeros with SGD at lr 1, so that pushes of whole numbers give
// exact results.
std::unique_ptr<EmbeddingTable> MakeTable(const char* name, int64_t rows,
                                          int64_t dim) {
  TableSpec spec;
  spec.name = name;
  spec.num_embeddings = rows;
  spec.embedding_dim = dim;
  spec.initializer = {InitializerSpec::Kind::kConstant, 0.0f, 0.0f};
  spec.optimizer.lr = 1.0f;
  return *EmbeddingTable::Create(spec, {});
}

std::unique_ptr<EmbeddingTable> MakeTable() {
  return MakeTable("stress", kWrittenRows + kPushedRows, kDim);
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

// A push takes the locks of many stripes at once (rows grouped by stripe,
// ascending, several rows per stripe): pushes of the same rows in different
// orders must neither deadlock nor lose an update, and readers must never
// see a row half stepped.
TEST(ConcurrencyTest, PushesSpanningManyStripesKeepEveryUpdate) {
  constexpr int64_t kStripes = 1024;       // EmbeddingTable::kLockStripes.
  constexpr int64_t kRows = 3 * kStripes;  // Three rows on every stripe.
  constexpr int kPushers = 3;
#ifdef ABSL_HAVE_THREAD_SANITIZER
  constexpr int kPushesPerThread = 20;
#else
  constexpr int kPushesPerThread = 300;
#endif
  auto table = MakeTable("stripes", kRows, kDim);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> torn{0};
  std::thread reader([&] {
    std::vector<int64_t> all(kRows);
    for (int64_t i = 0; i < kRows; ++i) all[i] = i;
    std::vector<float> out(kRows * kDim);
    while (!stop.load()) {
      ASSERT_TRUE(table->Lookup(all, DType::kFloat32, out.data()).ok());
      for (int64_t i = 0; i < kRows; ++i) {
        if (!IsUniform(&out[i * kDim])) ++torn;
      }
    }
  });
  // Pusher p pushes every row once, plus row p twice more, in an order of
  // its own (ascending, descending, interleaved by stripe).
  std::vector<std::thread> pushers;
  for (int p = 0; p < kPushers; ++p) {
    pushers.emplace_back([&, p] {
      std::vector<int64_t> indices;
      for (int64_t i = 0; i < kRows; ++i) {
        indices.push_back(p == 1   ? kRows - 1 - i
                          : p == 2 ? (i % 3) * kStripes + i / 3
                                   : i);
      }
      indices.push_back(p);
      indices.push_back(p);
      const std::vector<float> grad(indices.size() * kDim, 1.0f);
      for (int i = 0; i < kPushesPerThread; ++i) {
        ASSERT_TRUE(table->PushGradients(indices, grad, {}).ok());
      }
    });
  }
  for (auto& t : pushers) t.join();
  stop = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0);
  std::vector<float> row(kDim);
  const float pushes = kPushers * kPushesPerThread;
  for (int64_t r = 0; r < kRows; ++r) {
    ASSERT_TRUE(table->ReadRows({r}, row.data()).ok());
    const float expected =
        r < kPushers ? -pushes - 2 * kPushesPerThread : -pushes;
    for (float value : row) ASSERT_EQ(value, expected) << "row " << r;
  }
}

// Rows wide enough (4 KiB) that a copy overlapping a write would catch it
// half done; every change keeps each row uniform (one value in every
// column), so a reader can tell a torn row from a whole one.
TEST(ConcurrencyTest, TornRowsUnderWideWrites) {
  constexpr int64_t kWideDim = 1024;
  constexpr int64_t kRows = 4;
  auto table = MakeTable("wide", kRows, kWideDim);
  const auto uniform = [](const float* row) {
    for (int64_t d = 1; d < kWideDim; ++d) {
      if (std::memcmp(&row[d], &row[0], sizeof(float)) != 0) return false;
    }
    return true;
  };
  const auto uniform_half = [](const uint16_t* row) {
    for (int64_t d = 1; d < kWideDim; ++d) {
      if (row[d] != row[0]) return false;
    }
    return true;
  };
  // Lookups per reader; writers run until the readers are done.
#ifdef ABSL_HAVE_THREAD_SANITIZER
  constexpr int kReads = 300;
#else
  constexpr int kReads = 30000;
#endif
  std::atomic<bool> stop{false};
  std::atomic<int64_t> torn{0}, checked{0};
  std::vector<std::thread> writers;
  // Whole-row writes and pushes of a uniform gradient, to every row.
  writers.emplace_back([&] {
    for (int i = 0; !stop.load(); ++i) {
      std::vector<float> values(kWideDim, static_cast<float>(i % 1000));
      ASSERT_TRUE(table->WriteRows({i % kRows}, values).ok());
    }
  });
  writers.emplace_back([&] {
    const std::vector<float> grad(kWideDim, 0.5f);
    for (int i = 0; !stop.load(); ++i) {
      ASSERT_TRUE(table->PushGradients({(i + 1) % kRows}, grad, {}).ok());
    }
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      const std::vector<int64_t> all = {0, 1, 2, 3};
      std::vector<float> out(kRows * kWideDim);
      std::vector<uint16_t> half(kRows * kWideDim);
      for (int i = 0; i < kReads; ++i) {
        // Straight into the output, through scratch (float16), and ReadRows.
        if ((i + r) % 3 == 1) {
          ASSERT_TRUE(table->Lookup(all, DType::kFloat16, half.data()).ok());
          for (int64_t row = 0; row < kRows; ++row) {
            if (!uniform_half(&half[row * kWideDim])) ++torn;
          }
        } else {
          ASSERT_TRUE((i + r) % 3 == 0
                          ? table->Lookup(all, DType::kFloat32, out.data()).ok()
                          : table->ReadRows(all, out.data()).ok());
          for (int64_t row = 0; row < kRows; ++row) {
            if (!uniform(&out[row * kWideDim])) ++torn;
          }
        }
        checked += kRows;
      }
    });
  }
  for (auto& t : readers) t.join();
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_EQ(torn.load(), 0) << "torn rows, of " << checked.load() << " read";
  EXPECT_GT(checked.load(), 0);
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
