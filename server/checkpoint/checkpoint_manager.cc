#include "server/checkpoint/checkpoint_manager.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/checkpoint/checkpoint_format.h"
#include "server/checkpoint/checkpoint_reader.h"
#include "server/checkpoint/checkpoint_writer.h"
#include "server/checkpoint/file_io.h"
#include "server/core/mutex.h"
#include "server/core/table_loader.h"
#include "server/core/table_snapshot.h"

namespace embedding {

using internal::CheckpointHeader;
using internal::CheckpointName;
using internal::JoinPath;

namespace {

// The same error, its message prefixed with what was being done.
absl::Status Prefixed(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(prefix, ": ", status.message()));
}

CheckpointRecord RecordOf(const CheckpointHeader& header) {
  return {.version = header.table.version,
          .time = header.time,
          .path = header.path,
          .incremental = header.name.delta};
}

}  // namespace

class CheckpointManager::Impl {
 public:
  Impl(const CheckpointOptions& options, TableRegistry* registry)
      : options_(options), registry_(*registry) {}

  absl::StatusOr<SavedTable> SaveTable(const std::string& name, SaveKind kind,
                                       const std::atomic<bool>* cancelled);
  RestoredTable RestoreTable(const std::string& name);
  absl::Status Forget(const std::string& name);
  std::optional<CheckpointRecord> LastCheckpoint(absl::string_view name);
  const std::string& directory() const { return options_.directory; }
  TableRegistry& registry() { return registry_; }

 private:
  // What the manager knows of one table's checkpoints.
  struct TableState {
    // Held for a whole save or restore of the table: they are serialised.
    SharedMutex save_mu;
    // The table's directory exists and its leftovers were removed.
    bool prepared ABSL_GUARDED_BY(save_mu) = false;
    // The highest sequence on disk or used.
    uint64_t last_sequence ABSL_GUARDED_BY(save_mu) = 0;
    // The chain a delta would extend: its newest checkpoint, that
    // checkpoint's snapshot epoch and the deltas since its full one.
    // Valid only for the table object it was saved from or restored into.
    std::weak_ptr<EmbeddingTable> base_table ABSL_GUARDED_BY(save_mu);
    bool has_base ABSL_GUARDED_BY(save_mu) = false;
    uint64_t base_sequence ABSL_GUARDED_BY(save_mu) = 0;
    uint32_t base_epoch ABSL_GUARDED_BY(save_mu) = 0;
    int deltas ABSL_GUARDED_BY(save_mu) = 0;
    // Checkpoints a restore refused: retention does not count them.
    absl::flat_hash_set<uint64_t> refused ABSL_GUARDED_BY(save_mu);

    SharedMutex record_mu;
    std::optional<CheckpointRecord> record ABSL_GUARDED_BY(record_mu);
    std::weak_ptr<EmbeddingTable> record_table ABSL_GUARDED_BY(record_mu);
  };

  TableState& StateOf(const std::string& name);
  std::string TableDirectory(const std::string& name) const {
    return JoinPath(options_.directory, internal::TableDirectoryName(name));
  }

  // Creates the table's directory (syncing its parent when it is new) and,
  // the first time, removes leftovers of interrupted saves and finds the
  // highest sequence used.
  absl::Status Prepare(const std::string& name, TableState& state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.save_mu);

  // The table's checkpoints, ascending by sequence.
  absl::StatusOr<std::vector<CheckpointName>> ListCheckpoints(
      const std::string& name);

  // Deletes the checkpoints older than the oldest of the newest `keep` full
  // ones (not counting refused ones). Best effort: what is left is deleted
  // after the next save.
  void ApplyRetention(const std::string& name, TableState& state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.save_mu);

  // Builds the table from `full` and `deltas`. When a delta fails to load,
  // records the refusal in `result` and `refused`, drops it and those after
  // it from `deltas` and starts again; fails only when `full` itself fails.
  static absl::StatusOr<std::unique_ptr<EmbeddingTable>> LoadChain(
      const CheckpointHeader& full, std::vector<CheckpointHeader>& deltas,
      std::vector<uint64_t>& refused, RestoredTable& result);

  void SetRecord(TableState& state, const CheckpointRecord& record,
                 const std::shared_ptr<EmbeddingTable>& table);

