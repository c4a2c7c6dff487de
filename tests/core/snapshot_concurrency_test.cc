// The snapshot promise under concurrent pushes: a snapshot is exactly the
// pushes numbered up to its version (checked against a replay), each row
// with the optimizer state of the same push, and base + deltas equal the
// table at the last cut. Runs under ThreadSanitizer with the engine tests.
#include <atomic>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/core/table_snapshot.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::embedding::testing::ApplyDelta;
using ::embedding::testing::ReadAll;
using ::embedding::testing::TableImage;

constexpr int64_t kRows = 64;
constexpr int64_t kDim = 8;
constexpr int kThreads = 4;
constexpr int kPushesPerThread = 1500;
constexpr int64_t kRowsPerPush = 6;

struct PushRecord {
  std::vector<int64_t> rows;  // Distinct.
  float grad;                 // Of every element of every row.
  int64_t version;
  std::string client_id;
  uint64_t sequence;
};

std::unique_ptr<EmbeddingTable> MakeTable(OptimizerKind kind) {
  TableSpec spec;
  spec.name = "cut";
  spec.num_embeddings = kRows;
  spec.embedding_dim = kDim;
  spec.initializer = {InitializerSpec::Kind::kConstant, 0.0f, 0.0f};
  spec.optimizer = DefaultOptimizerSpec(kind);
  spec.optimizer.lr = 1.0f;
  return *EmbeddingTable::Create(spec, {});
}

// Pushes from kThreads threads while `observe` runs on this one; returns
// every push with the version it got.
template <typename Observe>
std::vector<PushRecord> PushWhile(EmbeddingTable& table, bool integer_grads,
                                  const Observe& observe) {
  std::vector<std::vector<PushRecord>> logs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(t);
      std::uniform_int_distribution<int> grad(-4, 4);
      for (int i = 0; i < kPushesPerThread; ++i) {
        PushRecord push{.grad = integer_grads ? float(grad(random)) : 1.0f,
                        .client_id = absl::StrCat("trainer", t),
                        .sequence = static_cast<uint64_t>(i + 1)};
        std::vector<int64_t> all(kRows);
        for (int64_t r = 0; r < kRows; ++r) all[r] = r;
        std::shuffle(all.begin(), all.end(), random);
        push.rows.assign(all.begin(), all.begin() + kRowsPerPush);
        absl::StatusOr<PushResult> result = table.PushGradients(
            push.rows, std::vector<float>(kRowsPerPush * kDim, push.grad),
            {.client_id = push.client_id, .sequence = push.sequence});
        ASSERT_TRUE(result.ok()) << result.status();
        push.version = result->version;
        logs[t].push_back(std::move(push));
      }
    });
  }
  observe();
  for (std::thread& thread : threads) thread.join();
  std::vector<PushRecord> all;
  for (auto& log : logs) all.insert(all.end(), log.begin(), log.end());
  return all;
}

std::unique_ptr<TableSnapshot> Begin(EmbeddingTable& table,
                                     std::optional<uint32_t> since) {
  return *table.BeginSnapshot(since);
}

// SGD, lr 1, integer gradients from 0: every sum is exact in float, so the
// order pushes reach a row does not matter and the table at version V is
// minus the sum of the gradients of pushes 1..V.
void ExpectIsReplayOfPushesUpTo(const TableImage& image,
                                const std::vector<PushRecord>& pushes) {
  const int64_t version = image.metadata.version;
  std::vector<float> expected(kRows, 0.0f);
  std::vector<std::vector<uint64_t>> windows(kThreads);
  int64_t applied = 0;
  for (const PushRecord& push : pushes) {
    if (push.version > version) continue;
    ++applied;
    for (int64_t row : push.rows) expected[row] -= push.grad;
    windows[push.client_id.back() - '0'].push_back(push.sequence);
  }
  EXPECT_EQ(applied, version);
  EXPECT_EQ(image.metadata.step, version);
  ASSERT_EQ(image.rows.size(), kRows);
  for (int64_t row = 0; row < kRows; ++row) {
    for (int64_t d = 0; d < kDim; ++d) {
      ASSERT_EQ(image.weights[row * kDim + d], expected[row])
          << "row " << row << " at version " << version;
    }
  }
  // The exactly-once windows hold exactly the same pushes.
  std::vector<ClientWindow> expected_windows;
  for (int t = 0; t < kThreads; ++t) {
    std::sort(windows[t].begin(), windows[t].end());
    if (!windows[t].empty()) {
      expected_windows.push_back({absl::StrCat("trainer", t), windows[t]});
    }
  }
  EXPECT_EQ(image.metadata.exactly_once, expected_windows);
}

