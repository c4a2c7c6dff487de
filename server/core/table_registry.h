// TableRegistry: the named tables of one server, under a memory budget.
//
//   TableRegistry registry({.memory_budget_bytes = int64_t{8} << 30});
//   absl::StatusOr<TableStats> created = registry.Create(spec, {});
//   absl::StatusOr<std::shared_ptr<EmbeddingTable>> table = registry.Get("t");
//
// Thread-safe. A table handed out by Get stays valid for its holder even if
// it is deleted meanwhile (shared ownership); its memory stays counted
// against the budget until the last holder lets go (the table holds a
// BudgetLease), while its name is free at once. A create that fails in any
// way (an error, std::bad_alloc, cancellation) leaves neither its name nor
// its memory reserved.
#ifndef SERVER_CORE_TABLE_REGISTRY_H_
#define SERVER_CORE_TABLE_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/cancellation.h"
#include "server/core/embedding_table.h"
#include "server/core/exactly_once.h"
#include "server/core/memory_budget.h"
#include "server/core/mutex.h"
#include "server/core/table_spec.h"

namespace embedding {

// Checked by Server::Start (server/service/server.h).
struct RegistryOptions {
  // Bytes all tables (weights + optimizer state) may take together; 0 means
  // no limit.
  // Default: 0. REQUIRES: >= 0.
  int64_t memory_budget_bytes = 0;
  // This server's place among the servers holding each table: it holds
  // global rows g with g % shard_count == shard_index.
  // Default: 0 of 1. REQUIRES: shard_count >= 1, 0 <= shard_index <
  // shard_count.
  int32_t shard_index = 0;
  int32_t shard_count = 1;
  // Each table forgets an exactly-once client that pushed nothing for
  // longer than this; its later pushes are refused (exactly_once.h).
  // Default: 1 hour. REQUIRES: > 0.
  absl::Duration exactly_once_idle = absl::Hours(1);
  // Exactly-once clients each table remembers at once; a new one past it is
  // RESOURCE_EXHAUSTED.
  // Default: 16384. REQUIRES: >= 1.
  int64_t exactly_once_max_clients = 16384;
  // The time for exactly-once idleness; called under a table's lock, from
  // any thread, so it must be thread-safe. Default (null): absl::Now. Tests
  // inject one.
  std::function<absl::Time()> clock;
};

class TableRegistry {
 public:
  explicit TableRegistry(const RegistryOptions& options);

  // Creates a table; the spec's shard fields are set from the options.
  // INVALID_ARGUMENT for a bad spec or weights, ALREADY_EXISTS for a taken
  // name, RESOURCE_EXHAUSTED when it does not fit the memory budget or
  // cannot be allocated; cancel.Status() when cancelled before it is
  // published (the initialisation of a large table asks every block of
  // rows). Failed, it leaves nothing behind.
  absl::StatusOr<TableStats> Create(
      TableSpec spec, absl::Span<const float> initial_weights,
      const Cancellation& cancel = NeverCancelled());

  // Creates a table built by `build` (e.g. restored from a checkpoint by a
  // TableLoader) from `spec` with its shard fields set from the options and
  // validated; the name and the memory are reserved while it runs. Errors
  // as Create, or what `build` returns; a std::bad_alloc out of `build` is
  // RESOURCE_EXHAUSTED. `cancel` is asked before and after `build`.
  absl::StatusOr<TableStats> CreateWith(
      TableSpec spec,
      absl::FunctionRef<
          absl::StatusOr<std::unique_ptr<EmbeddingTable>>(const TableSpec&)>
          build,
      const Cancellation& cancel = NeverCancelled());

  // NOT_FOUND for an unknown name.
  absl::StatusOr<std::shared_ptr<EmbeddingTable>> Get(
      absl::string_view name) const;

  // Every table, sorted by name.
  std::vector<TableStats> List() const;

  // Removes the table from the registry: its name is free at once; its
  // memory is released when its last holder lets go. NOT_FOUND for an
  // unknown name.
  absl::Status Delete(absl::string_view name);

  // Bytes counted against the budget: live tables (deleted ones still held
  // included) and their snapshots' pre-images.
  int64_t memory_used_bytes() const;
  // The budget those bytes count against; 0: no limit.
  int64_t memory_budget_bytes() const { return options_.memory_budget_bytes; }

  int32_t shard_index() const { return options_.shard_index; }
  int32_t shard_count() const { return options_.shard_count; }

 private:
  class NameReservation;

  // Reserves `name` for a create in progress until the returned
  // reservation is destroyed. ALREADY_EXISTS when it is taken.
  absl::StatusOr<NameReservation> ReserveName(const std::string& name);

  ExactlyOnceOptions ExactlyOnce() const;

  const RegistryOptions options_;
  const std::shared_ptr<MemoryBudget> budget_;
  mutable SharedMutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<EmbeddingTable>> tables_
      ABSL_GUARDED_BY(mu_);
  // Names being created: reserved so a concurrent duplicate fails at once.
  absl::flat_hash_set<std::string> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace embedding

#endif  // SERVER_CORE_TABLE_REGISTRY_H_
