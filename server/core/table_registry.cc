#include "server/core/table_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace embedding {

TableRegistry::TableRegistry(const RegistryOptions& options)
    : options_(options) {}

absl::StatusOr<TableStats> TableRegistry::Create(
    TableSpec spec, absl::Span<const float> initial_weights) {
  return CreateWith(std::move(spec), [&](const TableSpec& validated) {
    return EmbeddingTable::Create(validated, initial_weights);
  });
}

absl::StatusOr<TableStats> TableRegistry::CreateWith(
    TableSpec spec,
    absl::FunctionRef<
        absl::StatusOr<std::unique_ptr<EmbeddingTable>>(const TableSpec&)>
        build) {
  spec.shard_index = options_.shard_index;
  spec.shard_count = options_.shard_count;
  EMBEDDING_RETURN_IF_ERROR(ValidateTableSpec(spec));
  EMBEDDING_ASSIGN_OR_RETURN(const int64_t bytes,
                             EmbeddingTable::MemoryBytes(spec));
  {
    // Reserve the name and the memory first; allocating and initialising a
    // large table takes a while and must not hold the registry lock.
    WriterLock lock(&mu_);
    if (tables_.contains(spec.name) || pending_.contains(spec.name)) {
      return absl::AlreadyExistsError(
          absl::StrCat("table \"", spec.name, "\" already exists"));
    }
    const int64_t budget = options_.memory_budget_bytes;
    if (budget > 0 && bytes > budget - memory_used_bytes_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("table \"", spec.name, "\" needs ", bytes,
                       " bytes; the memory "
                       "budget is ",
                       budget, " bytes of which ", budget - memory_used_bytes_,
                       " are free"));
    }
    memory_used_bytes_ += bytes;
    pending_.insert(spec.name);
  }
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> table = build(spec);
  WriterLock lock(&mu_);
  pending_.erase(spec.name);
  if (!table.ok()) {
    memory_used_bytes_ -= bytes;
    return table.status();
  }
  std::shared_ptr<EmbeddingTable> shared = *std::move(table);
  tables_[spec.name] = shared;
  return shared->Stats();
}

absl::StatusOr<std::shared_ptr<EmbeddingTable>> TableRegistry::Get(
    absl::string_view name) const {
  ReaderLock lock(&mu_);
  auto it = tables_.find(name);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("table \"", name, "\" not found"));
  }
  return it->second;
}

std::vector<TableStats> TableRegistry::List() const {
  std::vector<std::shared_ptr<EmbeddingTable>> tables;
  {
    ReaderLock lock(&mu_);
    for (const auto& [name, table] : tables_) tables.push_back(table);
  }
  std::vector<TableStats> stats;
  stats.reserve(tables.size());
  for (const auto& table : tables) stats.push_back(table->Stats());
  std::sort(stats.begin(), stats.end(),
            [](const TableStats& a, const TableStats& b) {
              return a.spec.name < b.spec.name;
            });
  return stats;
}

absl::Status TableRegistry::Delete(absl::string_view name) {
  WriterLock lock(&mu_);
  auto it = tables_.find(name);
  if (it == tables_.end()) {
    return absl::NotFoundError(absl::StrCat("table \"", name, "\" not found"));
  }
  memory_used_bytes_ -= *EmbeddingTable::MemoryBytes(it->second->Stats().spec);
  tables_.erase(it);
  return absl::OkStatus();
}

int64_t TableRegistry::memory_used_bytes() const {
  ReaderLock lock(&mu_);
  return memory_used_bytes_;
}

}  // namespace embedding
