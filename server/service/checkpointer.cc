#include "server/service/checkpointer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace embedding {
namespace {

std::vector<std::string> TableNames(const TableRegistry& registry) {
  std::vector<std::string> names;
  for (const TableStats& stats : registry.List()) {
    names.push_back(stats.spec.name);
  }
  return names;  // Sorted by name, as List is.
}

int64_t Milliseconds(absl::Duration duration) {
  return absl::ToInt64Milliseconds(duration);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpointer>> Checkpointer::Create(
    const CheckpointOptions& options, TableRegistry* registry) {
  EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointManager> manager,
                             CheckpointManager::Create(options, registry));
  return std::unique_ptr<Checkpointer>(
      new Checkpointer(std::move(manager), registry, options.directory));
}

Checkpointer::Checkpointer(std::unique_ptr<CheckpointManager> manager,
                           TableRegistry* registry, std::string directory)
    : manager_(std::move(manager)),
      registry_(registry),
      directory_(std::move(directory)) {}

void Checkpointer::RestoreAll() {
  spdlog::info("restoring the tables checkpointed in {}", directory_);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<RestoredTable>> restored = manager_->RestoreAll();
  if (!restored.ok()) {
    spdlog::error(
        "cannot restore checkpoints from {}: {}; serving without them",
        directory_, restored.status().ToString());
    return;
  }
  int count = 0;
  for (const RestoredTable& table : *restored) {
    for (const std::string& reason : table.skipped) {
      spdlog::warn("table \"{}\": skipped checkpoint: {}", table.table, reason);
    }
    if (!table.restored) {
      spdlog::error(
          "table \"{}\" not restored (the reasons are above); the server "
          "goes on without it",
          table.table);
      continue;
    }
    ++count;
    absl::StatusOr<std::shared_ptr<EmbeddingTable>> live =
        registry_->Get(table.table);
    spdlog::info(
        "restored table \"{}\": version {}, {} rows, {} bytes read, {} ms "
        "since the restore began, from {}",
        table.table, table.checkpoint.version,
        live.ok() ? (*live)->Stats().local_rows : 0, table.bytes_read,
        Milliseconds(absl::Now() - start), table.checkpoint.path);
  }
  spdlog::info("restored {} of {} tables from {} in {} ms", count,
               restored->size(), directory_, Milliseconds(absl::Now() - start));
}

absl::StatusOr<SavedTable> Checkpointer::SaveTable(const std::string& table,
                                                   SaveKind kind,
                                                   const char* trigger) {
  // A save that would start after the grace period writes nothing at all.
  if (cancelled_.load()) {
    return absl::CancelledError(
        absl::StrCat("the server is shutting down: checkpoint of table \"",
                     table, "\" not started"));
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<SavedTable>> saved =
      manager_->Save({table}, kind, &cancelled_);
  const absl::Duration took = absl::Now() - start;
  const int64_t ms = Milliseconds(took);
  if (saved.ok() && saved->size() != 1) {
    saved = absl::InternalError(absl::StrCat("saving table \"", table,
                                             "\" returned ", saved->size(),
                                             " checkpoints instead of one"));
  }
  if (!saved.ok()) {
    if (absl::IsNotFound(saved.status())) {
      // Deleted meanwhile; the caller decides whether that matters.
      spdlog::debug("checkpoint of table \"{}\" ({}): {}", table, trigger,
                    saved.status().ToString());
    } else if (absl::IsCancelled(saved.status())) {
      spdlog::warn("checkpoint of table \"{}\" ({}) abandoned after {} ms: {}",
                   table, trigger, ms, saved.status().ToString());
    } else {
      spdlog::error("checkpoint of table \"{}\" ({}) failed after {} ms: {}",
                    table, trigger, ms, saved.status().ToString());
    }
    return saved.status();
  }
  const SavedTable& result = saved->front();
  {
    absl::MutexLock lock(&durations_mu_);
    save_durations_[table] = took;
  }
  spdlog::info(
      "saved checkpoint of table \"{}\" ({}): version {}, {} rows, {} bytes, "
      "{}, {} ms, {}",
      table, trigger, result.checkpoint.version, result.rows,
      result.bytes_written,
      result.checkpoint.incremental ? "incremental" : "full", ms,
      result.checkpoint.path);
  return result;
}

absl::StatusOr<std::vector<SavedTable>> Checkpointer::Save(
    absl::Span<const std::string> tables, SaveKind kind, const char* trigger) {
  std::vector<std::string> names(tables.begin(), tables.end());
  if (names.empty()) {
    names = TableNames(*registry_);
  } else {
    for (const std::string& name : names) {
      EMBEDDING_RETURN_IF_ERROR(registry_->Get(name).status());
    }
  }
  std::vector<SavedTable> saved;
  for (const std::string& name : names) {
    absl::StatusOr<SavedTable> table = SaveTable(name, kind, trigger);
    // A table deleted since it was listed has nothing left to save.
    if (tables.empty() && absl::IsNotFound(table.status())) continue;
    EMBEDDING_RETURN_IF_ERROR(table.status());
    saved.push_back(*std::move(table));
  }
  return saved;
}

absl::Status Checkpointer::SaveAll(SaveKind kind, const char* trigger) {
  absl::Status first;
  for (const std::string& name : TableNames(*registry_)) {
    absl::Status status = SaveTable(name, kind, trigger).status();
    if (absl::IsCancelled(status)) return status;
    if (absl::IsNotFound(status)) continue;  // Deleted since it was listed.
    first.Update(status);
  }
  return first;
}

std::optional<CheckpointRecord> Checkpointer::LastCheckpoint(
    absl::string_view table) const {
  return manager_->LastCheckpoint(table);
}

std::optional<absl::Duration> Checkpointer::LastSaveDuration(
    absl::string_view table) const {
  absl::MutexLock lock(&durations_mu_);
  const auto it = save_durations_.find(table);
  if (it == save_durations_.end()) return std::nullopt;
  return it->second;
}

absl::Status Checkpointer::Forget(absl::string_view table) {
  {
    absl::MutexLock lock(&durations_mu_);
    save_durations_.erase(table);
  }
  return manager_->Forget(table);
}

void Checkpointer::CancelSaves() { cancelled_.store(true); }

}  // namespace embedding
