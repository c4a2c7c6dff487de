// MemoryBudget: the bytes a server's tables may take together, handed out as
// leases that give their bytes back when they end. A table holds its lease
// for as long as it lives, so a deleted table that a reader still holds
// keeps counting until the reader lets go.
//
//   std::shared_ptr<MemoryBudget> budget = MemoryBudget::Create(8 << 30);
//   absl::StatusOr<BudgetLease> lease =
//       budget->Reserve(bytes, "table \"ads\"");
//   if (!lease.ok()) return lease.status();  // RESOURCE_EXHAUSTED
//   table->HoldBudget(*std::move(lease));    // Released with the table.
//
// Thread-safe. A lease keeps its budget alive, so it may outlive whoever
// made the budget (the registry).
#ifndef SERVER_CORE_MEMORY_BUDGET_H_
#define SERVER_CORE_MEMORY_BUDGET_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace embedding {

class BudgetLease;

class MemoryBudget : public std::enable_shared_from_this<MemoryBudget> {
 public:
  // A budget of `limit_bytes`; 0 means no limit (use is still counted).
  // REQUIRES: limit_bytes >= 0.
  static std::shared_ptr<MemoryBudget> Create(int64_t limit_bytes);

  // Takes `bytes` (>= 0) until the lease ends. RESOURCE_EXHAUSTED ("<what>
  // needs N bytes; the memory budget is L bytes of which F are free") when
  // they do not fit.
  absl::StatusOr<BudgetLease> Reserve(int64_t bytes, absl::string_view what);

  int64_t limit_bytes() const { return limit_bytes_; }
  // Bytes of every live lease; may pass the limit by what leases grew
  // (BudgetLease::Grow).
  int64_t used_bytes() const { return used_.load(std::memory_order_relaxed); }

 private:
  friend class BudgetLease;
  explicit MemoryBudget(int64_t limit_bytes) : limit_bytes_(limit_bytes) {}

  const int64_t limit_bytes_;
  // A counter only: it publishes nothing, so relaxed operations suffice;
  // Reserve's compare-exchange keeps it from passing the limit.
  std::atomic<int64_t> used_{0};
};

// Bytes taken from a MemoryBudget, given back when the lease is destroyed.
// Move-only. Grow and Shrink may be called from several threads at once;
// moving and destroying may not race with them.
class BudgetLease {
 public:
  // Holds nothing.
  BudgetLease() = default;
  BudgetLease(BudgetLease&& other) noexcept;
  BudgetLease& operator=(BudgetLease&& other) noexcept;
  BudgetLease(const BudgetLease&) = delete;
  BudgetLease& operator=(const BudgetLease&) = delete;
  ~BudgetLease();

  int64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

  // Counts `bytes` more (or fewer) against the budget without checking the
  // limit: memory already taken that no request can be refused for (a
  // snapshot's pre-images). No-op on an empty lease.
  void Grow(int64_t bytes);
  void Shrink(int64_t bytes) { Grow(-bytes); }

 private:
  friend class MemoryBudget;
  BudgetLease(std::shared_ptr<MemoryBudget> budget, int64_t bytes)
      : budget_(std::move(budget)), bytes_(bytes) {}
  void Release();

  std::shared_ptr<MemoryBudget> budget_;
  std::atomic<int64_t> bytes_{0};  // Relaxed: a counter, as the budget's.
};

}  // namespace embedding

#endif  // SERVER_CORE_MEMORY_BUDGET_H_