TEST(SnapshotConcurrencyTest, EachSnapshotIsExactlyThePushesUpToItsVersion) {
  auto table = MakeTable(OptimizerKind::kSgd);
  std::vector<TableImage> images;
  const std::vector<PushRecord> pushes =
      PushWhile(*table, /*integer_grads=*/true, [&] {
        for (int i = 0; i < 8; ++i) {
          std::unique_ptr<TableSnapshot> snapshot = Begin(*table, std::nullopt);
          // Slow reads, so that pushes overtake the copy.
          images.push_back(ReadAll(*snapshot, /*chunk=*/3));
          std::this_thread::yield();
        }
      });
  for (const TableImage& image : images) {
    ExpectIsReplayOfPushesUpTo(image, pushes);
  }
}

TEST(SnapshotConcurrencyTest, BasePlusDeltasIsThePushesUpToTheLastVersion) {
  auto table = MakeTable(OptimizerKind::kSgd);
  std::vector<TableImage> chains;
  const std::vector<PushRecord> pushes =
      PushWhile(*table, /*integer_grads=*/true, [&] {
        std::unique_ptr<TableSnapshot> full = Begin(*table, std::nullopt);
        TableImage image = ReadAll(*full, /*chunk=*/5);
        uint32_t base = full->epoch();
        full.reset();
        for (int i = 0; i < 6; ++i) {
          std::unique_ptr<TableSnapshot> delta = Begin(*table, base);
          // Every other delta is abandoned, as by a failed save: the next
          // one is taken since the same base and loses nothing.
          if (i % 2 == 1) continue;
          ApplyDelta(image, ReadAll(*delta, /*chunk=*/2));
          base = delta->epoch();
          chains.push_back(image);
        }
      });
  for (const TableImage& image : chains) {
    ExpectIsReplayOfPushesUpTo(image, pushes);
  }
}

// Adagrad with the same gradient (1) in every push: a row pushed k times
// has accumulator k and a weight only k determines. A weight from one push
// with the state of another would not match the replay.
TEST(SnapshotConcurrencyTest, EachRowIsCopiedWithItsOwnOptimizerState) {
  auto table = MakeTable(OptimizerKind::kAdagrad);
  std::vector<TableImage> images;
  PushWhile(*table, /*integer_grads=*/false, [&] {
    for (int i = 0; i < 8; ++i) {
      images.push_back(ReadAll(*Begin(*table, std::nullopt), /*chunk=*/3));
    }
  });
  const int64_t max_pushes = kThreads * kPushesPerThread;
  // The weight of a row after k pushes, replayed on a one-row table.
  std::vector<float> weight_after(max_pushes + 1);
  {
    auto replay = MakeTable(OptimizerKind::kAdagrad);
    std::vector<float> row(kDim);
    for (int64_t k = 0; k <= max_pushes; ++k) {
      ASSERT_TRUE(replay->ReadRows({0}, row.data()).ok());
      weight_after[k] = row[0];
      ASSERT_TRUE(
          replay->PushGradients({0}, std::vector<float>(kDim, 1.0f), {}).ok());
    }
  }
  for (const TableImage& image : images) {
    for (int64_t row = 0; row < kRows; ++row) {
      const float accumulator = image.state[row * kDim];
      const int64_t pushes = static_cast<int64_t>(accumulator);
      ASSERT_EQ(static_cast<float>(pushes), accumulator);
      ASSERT_EQ(image.weights[row * kDim], weight_after[pushes])
          << "row " << row << " with accumulator " << accumulator;
    }
  }
}

}  // namespace
}  // namespace embedding
