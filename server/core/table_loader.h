// TableLoader: builds an EmbeddingTable from saved rows, e.g. a checkpoint's
// full save followed by its deltas, before anyone can use the table.
//
//   absl::StatusOr<std::unique_ptr<TableLoader>> loader =
//       TableLoader::Create(spec);
//   (*loader)->Put(global_rows, weights, state);  // As often as needed.
//   absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
//       std::move(**loader).Finish(metadata);
//
// Rows are put by global id, so they may come in any order and a later put
// of a row replaces an earlier one; Finish refuses a table with a row never
// put. The rows count as unchanged: a snapshot of the finished table since
// kRestoredEpoch holds only the rows changed after it was built.
//
// Thread-compatible.
#ifndef SERVER_CORE_TABLE_LOADER_H_
#define SERVER_CORE_TABLE_LOADER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/core/embedding_table.h"
#include "server/core/table_snapshot.h"
#include "server/core/table_spec.h"

namespace embedding {

class TableLoader {
 public:
  // The epoch of every row of a finished table.
  static constexpr uint32_t kRestoredEpoch = 0;

  // Allocates the table of `spec` (its shard fields included), rows not yet
  // set. INVALID_ARGUMENT for a bad spec, RESOURCE_EXHAUSTED when the memory
  // cannot be allocated.
  static absl::StatusOr<std::unique_ptr<TableLoader>> Create(TableSpec spec);

  int64_t dim() const { return table_->dim_; }
  int64_t state_width() const { return table_->state_width_; }

  // Sets rows: `weights` is [n, dim] and `state` [n, state_width] for the n
  // `global_rows`. INVALID_ARGUMENT (nothing set) for a row this shard does
  // not hold, a size mismatch or a non-finite value.
  absl::Status Put(absl::Span<const int64_t> global_rows,
                   absl::Span<const float> weights,
                   absl::Span<const float> state);

  // The table, with the optimizer, version, step and exactly-once windows
  // of `metadata`, whose spec must be the loader's but for the optimizer's
  // hyper-parameters. INVALID_ARGUMENT naming the first row never put, the
  // first field that differs, or bad counters or windows.
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> Finish(
      const TableMetadata& metadata) &&;

 private:
  explicit TableLoader(std::unique_ptr<EmbeddingTable> table);

  std::unique_ptr<EmbeddingTable> table_;
  std::vector<bool> put_;  // By local row.
  int64_t rows_put_ = 0;
};

}  // namespace embedding

#endif  // SERVER_CORE_TABLE_LOADER_H_