  const CheckpointOptions options_;
  TableRegistry& registry_;
  SharedMutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<TableState>> tables_
      ABSL_GUARDED_BY(mu_);
};

CheckpointManager::Impl::TableState& CheckpointManager::Impl::StateOf(
    const std::string& name) {
  WriterLock lock(&mu_);
  std::unique_ptr<TableState>& state = tables_[name];
  if (state == nullptr) state = std::make_unique<TableState>();
  return *state;
}

absl::Status CheckpointManager::Impl::Prepare(const std::string& name,
                                              TableState& state) {
  const std::string directory = TableDirectory(name);
  EMBEDDING_ASSIGN_OR_RETURN(const bool created,
                             internal::MakeDirectory(directory));
  if (created) {
    EMBEDDING_RETURN_IF_ERROR(internal::SyncDirectory(options_.directory));
  }
  if (state.prepared) return absl::OkStatus();
  EMBEDDING_ASSIGN_OR_RETURN(std::vector<std::string> entries,
                             internal::ListDirectory(directory));
  for (const std::string& entry : entries) {
    if (absl::StartsWith(entry, internal::kTemporaryPrefix)) {
      EMBEDDING_RETURN_IF_ERROR(
          internal::RemoveTree(JoinPath(directory, entry)));
    } else if (std::optional<CheckpointName> checkpoint =
                   CheckpointName::Parse(entry)) {
      state.last_sequence = std::max(state.last_sequence, checkpoint->sequence);
    }
  }
  state.prepared = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CheckpointName>>
CheckpointManager::Impl::ListCheckpoints(const std::string& name) {
  EMBEDDING_ASSIGN_OR_RETURN(std::vector<std::string> entries,
                             internal::ListDirectory(TableDirectory(name)));
  std::vector<CheckpointName> checkpoints;
  for (const std::string& entry : entries) {
    if (std::optional<CheckpointName> checkpoint =
            CheckpointName::Parse(entry)) {
      checkpoints.push_back(*checkpoint);
    }
  }
  std::sort(checkpoints.begin(), checkpoints.end(),
            [](const CheckpointName& a, const CheckpointName& b) {
              return a.sequence < b.sequence;
            });
  return checkpoints;
}

void CheckpointManager::Impl::ApplyRetention(const std::string& name,
                                             TableState& state) {
  absl::StatusOr<std::vector<CheckpointName>> checkpoints =
      ListCheckpoints(name);
  if (!checkpoints.ok()) return;
  std::vector<uint64_t> fulls;
  for (const CheckpointName& checkpoint : *checkpoints) {
    if (!checkpoint.delta && !state.refused.contains(checkpoint.sequence)) {
      fulls.push_back(checkpoint.sequence);
    }
  }
  if (fulls.size() <= static_cast<size_t>(options_.keep)) return;
  const uint64_t oldest_kept = fulls[fulls.size() - options_.keep];
  const std::string directory = TableDirectory(name);
  for (const CheckpointName& checkpoint : *checkpoints) {
    if (checkpoint.sequence >= oldest_kept) break;
    // Renamed first, so that a crash halfway through leaves a temporary
    // (removed at the next start), never a checkpoint missing files.
    const std::string doomed =
        JoinPath(directory, absl::StrCat(internal::kTemporaryPrefix, "deleted-",
                                         checkpoint.ToString()));
    if (!internal::Rename(JoinPath(directory, checkpoint.ToString()), doomed)
             .ok()) {
      return;
    }
    internal::RemoveTree(doomed).IgnoreError();
    state.refused.erase(checkpoint.sequence);
  }
  internal::SyncDirectory(directory).IgnoreError();
}

void CheckpointManager::Impl::SetRecord(
    TableState& state, const CheckpointRecord& record,
    const std::shared_ptr<EmbeddingTable>& table) {
  WriterLock lock(&state.record_mu);
  state.record = record;
  state.record_table = table;
}

absl::StatusOr<SavedTable> CheckpointManager::Impl::SaveTable(
    const std::string& name, SaveKind kind,
    const std::atomic<bool>* cancelled) {
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_.Get(name));
  TableState& state = StateOf(name);
  WriterLock lock(&state.save_mu);
  // Deleted (and its checkpoints forgotten) while this save waited.
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> current,
                             registry_.Get(name));
  if (current != table) {
    return absl::NotFoundError(
        absl::StrCat("table \"", name, "\" was deleted during the save"));
  }
  EMBEDDING_RETURN_IF_ERROR(Prepare(name, state));
  // A chain saved from an earlier table of the same name is not extended.
  if (state.base_table.lock() != table) state.has_base = false;
  const bool incremental = kind == SaveKind::kIncremental && state.has_base &&
                           state.deltas < options_.full_every;
  // To the microsecond, as the metadata stores it: a record read back from
  // disk is then the one returned now.
  const absl::Time time = absl::FromUnixMicros(absl::ToUnixMicros(absl::Now()));
  EMBEDDING_ASSIGN_OR_RETURN(
      std::unique_ptr<TableSnapshot> snapshot,
      table->BeginSnapshot(incremental ? std::optional(state.base_epoch)
                                       : std::nullopt));
  // Used even if this save fails: a sequence never names two checkpoints.
  const uint64_t sequence = ++state.last_sequence;
  EMBEDDING_ASSIGN_OR_RETURN(
      internal::WrittenCheckpoint written,
      internal::WriteCheckpoint(
          {.table_directory = TableDirectory(name),
           .name = {.sequence = sequence, .delta = incremental},
           .base_sequence = incremental ? state.base_sequence : 0,
           .time = time,
           .cancelled = cancelled},
          std::move(snapshot)));
  state.base_table = table;
  state.has_base = true;
  state.base_sequence = sequence;
  state.base_epoch = written.epoch;
  state.deltas = incremental ? state.deltas + 1 : 0;
  const CheckpointRecord record{.version = written.version,
                                .time = time,
                                .path = written.path,
                                .incremental = incremental};
  SetRecord(state, record, table);
  ApplyRetention(name, state);
  return SavedTable{.table = name,
                    .checkpoint = record,
                    .bytes_written = written.bytes,
                    .rows = written.rows};
}

