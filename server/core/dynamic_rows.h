// DynamicRows: what a dynamic table keeps beside its row arena: which id
// each slot holds (the row index, row_index.h), when each row was last
// pushed (for eviction), and the table's admission and eviction counts.
// EmbeddingTable owns the rows, the stripe locks and their seqlock counters;
// DynamicRows uses the same stripes (stripes(): slot s belongs to stripe
// s & (stripes() - 1)), and every call that changes a stripe is made under
// that stripe's writer lock, with its counter odd. Find may run inside a
// reader's seqlock window instead (RowIndex::kLockFreeFind).
//
//   const DynamicRows::Place place = rows.PlaceOf(id);
//   int64_t slot = rows.Find(place, id);  // -1: id holds no row.
//   // Under stripe place.stripe's writer lock, counter odd:
//   if (slot < 0) slot = rows.Admit(place, id, touch).slot;
//   else rows.Touch(slot, touch);
//
// Eviction is per stripe: a full stripe gives up the row with the smallest
// touch (the least recently pushed: touches grow with the push's step).
#ifndef SERVER_CORE_DYNAMIC_ROWS_H_
#define SERVER_CORE_DYNAMIC_ROWS_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "server/core/row_index.h"
#include "server/core/table_spec.h"

namespace embedding {

// What a dynamic table did since it was created or restored.
struct DynamicCounts {
  int64_t rows_held = 0;
  int64_t admissions = 0;
  int64_t evictions = 0;
  int64_t expirations = 0;
  int64_t dropped_rows = 0;           // Gradient rows of ids not admitted.
  int64_t absent_rows_looked_up = 0;  // Looked-up ids holding no row.
};

class DynamicRows {
 public:
  // The index design (docs/dynamic_tables_design.md §2).
  using RowIndex = OpenAddressingRowIndex;

  // Where an id lives: its stripe and its hash in the index.
  struct Place {
    uint32_t stripe;
    uint64_t hash;
  };

  struct Admission {
    int64_t slot;
    // The id whose row was evicted to make room, kReservedId when the
    // stripe had a free row.
    int64_t evicted_id;
  };

  // For a validated spec. RESOURCE_EXHAUSTED when the memory cannot be
  // allocated.
  static absl::StatusOr<std::unique_ptr<DynamicRows>> Create(
      const DynamicSpec& spec);

  // Bytes Create allocates (the row index and the touches).
  static int64_t MemoryBytes(const DynamicSpec& spec);

  DynamicRows(const DynamicRows&) = delete;
  DynamicRows& operator=(const DynamicRows&) = delete;

  int32_t stripes() const { return index_->stripes(); }
  int64_t capacity() const { return index_->capacity(); }

  Place PlaceOf(int64_t id) const {
    const uint64_t hash = RowIndex::Hash(id);
    return {index_->StripeOf(hash), hash};
  }
  // Starts loading the index entry of `place` into the cache.
  void Prefetch(const Place& place, int64_t id) const {
    index_->Prefetch(place.stripe, id, place.hash);
  }

  // The slot holding `id`, or -1. Readers: inside a seqlock window of the
  // stripe (the answer counts only if the window validates), or under its
  // lock.
  int64_t Find(const Place& place, int64_t id) const {
    const int64_t j = index_->Find(place.stripe, id, place.hash);
    return j < 0 ? -1 : index_->Slot(place.stripe, static_cast<uint32_t>(j));
  }

  // Writers (the stripe's writer lock, its counter odd):
  // Records that the row of `slot` was pushed; `touch` orders pushes
  // (larger is later).
  void Touch(int64_t slot, uint64_t touch) { touches_[MetaOf(slot)] = touch; }
  // Gives `id` (absent) a slot of its stripe, evicting the stripe's least
  // recently pushed row when the stripe is full. The caller writes the
  // row's values and optimizer state.
  Admission Admit(const Place& place, int64_t id, uint64_t touch);

  // The id a slot holds, kReservedId when none. REQUIRES: the stripe's lock.
  int64_t IdAt(int64_t slot) const {
    return index_->KeyAt(StripeOfSlot(slot), RowOfSlot(slot));
  }

  // Adds one push's (or lookup's) counts, once per call.
  void Count(int64_t admissions, int64_t evictions, int64_t dropped_rows) {
    admissions_.fetch_add(admissions, std::memory_order_relaxed);
    evictions_.fetch_add(evictions, std::memory_order_relaxed);
    dropped_rows_.fetch_add(dropped_rows, std::memory_order_relaxed);
    rows_held_.fetch_add(admissions - evictions, std::memory_order_relaxed);
  }
  void CountAbsentLookups(int64_t rows) {
    absent_rows_looked_up_.fetch_add(rows, std::memory_order_relaxed);
  }
  DynamicCounts Counts() const;

  // INTERNAL naming the first inconsistency of the index. REQUIRES:
  // quiescence.
  absl::Status CheckInvariants() const { return index_->CheckInvariants(); }

 private:
  explicit DynamicRows(std::unique_ptr<RowIndex> index,
                       std::unique_ptr<uint64_t[]> touches);

  uint32_t StripeOfSlot(int64_t slot) const {
    return static_cast<uint32_t>(slot & (index_->stripes() - 1));
  }
  uint32_t RowOfSlot(int64_t slot) const {
    return static_cast<uint32_t>(slot >> stripe_bits_);
  }
  // Touches are stripe-major, so that an eviction scans one stripe's
  // contiguously.
  int64_t MetaOf(int64_t slot) const {
    return int64_t{StripeOfSlot(slot)} * rows_per_stripe_ + RowOfSlot(slot);
  }

  const std::unique_ptr<RowIndex> index_;
  const int stripe_bits_;
  const int64_t rows_per_stripe_;  // The largest stripe's capacity.
  // Per row (stripe-major): the touch of its last push. Guarded by the
  // row's stripe lock.
  const std::unique_ptr<uint64_t[]> touches_;

  std::atomic<int64_t> rows_held_{0};
  std::atomic<int64_t> admissions_{0};
  std::atomic<int64_t> evictions_{0};
  std::atomic<int64_t> dropped_rows_{0};
  std::atomic<int64_t> absent_rows_looked_up_{0};
};

}  // namespace embedding

#endif  // SERVER_CORE_DYNAMIC_ROWS_H_
