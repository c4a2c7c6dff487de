// Test helpers for whole tables: capture a table's every row, optimizer
// state and metadata through a snapshot, and compare two captures bit for
// bit. Shared by the engine and checkpoint tests.
//
//   TableImage before = Capture(*table);
//   ... save and restore ...
//   ExpectSameImage(Capture(*restored), before);
#ifndef TESTS_CORE_TABLE_TESTING_H_
#define TESTS_CORE_TABLE_TESTING_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "common/cancellation.h"
#include "server/core/embedding_table.h"
#include "server/core/table_snapshot.h"

namespace embedding::testing {

// A table of `spec` with the initializer's rows (a failure fails the test,
// and the result is null).
std::unique_ptr<EmbeddingTable> MakeTable(TableSpec spec);

// The rows of a snapshot (ascending global ids) and its metadata.
struct TableImage {
  TableMetadata metadata;
  int64_t dim = 0;
  int64_t state_width = 0;
  std::vector<int64_t> rows;
  std::vector<float> weights;  // [rows, dim]
  std::vector<float> state;    // [rows, state_width]
};

// Reads what is left of `snapshot`, in chunks of `chunk` rows.
TableImage ReadAll(TableSnapshot& snapshot, int64_t chunk = 7);

// A full snapshot of `table`, read at once.
TableImage Capture(EmbeddingTable& table);

// `base` with the rows of `delta` replacing its own, and delta's metadata.
void ApplyDelta(TableImage& base, const TableImage& delta);

// Rows, weights, state (bit for bit), version, step, optimizer and
// exactly-once windows are equal.
void ExpectSameImage(const TableImage& actual, const TableImage& expected);

// Every hyper-parameter is equal.
bool SameOptimizer(const OptimizerSpec& a, const OptimizerSpec& b);

// A Cancellation that answers "not cancelled" to its first `checks` calls
// of IsCancelled and "cancelled" (with UNAVAILABLE, as a stopping server's)
// from then on; it counts the calls. Thread-safe.
class CancelAfter : public Cancellation {
 public:
  explicit CancelAfter(int64_t checks) : checks_(checks) {}
  bool IsCancelled() const override {
    return calls_.fetch_add(1, std::memory_order_relaxed) >= checks_;
  }
  absl::Status Status() const override {
    return absl::UnavailableError("cancelled by the test");
  }
  int64_t calls() const { return calls_.load(std::memory_order_relaxed); }

 private:
  const int64_t checks_;
  mutable std::atomic<int64_t> calls_{0};
};

}  // namespace embedding::testing

#endif  // TESTS_CORE_TABLE_TESTING_H_
