// TableSnapshot: a consistent cut of an EmbeddingTable, copied out row by row
// while lookups and pushes go on.
//
//   absl::StatusOr<std::unique_ptr<TableSnapshot>> full =
//       table.BeginSnapshot(std::nullopt);
//   std::vector<int64_t> rows(n);
//   std::vector<float> weights(n * (*full)->dim()),
//       state(n * (*full)->state_width());
//   while (int64_t got = (*full)->Read(n, rows.data(), weights.data(),
//                                      state.data())) {
//     Write(got, rows, weights, state);
//   }
//   const uint32_t epoch = (*full)->epoch();
//   full->reset();  // Ends it; the next snapshot may begin.
//   // Later: only the rows changed after the first cut.
//   auto delta = table.BeginSnapshot(epoch);
//
// The promise: a snapshot is the table at one instant, the cut. Its metadata
// holds the version (the number of pushes and writes applied before the
// cut: exactly those acknowledged before BeginSnapshot was called, plus any
// that were in flight and finished first, none begun after it), the step,
// the optimizer's hyper-parameters and the exactly-once windows as of the
// cut; each row is read with its optimizer state as the cut left them, both
// from the same push. A snapshot since an earlier one's epoch holds exactly
// the rows changed between the two cuts, so base + deltas equal the table at
// the last cut; a delta that is never written loses nothing, as long as the
// next one is taken since the last snapshot that was.
//
// How: beginning a snapshot holds the table's mutation barrier exclusively
// for an instant (every mutation holds it shared), records the metadata and
// opens a new epoch. A mutation of a row the snapshot holds but has not yet
// copied first stores the row's pre-image; Read copies each row under its
// stripe lock, from the pre-image when there is one. Memory: at most one
// pre-image per row, freed as it is read or when the snapshot ends; while
// kept, they count against the table's memory budget (without being
// refused: the pushes that make them are already applying), so creates
// may be refused until the snapshot ends.
//
// Thread-compatible: one thread reads a snapshot, while any others use its
// table. The table must outlive the snapshot.
#ifndef SERVER_CORE_TABLE_SNAPSHOT_H_
#define SERVER_CORE_TABLE_SNAPSHOT_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "server/core/embedding_table.h"
#include "server/core/exactly_once.h"
#include "server/core/table_spec.h"

namespace embedding {

// Everything of a table but its rows, as of one cut.
struct TableMetadata {
  TableSpec spec;  // With the optimizer's hyper-parameters at the cut.
  int64_t version = 0;
  int64_t step = 0;
  std::vector<ClientWindow> exactly_once;
  // A dynamic table's admission sketch (empty unless admit_after > 1).
  DynamicRows::Admission admission;
};

// A row of a dynamic table's snapshot: rows are its slots (local rows), and
// this says which id each held at the cut (kReservedId: none, in a delta
// for a slot emptied since the base) and its usage.
struct DynamicKey {
  int64_t id = kReservedId;
  DynamicRows::Usage usage;
};

class TableSnapshot {
 public:
  // Ends the snapshot.
  ~TableSnapshot();
  TableSnapshot(const TableSnapshot&) = delete;
  TableSnapshot& operator=(const TableSnapshot&) = delete;

  const TableMetadata& metadata() const { return metadata_; }
  // The cut's epoch: a later BeginSnapshot(epoch()) holds the rows changed
  // after this cut.
  uint32_t epoch() const { return cut_; }
  bool incremental() const { return since_ >= 0; }
  // Rows in the snapshot: every row of the shard unless incremental (for a
  // dynamic table: every slot holding an id at the cut).
  int64_t rows() const { return rows_; }
  bool dynamic() const { return table_.dynamic_ != nullptr; }
  int64_t dim() const { return table_.dim_; }
  int64_t state_width() const { return table_.state_width_; }

  // Copies the next (at most) `max_rows` rows, ascending by global id:
  // their global ids to `global_rows`, weights to `weights` ([n, dim]) and
  // optimizer state to `state` ([n, state_width]). Returns n; 0 at the end.
  // A dynamic table's rows are ascending slots, and `keys` (n) receives
  // their ids; it may be null for a dense table.
  int64_t Read(int64_t max_rows, int64_t* global_rows, float* weights,
               float* state, DynamicKey* keys = nullptr);

 private:
  friend class EmbeddingTable;

  // `held` is the rows the table held at the cut.
  TableSnapshot(EmbeddingTable& table, TableMetadata metadata, uint32_t cut,
                int64_t since, int64_t held);

  // Copies local row `local` (of `stripe`) as of the cut, and frees its
  // pre-image; false when it is a dynamic table's slot that held no id
  // (nothing copied but `key`).
  bool CopyRow(EmbeddingTable::Stripe& stripe, int64_t local, float* weights,
               float* state, DynamicKey* key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stripe.mu);

  // Whether an incremental snapshot holds `local_row`: its stamp at the cut
  // is > since.
  bool Holds(int64_t local_row);

  // The pre-image of `local_row`, or null.
  static const EmbeddingTable::PreImage* FindPreImage(
      EmbeddingTable::Stripe& stripe, int64_t local_row)
      ABSL_SHARED_LOCKS_REQUIRED(stripe.mu);

  EmbeddingTable& table_;
  const TableMetadata metadata_;
  const uint32_t cut_;
  const int64_t since_;  // -1: every row.
  // The local rows an incremental snapshot holds, ascending; chosen when it
  // begins, since the files written from it need their size up front.
  std::vector<int64_t> held_;
  int64_t rows_ = 0;
  int64_t next_ = 0;  // Rows read so far.
  // A full snapshot of a dynamic table: slots looked at so far (the empty
  // ones are skipped).
  int64_t next_slot_ = 0;
};

}  // namespace embedding

#endif  // SERVER_CORE_TABLE_SNAPSHOT_H_
