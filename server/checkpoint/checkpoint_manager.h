// CheckpointManager: saves the tables of a TableRegistry to a directory and
// restores them from it, so a training run survives restarts and crashes.
//
//   absl::StatusOr<std::unique_ptr<CheckpointManager>> manager =
//       CheckpointManager::Create({.directory = "/var/lib/embedding"},
//                                 &registry);
//   absl::StatusOr<std::vector<RestoredTable>> restored =
//       (*manager)->RestoreAll();                      // at start
//   absl::StatusOr<std::vector<SavedTable>> saved =
//       (*manager)->Save({}, SaveKind::kIncremental);  // periodically
//
// What a checkpoint holds: everything needed to continue training as if the
// server had never stopped: spec (with the optimizer's current
// hyper-parameters), weights, optimizer state, step, version and the
// exactly-once windows, rows keyed by global row id. It is a consistent cut
// (server/core/table_snapshot.h): exactly the pushes and writes numbered up
// to its version, which include all those acknowledged before the save
// began; each row together with its optimizer state. Lookups and pushes go
// on during a save. Each table has its own cut.
//
// On disk (docs/checkpoint_format.md): DIRECTORY/<table>/<sequence>.full or
// .delta, each a directory of .npy files plus a checksummed metadata file,
// written under a temporary name, fsynced, renamed and the parent fsynced,
// so a checkpoint is visible only when complete. Every block is checksummed
// (XXH3) and verified before a table is created from it.
//
// Thread-safe. Saves of one table are serialised; saves of different tables
// and restores of different tables may run at once.
#ifndef SERVER_CHECKPOINT_CHECKPOINT_MANAGER_H_
#define SERVER_CHECKPOINT_CHECKPOINT_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/core/table_registry.h"

namespace embedding {

struct CheckpointOptions {
  // Where checkpoints go and where RestoreAll reads from. Must exist.
  // REQUIRES: non-empty.
  std::string directory;
  // Complete full checkpoints kept per table (with the deltas that follow
  // them); older ones are deleted after a successful save.
  // Default: 2. REQUIRES: >= 1.
  int keep = 2;
  // An incremental save writes a full checkpoint instead once this many
  // deltas follow the last full one.
  // Default: 8. REQUIRES: >= 0 (0: every save is full).
  int full_every = 8;
};

enum class SaveKind {
  kFull,         // Every row.
  kIncremental,  // Rows changed since the last checkpoint (see full_every).
};

// A checkpoint of one table (CheckpointInfo on the wire).
struct CheckpointRecord {
  int64_t version = 0;       // Pushes and writes it holds.
  absl::Time time;           // When the save began, to the microsecond.
  std::string path;          // Its directory.
  bool incremental = false;  // A delta on top of earlier checkpoints.
};

struct SavedTable {
  std::string table;
  CheckpointRecord checkpoint;
  int64_t bytes_written = 0;  // Data and metadata.
  int64_t rows = 0;
};

struct RestoredTable {
  std::string table;
  // False when none of the table's checkpoints was good (or it has none, e.g.
  // only leftovers of an interrupted first save: then `skipped` is empty):
  // it was not created.
  bool restored = false;
  CheckpointRecord checkpoint;  // The newest one applied.
  int64_t bytes_read = 0;
  // Checkpoints refused (corrupt, truncated, wrong version, ...) before a
  // good one was found, each naming its file and what was wrong: the caller
  // logs them.
  std::vector<std::string> skipped;
};

class CheckpointManager {
 public:
  // INVALID_ARGUMENT for bad options; FAILED_PRECONDITION when the directory
  // does not exist or is not a directory.
  static absl::StatusOr<std::unique_ptr<CheckpointManager>> Create(
      const CheckpointOptions& options, TableRegistry* registry);

  ~CheckpointManager();

  // Saves `tables` (every table when empty: sorted by name, skipping those
  // deleted meanwhile), one after another, each all or nothing. Returns
  // what was saved; on the first failure, the error (see SaveCheckpoint in
  // the proto for the codes) naming the table, the file and the OS error;
  // NOT_FOUND for an unknown table; FAILED_PRECONDITION for a table holding
  // a non-finite value. The previous checkpoint of a failed table is kept,
  // and its next delta still holds every row the failed save would have.
  // `cancelled`, when set, is polled between blocks: a save that sees it
  // true stops, removes its temporary files and returns CANCELLED.
  // kIncremental writes a full checkpoint for a table with none by this
  // manager yet (or created again since), after full_every deltas, and
  // after a restore that fell back.
  absl::StatusOr<std::vector<SavedTable>> Save(
      absl::Span<const std::string> tables, SaveKind kind,
      const std::atomic<bool>* cancelled = nullptr);

  // Creates every table found in the directory from its newest good
  // checkpoint chain (full + deltas, each block verified before the table
  // is registered), falling back to older ones when the newest is refused;
  // one entry per table found, sorted by name. A table that exists already
  // or does not fit the memory budget is not restored (say its entry's
  // skipped). Removes leftovers of interrupted saves. FAILED_PRECONDITION
  // only when the directory cannot be read at all. Call once, before
  // serving.
  absl::StatusOr<std::vector<RestoredTable>> RestoreAll();

  // Removes every checkpoint of `table`, after DeleteTable, so that a
  // restart does not bring the table back. Waits for a save of it that is
  // in progress; a later save of a table no longer in the registry is
  // NOT_FOUND. I/O errors as Save.
  absl::Status Forget(absl::string_view table);

  // The newest checkpoint of `table` saved or restored by this manager;
  // nullopt when it has none, or when the table was deleted (or created
  // again) since.
  std::optional<CheckpointRecord> LastCheckpoint(absl::string_view table) const;

 private:
  class Impl;
  explicit CheckpointManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace embedding

#endif  // SERVER_CHECKPOINT_CHECKPOINT_MANAGER_H_
