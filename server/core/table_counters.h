// TableCounters: what one table has served since it was created or
// restored, for the metrics endpoint (rows looked up, rows updated, pushes).
//
//   TableCounters counters;
//   counters.AddLookup(indices.size());  // Once per call, never per row.
//   TableCounts now = counters.Read();
//
// Thread-safe. Each counter is a relaxed atomic: counters publish nothing
// (no reader acts on memory guarded by them), so only each count's own
// atomicity matters, and two counts read together may be a call apart.
#ifndef SERVER_CORE_TABLE_COUNTERS_H_
#define SERVER_CORE_TABLE_COUNTERS_H_

#include <atomic>
#include <cstdint>

namespace embedding {

// A reading of TableCounters.
struct TableCounts {
  // Indices served by Lookup and LookupBag (repeated indices each count).
  int64_t rows_looked_up = 0;
  // Rows copied out by ReadRows (an export, not a forward pass).
  int64_t rows_read = 0;
  // Rows the optimizer stepped: per push, its distinct rows.
  int64_t rows_updated = 0;
  // Rows overwritten by WriteRows (by index or range).
  int64_t rows_written = 0;
  // Pushes answered (applied or recognised as duplicates).
  int64_t pushes = 0;
  // Pushes exactly-once recognised as retries and did not apply again.
  int64_t duplicate_pushes = 0;
};

class TableCounters {
 public:
  void AddLookup(int64_t rows) { Add(rows_looked_up_, rows); }
  void AddRead(int64_t rows) { Add(rows_read_, rows); }
  void AddWrite(int64_t rows) { Add(rows_written_, rows); }
  // One answered push that stepped `rows_updated` rows; a duplicate steps
  // none.
  void AddPush(int64_t rows_updated, bool duplicate) {
    Add(pushes_, 1);
    if (duplicate) Add(duplicate_pushes_, 1);
    Add(rows_updated_, rows_updated);
  }

  TableCounts Read() const {
    return {.rows_looked_up = Load(rows_looked_up_),
            .rows_read = Load(rows_read_),
            .rows_updated = Load(rows_updated_),
            .rows_written = Load(rows_written_),
            .pushes = Load(pushes_),
            .duplicate_pushes = Load(duplicate_pushes_)};
  }

 private:
  static void Add(std::atomic<int64_t>& counter, int64_t n) {
    counter.fetch_add(n, std::memory_order_relaxed);
  }
  static int64_t Load(const std::atomic<int64_t>& counter) {
    return counter.load(std::memory_order_relaxed);
  }

  std::atomic<int64_t> rows_looked_up_{0};
  std::atomic<int64_t> rows_read_{0};
  std::atomic<int64_t> rows_updated_{0};
  std::atomic<int64_t> rows_written_{0};
  std::atomic<int64_t> pushes_{0};
  std::atomic<int64_t> duplicate_pushes_{0};
};

}  // namespace embedding

#endif  // SERVER_CORE_TABLE_COUNTERS_H_
