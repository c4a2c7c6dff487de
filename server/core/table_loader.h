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
// put. A dynamic table's rows are put by slot with their ids (PutDynamic),
// and a later put of a slot replaces its id too; slots never put hold none. The
// rows count as unchanged: a snapshot of the finished table since
// kRestoredEpoch holds only the rows changed after it was built.
//
// Thread-compatible.
#ifndef SERVER_CORE_TABLE_LOADER_H_
#define SERVER_CORE_TABLE_LOADER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
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

  // A dynamic table's rows: slot `slots[i]` holds `keys[i].id` (none when
  // kReservedId; then its values are ignored) with those weights, state and
  // usage. INVALID_ARGUMENT (nothing set) for a slot that is not the
  // table's or not of its id's stripe, an id held by another shard, a size
  // mismatch or a non-finite value.
  absl::Status PutDynamic(absl::Span<const int64_t> slots,
                          absl::Span<const DynamicKey> keys,
                          absl::Span<const float> weights,
                          absl::Span<const float> state);

  // A dynamic table's rows by id (resharding): each id gets a row of its
  // stripe with those weights, state and usage. INVALID_ARGUMENT (nothing
  // set) for an id held by another shard, a size mismatch or a non-finite
  // value; FAILED_PRECONDITION when an id's stripe is full (some rows set:
  // the loader is then to be dropped).
  absl::Status PutDynamicIds(absl::Span<const DynamicKey> keys,
                             absl::Span<const float> weights,
                             absl::Span<const float> state);

  // A dynamic table's admission sketch, replacing the metadata's in Finish
  // (the newest checkpoint's is put last).
  void PutAdmission(DynamicRows::Admission admission) {
    admission_ = std::move(admission);
  }
  // Merges `admission` into the sketch put so far: each counter and stripe
  // count the larger of the two (an id was counted on one input only, so
  // its counts are kept; a sum would add the other inputs' collisions).
  // INVALID_ARGUMENT for another shape.
  absl::Status MergeAdmission(const DynamicRows::Admission& admission);

  // The table, with the optimizer, version, step, exactly-once windows (and
  // a dynamic table's admission sketch) of `metadata`, whose spec must be the
  // loader's but for the optimizer's hyper-parameters. INVALID_ARGUMENT naming
  // the first row never put, the first field that differs, or bad counters or
  // windows.
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> Finish(
      const TableMetadata& metadata) &&;

 private:
  explicit TableLoader(std::unique_ptr<EmbeddingTable> table);

  // INVALID_ARGUMENT unless `weights` and `state` are [names.size(), dim]
  // and [names.size(), state width] finite floats; `names` name the rows
  // in errors.
  absl::Status CheckRows(absl::Span<const int64_t> names,
                         absl::Span<const float> weights,
                         absl::Span<const float> state) const;
  // Copies checked rows into local rows `local_rows` (valid ones).
  void StoreRows(absl::Span<const int64_t> local_rows,
                 absl::Span<const float> weights,
                 absl::Span<const float> state);

  std::unique_ptr<EmbeddingTable> table_;
  std::vector<bool> put_;  // By local row.
  std::optional<DynamicRows::Admission> admission_;
  int64_t rows_put_ = 0;
};

}  // namespace embedding

#endif  // SERVER_CORE_TABLE_LOADER_H_
