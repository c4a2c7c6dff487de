#include "tests/core/table_testing.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "gtest/gtest.h"

namespace embedding::testing {

std::unique_ptr<EmbeddingTable> MakeTable(TableSpec spec) {
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
      EmbeddingTable::Create(std::move(spec), {});
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *std::move(table) : nullptr;
}

TableImage ReadAll(TableSnapshot& snapshot, int64_t chunk) {
  TableImage image;
  image.metadata = snapshot.metadata();
  image.dim = snapshot.dim();
  image.state_width = snapshot.state_width();
  std::vector<int64_t> rows(chunk);
  std::vector<float> weights(chunk * image.dim),
      state(chunk * image.state_width);
  while (const int64_t n =
             snapshot.Read(chunk, rows.data(), weights.data(), state.data())) {
    image.rows.insert(image.rows.end(), rows.begin(), rows.begin() + n);
    image.weights.insert(image.weights.end(), weights.begin(),
                         weights.begin() + n * image.dim);
    image.state.insert(image.state.end(), state.begin(),
                       state.begin() + n * image.state_width);
  }
  return image;
}

TableImage Capture(EmbeddingTable& table) {
  absl::StatusOr<std::unique_ptr<TableSnapshot>> snapshot =
      table.BeginSnapshot(std::nullopt);
  EXPECT_TRUE(snapshot.ok()) << snapshot.status();
  if (!snapshot.ok()) return {};
  return ReadAll(**snapshot, /*chunk=*/1024);
}

void ApplyDelta(TableImage& base, const TableImage& delta) {
  for (size_t i = 0; i < delta.rows.size(); ++i) {
    auto it =
        std::lower_bound(base.rows.begin(), base.rows.end(), delta.rows[i]);
    ASSERT_TRUE(it != base.rows.end() && *it == delta.rows[i])
        << "delta row " << delta.rows[i] << " is not in the base";
    const int64_t at = it - base.rows.begin();
    std::copy_n(delta.weights.data() + i * delta.dim, delta.dim,
                base.weights.data() + at * base.dim);
    std::copy_n(delta.state.data() + i * delta.state_width, delta.state_width,
                base.state.data() + at * base.state_width);
  }
  base.metadata = delta.metadata;
}

bool SameOptimizer(const OptimizerSpec& a, const OptimizerSpec& b) {
  return a.kind == b.kind && a.lr == b.lr && a.lr_decay == b.lr_decay &&
         a.initial_accumulator_value == b.initial_accumulator_value &&
         a.beta1 == b.beta1 && a.beta2 == b.beta2 && a.eps == b.eps &&
         a.lr_power == b.lr_power && a.l1 == b.l1 && a.l2 == b.l2 &&
         a.beta == b.beta;
}

void ExpectSameImage(const TableImage& actual, const TableImage& expected) {
  EXPECT_EQ(actual.rows, expected.rows);
  ASSERT_EQ(actual.weights.size(), expected.weights.size());
  ASSERT_EQ(actual.state.size(), expected.state.size());
  // Bit for bit: memcmp, not ==, so that -0 and 0 differ.
  for (size_t i = 0; i < actual.rows.size(); ++i) {
    EXPECT_EQ(std::memcmp(actual.weights.data() + i * actual.dim,
                          expected.weights.data() + i * expected.dim,
                          actual.dim * sizeof(float)),
              0)
        << "weights of row " << actual.rows[i];
    if (actual.state_width == 0) continue;  // No memcmp of null pointers.
    EXPECT_EQ(std::memcmp(actual.state.data() + i * actual.state_width,
                          expected.state.data() + i * expected.state_width,
                          actual.state_width * sizeof(float)),
              0)
        << "optimizer state of row " << actual.rows[i];
  }
  EXPECT_EQ(actual.metadata.version, expected.metadata.version);
  EXPECT_EQ(actual.metadata.step, expected.metadata.step);
  EXPECT_TRUE(
      CheckSameTable(expected.metadata.spec, actual.metadata.spec).ok());
  EXPECT_TRUE(SameOptimizer(actual.metadata.spec.optimizer,
                            expected.metadata.spec.optimizer));
  EXPECT_EQ(actual.metadata.exactly_once, expected.metadata.exactly_once);
}

}  // namespace embedding::testing
