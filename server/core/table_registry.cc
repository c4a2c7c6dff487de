#include "server/core/table_registry.h"

#include <algorithm>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

absl::Status NotFound(absl::string_view name) {
  return absl::NotFoundError(
      absl::StrCat("table ", QuoteForMessage(name), " not found"));
}

}  // namespace

// A name held in pending_ until destroyed, however the create ends.
class TableRegistry::NameReservation {
 public:
  NameReservation(TableRegistry* registry, std::string name)
      : registry_(registry), name_(std::move(name)) {}
  NameReservation(NameReservation&& other) noexcept
      : registry_(std::exchange(other.registry_, nullptr)),
        name_(std::move(other.name_)) {}
  NameReservation& operator=(NameReservation&&) = delete;
  ~NameReservation() {
    if (registry_ == nullptr) return;
    WriterLock lock(&registry_->mu_);
    registry_->pending_.erase(name_);
  }

 private:
  TableRegistry* registry_;
  std::string name_;
};

TableRegistry::TableRegistry(const RegistryOptions& options)
    : options_(options),
      budget_(MemoryBudget::Create(options.memory_budget_bytes)) {}

ExactlyOnceOptions TableRegistry::ExactlyOnce() const {
  return {.idle = options_.exactly_once_idle,
          .max_clients = options_.exactly_once_max_clients,
          .clock = options_.clock};
}

absl::StatusOr<TableRegistry::NameReservation> TableRegistry::ReserveName(
    const std::string& name) {
  WriterLock lock(&mu_);
  if (tables_.contains(name) || !pending_.insert(name).second) {
    return absl::AlreadyExistsError(
        absl::StrCat("table ", QuoteForMessage(name), " already exists"));
  }
  return NameReservation(this, name);
}

absl::StatusOr<TableStats> TableRegistry::Create(
    TableSpec spec, absl::Span<const float> initial_weights,
    const Cancellation& cancel) {
  return CreateWith(
      std::move(spec),
      [&](const TableSpec& validated) {
        return EmbeddingTable::Create(validated, initial_weights, cancel);
      },
      cancel);
}

absl::StatusOr<TableStats> TableRegistry::CreateWith(
    TableSpec spec,
    absl::FunctionRef<
        absl::StatusOr<std::unique_ptr<EmbeddingTable>>(const TableSpec&)>
        build,
    const Cancellation& cancel) {
  spec.shard_index = options_.shard_index;
  spec.shard_count = options_.shard_count;
  EMBEDDING_RETURN_IF_ERROR(ValidateTableSpec(spec));
  EMBEDDING_ASSIGN_OR_RETURN(const int64_t bytes,
                             EmbeddingTable::MemoryBytes(spec));
  // Reserve the name and the memory first; allocating and initialising a
  // large table takes a while and must not hold the registry lock. Both
  // reservations undo themselves on every way out but the last.
  EMBEDDING_ASSIGN_OR_RETURN(const NameReservation name,
                             ReserveName(spec.name));
  EMBEDDING_ASSIGN_OR_RETURN(
      BudgetLease lease,
      budget_->Reserve(bytes,
                       absl::StrCat("table ", QuoteForMessage(spec.name))));
  if (cancel.IsCancelled()) return cancel.Status();
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> table;
  try {
    table = build(spec);
  } catch (const std::bad_alloc&) {
    table = absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate table ", QuoteForMessage(spec.name),
                     " of ", bytes, " bytes"));
  }
  if (!table.ok()) return table.status();
  // Built but not yet visible: a caller that gave up gets no table.
  if (cancel.IsCancelled()) return cancel.Status();
  (*table)->HoldBudget(std::move(lease));
  (*table)->SetExactlyOnceOptions(ExactlyOnce());
  std::shared_ptr<EmbeddingTable> shared = *std::move(table);
  {
    WriterLock lock(&mu_);
    tables_[spec.name] = shared;
  }
  return shared->Stats();
}

absl::StatusOr<std::shared_ptr<EmbeddingTable>> TableRegistry::Get(
    absl::string_view name) const {
  ReaderLock lock(&mu_);
  auto it = tables_.find(name);
  if (it == tables_.end()) return NotFound(name);
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
  std::shared_ptr<EmbeddingTable> deleted;
  {
    WriterLock lock(&mu_);
    auto it = tables_.find(name);
    if (it == tables_.end()) return NotFound(name);
    deleted = std::move(it->second);
    tables_.erase(it);
  }
  // Freed here, outside the lock, unless someone still holds it: then its
  // lease (and memory) goes with the last holder.
  return absl::OkStatus();
}

int64_t TableRegistry::memory_used_bytes() const {
  return budget_->used_bytes();
}

}  // namespace embedding