absl::StatusOr<std::unique_ptr<EmbeddingTable>>
CheckpointManager::Impl::LoadChain(const CheckpointHeader& full,
                                   std::vector<CheckpointHeader>& deltas,
                                   std::vector<uint64_t>& refused,
                                   RestoredTable& result) {
  while (true) {
    EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<TableLoader> loader,
                               TableLoader::Create(full.table.spec));
    EMBEDDING_ASSIGN_OR_RETURN(const int64_t full_bytes,
                               internal::LoadCheckpointRows(full, *loader));
    result.bytes_read += full_bytes;
    size_t loaded = 0;
    absl::Status failure;
    for (; loaded < deltas.size(); ++loaded) {
      absl::StatusOr<int64_t> bytes =
          internal::LoadCheckpointRows(deltas[loaded], *loader);
      if (!bytes.ok()) {
        failure = bytes.status();
        break;
      }
      result.bytes_read += *bytes;
    }
    if (failure.ok()) {
      const CheckpointHeader& last = deltas.empty() ? full : deltas.back();
      absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
          std::move(*loader).Finish(last.table);
      if (table.ok() || deltas.empty()) return table;
      // The newest delta's metadata does not fit the rows: drop it.
      failure = Prefixed(last.path, table.status());
      loaded = deltas.size() - 1;
    }
    // A delta is bad: the chain ends before it. The loader holds some of
    // its rows, so start again from the full checkpoint.
    result.skipped.push_back(std::string(failure.message()));
    refused.push_back(deltas[loaded].name.sequence);
    deltas.resize(loaded);
  }
}

