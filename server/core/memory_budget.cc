#include "server/core/memory_budget.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/checked_math.h"

namespace embedding {

std::shared_ptr<MemoryBudget> MemoryBudget::Create(int64_t limit_bytes) {
  return std::shared_ptr<MemoryBudget>(new MemoryBudget(limit_bytes));
}

absl::StatusOr<BudgetLease> MemoryBudget::Reserve(int64_t bytes,
                                                  absl::string_view what) {
  int64_t used = used_.load(std::memory_order_relaxed);
  while (true) {
    if (limit_bytes_ == 0 && !CheckedAdd(used, bytes).has_value()) {
      return absl::ResourceExhaustedError(
          absl::StrCat(what, " needs ", bytes, " bytes; with ", used,
                       " bytes in use that passes 64 bits"));
    }
    // Both are >= 0, so the difference cannot overflow.
    if (limit_bytes_ > 0 && bytes > limit_bytes_ - used) {
      return absl::ResourceExhaustedError(
          absl::StrCat(what, " needs ", bytes, " bytes; the memory budget is ",
                       limit_bytes_, " bytes of which ",
                       std::max<int64_t>(0, limit_bytes_ - used), " are free"));
    }
    if (used_.compare_exchange_weak(used, used + bytes,
                                    std::memory_order_relaxed)) {
      return BudgetLease(shared_from_this(), bytes);
    }
  }
}

BudgetLease::BudgetLease(BudgetLease&& other) noexcept
    : budget_(std::move(other.budget_)),
      bytes_(other.bytes_.exchange(0, std::memory_order_relaxed)) {}

BudgetLease& BudgetLease::operator=(BudgetLease&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::move(other.budget_);
    bytes_.store(other.bytes_.exchange(0, std::memory_order_relaxed),
                 std::memory_order_relaxed);
  }
  return *this;
}

BudgetLease::~BudgetLease() { Release(); }

void BudgetLease::Grow(int64_t bytes) {
  if (budget_ == nullptr) return;
  bytes_.fetch_add(bytes, std::memory_order_relaxed);
  budget_->used_.fetch_add(bytes, std::memory_order_relaxed);
}

void BudgetLease::Release() {
  if (budget_ == nullptr) return;
  budget_->used_.fetch_sub(bytes_.exchange(0, std::memory_order_relaxed),
                           std::memory_order_relaxed);
  budget_.reset();
}

}  // namespace embedding
