// Checkpointer: the server's use of a CheckpointManager. It restores the
// tables at start and saves them for the SaveCheckpoint RPC, the periodic
// thread and the final checkpoint on shutdown, logging every table it
// restores or saves (the manager only returns statuses). It also holds the
// flag that makes running saves stop cleanly once the shutdown grace period
// is over.
//
//   absl::StatusOr<std::unique_ptr<Checkpointer>> checkpointer =
//       Checkpointer::Create({.directory = dir}, &registry);
//   (*checkpointer)->RestoreAll();                                // at start
//   (*checkpointer)->Save({"users"}, SaveKind::kFull, "request"); // the RPC
//   (*checkpointer)->SaveAll(SaveKind::kIncremental, "periodic");
//   (*checkpointer)->CancelSaves();                       // grace is over
//
// Thread-safe. Saves run one table at a time through the manager, which
// serialises saves of the same table, so the RPC, the periodic thread and
// the shutdown may save at once.
#ifndef SERVER_SERVICE_CHECKPOINTER_H_
#define SERVER_SERVICE_CHECKPOINTER_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/checkpoint/checkpoint_manager.h"
#include "server/core/table_registry.h"

namespace embedding {

class Checkpointer {
 public:
  // As CheckpointManager::Create. `registry` must outlive the checkpointer.
  static absl::StatusOr<std::unique_ptr<Checkpointer>> Create(
      const CheckpointOptions& options, TableRegistry* registry);

  // Restores every table of the directory, logging each one restored (info)
  // and each checkpoint skipped with its reason (warning); a table with no
  // good checkpoint, or a directory that cannot be read, is an error in the
  // log and nothing more: the server goes on without it.
  void RestoreAll();

  // Saves `tables` (every table, by name, when empty), one after another,
  // and stops at the first failure, returning it. Every name is checked
  // before anything is written: NOT_FOUND for an unknown table. Other codes
  // as CheckpointManager::Save; CANCELLED once CancelSaves was called.
  // `trigger` says in the log who asked.
  absl::StatusOr<std::vector<SavedTable>> Save(
      absl::Span<const std::string> tables, SaveKind kind, const char* trigger);

  // Saves every table, going on past a table that fails (each failure is
  // logged), so one bad table does not starve the others. Returns the first
  // failure, or CANCELLED as soon as CancelSaves is called.
  absl::Status SaveAll(SaveKind kind, const char* trigger);

  std::optional<CheckpointRecord> LastCheckpoint(absl::string_view table) const;

  // How long the last successful save of `table` took (for metrics); unset
  // when this server has saved none since it started.
  std::optional<absl::Duration> LastSaveDuration(absl::string_view table) const
      ABSL_LOCKS_EXCLUDED(durations_mu_);

  // Removes the checkpoints of a deleted table (CheckpointManager::Forget).
  absl::Status Forget(absl::string_view table);

  // Makes running saves stop (they remove their temporary files, the
  // previous checkpoint stays) and later ones fail at once with CANCELLED.
  void CancelSaves();

  const std::string& directory() const { return directory_; }

 private:
  Checkpointer(std::unique_ptr<CheckpointManager> manager,
               TableRegistry* registry, std::string directory);

  // Saves one table, timed and logged.
  absl::StatusOr<SavedTable> SaveTable(const std::string& table, SaveKind kind,
                                       const char* trigger);

  const std::unique_ptr<CheckpointManager> manager_;
  TableRegistry* const registry_;
  const std::string directory_;
  // Polled by the manager between blocks; once true it stays true. Only its
  // own value is read, so relaxed ordering would do; the manager takes it
  // as a plain atomic (sequentially consistent loads).
  std::atomic<bool> cancelled_{false};

  mutable absl::Mutex durations_mu_;
  absl::flat_hash_map<std::string, absl::Duration> save_durations_
      ABSL_GUARDED_BY(durations_mu_);
};

}  // namespace embedding

#endif  // SERVER_SERVICE_CHECKPOINTER_H_