RestoredTable CheckpointManager::Impl::RestoreTable(const std::string& name) {
  RestoredTable result{.table = name};
  TableState& state = StateOf(name);
  WriterLock lock(&state.save_mu);
  const std::string directory = TableDirectory(name);
  const absl::Status prepared = Prepare(name, state);
  absl::StatusOr<std::vector<CheckpointName>> checkpoints =
      prepared.ok() ? ListCheckpoints(name) : prepared;
  if (!checkpoints.ok()) {
    result.skipped.push_back(std::string(checkpoints.status().message()));
    return result;
  }
  // Newest full checkpoint first; each with the deltas that extend it.
  for (auto full = checkpoints->rbegin(); full != checkpoints->rend(); ++full) {
    if (full->delta || state.refused.contains(full->sequence)) continue;
    absl::StatusOr<CheckpointHeader> full_header =
        internal::ReadCheckpointHeader(directory, name, *full);
    if (full_header.ok() &&
        (full_header->table.spec.shard_index != registry_.shard_index() ||
         full_header->table.spec.shard_count != registry_.shard_count())) {
      full_header = absl::FailedPreconditionError(absl::StrCat(
          full_header->path, ": saved by shard ",
          full_header->table.spec.shard_index, " of ",
          full_header->table.spec.shard_count, "; this server is shard ",
          registry_.shard_index(), " of ", registry_.shard_count(),
          " (restoring onto another layout is not supported)"));
    }
    if (!full_header.ok()) {
      result.skipped.push_back(std::string(full_header.status().message()));
      state.refused.insert(full->sequence);
      continue;
    }
    // Deltas extend the chain in sequence order, each naming the one
    // before as its base; those of other chains (e.g. of a newer full
    // checkpoint) are passed over. A refused delta ends the chain.
    std::vector<CheckpointHeader> deltas;
    uint64_t tail = full->sequence;
    for (auto delta = full.base(); delta != checkpoints->end(); ++delta) {
      if (!delta->delta) continue;
      if (state.refused.contains(delta->sequence)) break;
      absl::StatusOr<CheckpointHeader> header =
          internal::ReadCheckpointHeader(directory, name, *delta);
      absl::Status problem = header.status();
      if (header.ok() && header->base_sequence != tail) continue;
      if (header.ok()) {
        problem = CheckSameTable(full_header->table.spec, header->table.spec);
        if (!problem.ok()) problem = Prefixed(header->path, problem);
      }
      if (!problem.ok()) {
        result.skipped.push_back(std::string(problem.message()));
        state.refused.insert(delta->sequence);
        break;
      }
      tail = delta->sequence;
      deltas.push_back(*std::move(header));
    }

    bool full_refused = false;
    std::vector<uint64_t> refused_deltas;
    absl::StatusOr<TableStats> created = registry_.CreateWith(
        full_header->table.spec,
        [&](const TableSpec&)
            -> absl::StatusOr<std::unique_ptr<EmbeddingTable>> {
          absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
              LoadChain(*full_header, deltas, refused_deltas, result);
          full_refused = !table.ok();
          return table;
        });
    state.refused.insert(refused_deltas.begin(), refused_deltas.end());
    if (full_refused) {
      result.skipped.push_back(std::string(created.status().message()));
      state.refused.insert(full->sequence);
      continue;
    }
    if (!created.ok()) {  // Not the checkpoint's fault: do not fall back.
      result.skipped.push_back(absl::StrCat(
          "table \"", name, "\" not restored: ", created.status().message()));
      return result;
    }
    absl::StatusOr<std::shared_ptr<EmbeddingTable>> table = registry_.Get(name);
    const CheckpointHeader& last =
        deltas.empty() ? *full_header : deltas.back();
    result.restored = true;
    result.checkpoint = RecordOf(last);
    if (table.ok()) {
      // After a fallback the chain on disk has holes a delta could not
      // extend: the next save is a full one.
      state.base_table = *table;
      state.has_base = result.skipped.empty();
      state.base_sequence = last.name.sequence;
      state.base_epoch = TableLoader::kRestoredEpoch;
      state.deltas = static_cast<int>(deltas.size());
      SetRecord(state, result.checkpoint, *table);
    }
    return result;
  }
  return result;
}

std::optional<CheckpointRecord> CheckpointManager::Impl::LastCheckpoint(
    absl::string_view name) {
  TableState* state;
  {
    ReaderLock lock(&mu_);
    auto it = tables_.find(name);
    if (it == tables_.end()) return std::nullopt;
    state = it->second.get();
  }
  absl::StatusOr<std::shared_ptr<EmbeddingTable>> table = registry_.Get(name);
  ReaderLock lock(&state->record_mu);
  // The record of a deleted table does not describe a new one of its name.
  if (!table.ok() || state->record_table.lock() != *table) return std::nullopt;
  return state->record;
}

absl::StatusOr<std::unique_ptr<CheckpointManager>> CheckpointManager::Create(
    const CheckpointOptions& options, TableRegistry* registry) {
  if (options.directory.empty()) {
    return absl::InvalidArgumentError("checkpoint directory is empty");
  }
  if (options.keep < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint keep must be >= 1, got ", options.keep));
  }
  if (options.full_every < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint full_every must be >= 0, got ", options.full_every));
  }
  if (!internal::IsDirectory(options.directory)) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint directory ", options.directory,
                     " does not exist or is not a directory"));
  }
  return std::unique_ptr<CheckpointManager>(
      new CheckpointManager(std::make_unique<Impl>(options, registry)));
}

CheckpointManager::CheckpointManager(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

CheckpointManager::~CheckpointManager() = default;

absl::StatusOr<std::vector<SavedTable>> CheckpointManager::Save(
    absl::Span<const std::string> tables, SaveKind kind,
    const std::atomic<bool>* cancelled) {
  std::vector<std::string> names(tables.begin(), tables.end());
  const bool every_table = names.empty();
  if (every_table) {
    for (const TableStats& stats : impl_->registry().List()) {
      names.push_back(stats.spec.name);
    }
  }
  std::vector<SavedTable> saved;
  for (const std::string& name : names) {
    absl::StatusOr<SavedTable> table = impl_->SaveTable(name, kind, cancelled);
    // A table deleted since it was listed is no longer to be saved.
    if (every_table && table.status().code() == absl::StatusCode::kNotFound) {
      continue;
    }
    if (!table.ok()) {
      return Prefixed(absl::StrCat("saving table \"", name, "\""),
                      table.status());
    }
    saved.push_back(*std::move(table));
  }
  return saved;
}

absl::StatusOr<std::vector<RestoredTable>> CheckpointManager::RestoreAll() {
  absl::StatusOr<std::vector<std::string>> entries =
      internal::ListDirectory(impl_->directory());
  if (!entries.ok()) {
    return absl::FailedPreconditionError(entries.status().message());
  }
  std::vector<std::string> names;
  for (const std::string& entry : *entries) {
    // What a Forget interrupted by a crash left: garbage, never a table.
    // Removing it is best effort; what stays is ignored again next time.
    if (absl::StartsWith(entry, ".tmp-deleted-")) {
      internal::RemoveTree(JoinPath(impl_->directory(), entry)).IgnoreError();
      continue;
    }
    std::optional<std::string> table = internal::TableOfDirectory(entry);
    if (table.has_value() &&
        internal::IsDirectory(JoinPath(impl_->directory(), entry))) {
      names.push_back(*std::move(table));
    }
  }
  std::sort(names.begin(), names.end());
  std::vector<RestoredTable> restored;
  for (const std::string& name : names) {
    restored.push_back(impl_->RestoreTable(name));
  }
  return restored;
}

absl::Status CheckpointManager::Impl::Forget(const std::string& name) {
  TableState& state = StateOf(name);
  WriterLock lock(&state.save_mu);
  const std::string directory = TableDirectory(name);
  if (internal::IsDirectory(directory)) {
    // Renamed out of sight first (a dot entry is not a table), so a crash
    // while removing cannot leave a partial table behind to restore.
    const std::string doomed = JoinPath(
        options_.directory,
        absl::StrCat(".tmp-deleted-", internal::TableDirectoryName(name), "-",
                     absl::ToUnixNanos(absl::Now())));
    EMBEDDING_RETURN_IF_ERROR(internal::Rename(directory, doomed));
    EMBEDDING_RETURN_IF_ERROR(internal::SyncDirectory(options_.directory));
    EMBEDDING_RETURN_IF_ERROR(internal::RemoveTree(doomed));
  }
  state.prepared = false;
  state.has_base = false;
  state.deltas = 0;
  state.refused.clear();
  WriterLock record_lock(&state.record_mu);
  state.record.reset();
  return absl::OkStatus();
}

absl::Status CheckpointManager::Forget(absl::string_view table) {
  return impl_->Forget(std::string(table));
}

std::optional<CheckpointRecord> CheckpointManager::LastCheckpoint(
    absl::string_view table) const {
  return impl_->LastCheckpoint(table);
}

}  // namespace embedding
