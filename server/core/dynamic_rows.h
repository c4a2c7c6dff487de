// DynamicRows: what a dynamic table keeps beside its row arena: which id
// each slot holds (the row index, row_index.h), when and how often each row
// was pushed (for eviction and expiry), the admission counters of ids that
// hold no row yet, and the table's admission and eviction counts.
// EmbeddingTable owns the rows, the stripe locks and their seqlock counters;
// DynamicRows uses the same stripes (slot s belongs to stripe
// s & (stripes() - 1)), and every call that changes a stripe is made under
// that stripe's writer lock, with its counter odd. Find and Expired may run
// inside a reader's seqlock window instead (RowIndex::kLockFreeFind).
//
//   const DynamicRows::Place place = rows.PlaceOf(id);
//   int64_t slot = rows.Find(place, id);  // -1: id holds no row.
//   // Under stripe place.stripe's writer lock, counter odd:
//   if (slot >= 0 && !rows.Expired(slot, pushes)) {
//     rows.Touch(slot, touch);
//   } else if (rows.Admits(place, id)) {
//     slot = rows.AdmissionSlot(place, id, pushes);
//     ...save what the slot held (snapshots)...
//     rows.Occupy(place, id, slot, touch, pushes);
//   }
//
// Policies (docs/dynamic_tables_design.md §2, §3):
// - Admission: with admit_after = a > 1, an id gets a row at its a-th push.
//   Pushes of ids without a row are counted in a count-min sketch per
//   stripe (4 rows of 4 * R 8-bit counters, conservative update, halved
//   after 2 * R counts), which may overcount (admit early), never
//   undercount before a halving.
// - Eviction: a full stripe gives up its least recently pushed row (LRU),
//   or its least pushed one since admission, then the least recent (LFU).
// - Expiry (ttl_pushes = t): a row whose last push was t or more pushes of
//   the table ago reads as absent; a push of its id admits it again in its
//   slot, and it is the first row reclaimed for another id.
// Touches order pushes: the push's step (the count of pushes before it, plus
// one) in the high bits, the row's rank within the push in the low bits.
#ifndef SERVER_CORE_DYNAMIC_ROWS_H_
#define SERVER_CORE_DYNAMIC_ROWS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "server/core/row_index.h"
#include "server/core/table_spec.h"

namespace embedding {

// What a dynamic table did since it was created or restored.
struct DynamicCounts {
  int64_t rows_held = 0;
  int64_t admissions = 0;
  int64_t evictions = 0;
  int64_t expirations = 0;            // Expired rows reclaimed.
  int64_t dropped_rows = 0;           // Gradient rows of ids not admitted.
  int64_t absent_rows_looked_up = 0;  // Looked-up ids holding no row.
};

class DynamicRows {
 public:
  // The index design (docs/dynamic_tables_design.md §2; BENCHMARKS.md).
  using RowIndex = OpenAddressingRowIndex;

  // Bits of a touch that rank the rows of one push.
  static constexpr int kRankBits = 24;

  // Where an id lives: its stripe and its hash in the index.
  struct Place {
    uint32_t stripe;
    uint64_t hash;
  };

  // What Occupy replaced.
  struct Replaced {
    // The id whose row was evicted, or reclaimed after it expired;
    // kReservedId when the slot was free or held `id` itself.
    int64_t id = kReservedId;
    bool expired = false;  // The replaced row had expired.
  };

  // What eviction knows of a row.
  struct Usage {
    uint64_t touch = 0;       // Of its last push.
    uint32_t push_count = 0;  // Pushes since admission (LFU; else 0).
  };

  // The admission sketch (admit_after > 1): counters, stripe after stripe,
  // and each stripe's counts since its last halving.
  struct Admission {
    std::vector<uint8_t> counters;
    std::vector<int64_t> counts;
  };

  // For a validated spec. RESOURCE_EXHAUSTED when the memory cannot be
  // allocated.
  static absl::StatusOr<std::unique_ptr<DynamicRows>> Create(
      const DynamicSpec& spec);

  // Bytes Create allocates (the row index, touches, LFU counts, sketch).
  static int64_t MemoryBytes(const DynamicSpec& spec);
  // The shape of Admission for `spec`: counters and stripe counts (both 0
  // when admit_after is 1).
  static int64_t AdmissionCounters(const DynamicSpec& spec);
  static int64_t AdmissionStripes(const DynamicSpec& spec);

  DynamicRows(const DynamicRows&) = delete;
  DynamicRows& operator=(const DynamicRows&) = delete;

  int32_t stripes() const { return index_->stripes(); }
  int64_t capacity() const { return index_->capacity(); }
  int64_t StripeCapacity(uint32_t stripe) const {
    return index_->StripeCapacity(stripe);
  }

  Place PlaceOf(int64_t id) const {
    const uint64_t hash = RowIndex::Hash(id);
    return {index_->StripeOf(hash), hash};
  }
  // Starts loading the index entry of `id` into the cache.
  void Prefetch(const Place& place, int64_t id) const {
    index_->Prefetch(place.stripe, id, place.hash);
  }
  // Starts loading what a push of the row of `slot` reads and updates (its
  // last push, and under LFU its count).
  void PrefetchUsage(int64_t slot) const {
    const int64_t meta = MetaOf(slot);
    __builtin_prefetch(&touches_[meta], 1);
    if (lfu_) __builtin_prefetch(&push_counts_[meta], 1);
  }

  // Readers: inside a seqlock window of the stripe (the answers count only
  // if the window validates), or under its lock.
  // The slot holding `id`, or -1.
  int64_t Find(const Place& place, int64_t id) const {
    const int64_t j = index_->Find(place.stripe, id, place.hash);
    return j < 0 ? -1 : index_->Slot(place.stripe, static_cast<uint32_t>(j));
  }
  // Whether the row of `slot` has expired when `pushes` pushes of the table
  // are done: it was last pushed ttl_pushes or more pushes ago (never
  // without ttl_pushes).
  bool Expired(int64_t slot, int64_t pushes) const {
    return ttl_pushes_.has_value() &&
           pushes - LastPush(LoadTouch(MetaOf(slot))) >= *ttl_pushes_;
  }

  // Writers (the stripe's writer lock, its counter odd):
  // Records a push of the row of `slot` (under a TTL a touch older than
  // the one it has is ignored: pushes may reach a row out of step order).
  void Touch(int64_t slot, uint64_t touch);
  // Counts a push of `id`, which holds no row (or an expired one): true when
  // it is admitted now (always with admit_after 1); otherwise its gradient
  // is to be dropped.
  bool Admits(const Place& place, int64_t id);
  // The slot an admission of `id` takes: its own expired row, a free row of
  // its stripe, or the stripe's victim. Changes nothing.
  int64_t AdmissionSlot(const Place& place, int64_t id, int64_t pushes) const;
  // AdmissionSlot for a write of several ids: the victim is none of the
  // `kept` slots (the write's own rows). REQUIRES: a row of the stripe is
  // not kept.
  int64_t AdmissionSlot(const Place& place, int64_t id, int64_t pushes,
                        const absl::flat_hash_set<int64_t>& kept) const;
  // Gives `id` the slot AdmissionSlot chose (the caller writes its values
  // and optimizer state), and counts what it replaced.
  Replaced Occupy(const Place& place, int64_t id, int64_t slot, uint64_t touch,
                  int64_t pushes);

  // The id a slot holds, kReservedId when none, and its usage. REQUIRES:
  // the stripe's lock.
  int64_t IdAt(int64_t slot) const {
    return index_->KeyAt(StripeOfSlot(slot), RowOfSlot(slot));
  }
  Usage UsageAt(int64_t slot) const;

  // Snapshots: a copy of the sketch. REQUIRES: no push runs (the table's
  // mutation barrier held exclusively). Empty when admit_after is 1.
  Admission ExportAdmission() const;

  // Restores (TableLoader, before the table is shared; no locks).
  // INVALID_ARGUMENT when `slot` is not one of the table's, or not of
  // `id`'s stripe (unless id is kReservedId).
  absl::Status CheckRestore(int64_t slot, int64_t id) const;
  // Gives `slot` to `id` with `usage`, or frees it when `id` is kReservedId;
  // `id` leaves the slot it held before, if another. REQUIRES: CheckRestore
  // passed.
  void Restore(int64_t slot, int64_t id, const Usage& usage);
  // Gives `id` a row of its stripe (the lowest free one; its own if it has
  // one) with `usage`, and returns its slot: a restore by id (resharding).
  // FAILED_PRECONDITION when the stripe is full.
  absl::StatusOr<int64_t> RestoreById(int64_t id, const Usage& usage);
  // INVALID_ARGUMENT unless `admission` has the sketch's shape.
  absl::Status ImportAdmission(const Admission& admission);
  // Sets the count of rows held from the index (after the restores).
  void CountRestoredRows();
  // Slots of the largest stripe, times the stripes: bounds a slot's row.
  int64_t SlotBound() const {
    return int64_t{index_->stripes()} * rows_per_stripe_;
  }

  // Adds one push's counts (admissions include re-admissions of expired
  // rows), once per push.
  void Count(int64_t admissions, int64_t evictions, int64_t expirations,
             int64_t dropped_rows);
  void CountAbsentLookups(int64_t rows) {
    absent_rows_looked_up_.fetch_add(rows, std::memory_order_relaxed);
  }
  DynamicCounts Counts() const;

  // INTERNAL naming the first inconsistency of the index. REQUIRES:
  // quiescence.
  absl::Status CheckInvariants() const { return index_->CheckInvariants(); }

 private:
  // The admission sketch's shape.
  static constexpr int kSketchRows = 4;
  static constexpr int kSketchWidthPerRow = 4;  // Counters per row of R.

  DynamicRows(const DynamicSpec& spec, std::unique_ptr<RowIndex> index);
  bool Allocated() const;

  uint32_t StripeOfSlot(int64_t slot) const {
    return static_cast<uint32_t>(slot & (index_->stripes() - 1));
  }
  uint32_t RowOfSlot(int64_t slot) const {
    return static_cast<uint32_t>(slot >> stripe_bits_);
  }
  // Per-row data is stripe-major, so that an eviction scans one stripe's
  // contiguously.
  int64_t MetaOf(int64_t slot) const {
    return int64_t{StripeOfSlot(slot)} * rows_per_stripe_ + RowOfSlot(slot);
  }
  // The step of the push that wrote `touch`.
  static int64_t LastPush(uint64_t touch) {
    return static_cast<int64_t>(touch >> kRankBits);
  }
  // Counters of the admission sketch (0 when admit_after is 1).
  int64_t SketchCounters() const {
    return admit_after_ <= 1 ? 0 : stripes() * kSketchRows * sketch_width_;
  }
  // A restore's usage of `slot`. REQUIRES: no other thread uses the table.
  void SetUsage(int64_t slot, const Usage& usage);
  // Touches are read by lookups (expiry) while pushes change them: relaxed
  // atomics, inside the stripe's seqlock window.
  uint64_t LoadTouch(int64_t meta) const {
    return std::atomic_ref<uint64_t>(touches_[meta])
        .load(std::memory_order_relaxed);
  }
  // The row of `stripe` to replace: the first expired one, else the policy's
  // victim, among the rows j that are not kept(j). REQUIRES: the stripe is
  // full, and not every row kept.
  template <typename Kept>
  uint32_t Victim(uint32_t stripe, int64_t pushes, const Kept& kept) const;
  // Both AdmissionSlot overloads.
  template <typename Kept>
  int64_t AdmissionSlotKeeping(const Place& place, int64_t id, int64_t pushes,
                               const Kept& kept) const;
  // The sketch counter of `id` in sketch row `k` of its stripe.
  uint8_t& SketchCounter(const Place& place, int64_t id, int k) const;

  const std::unique_ptr<RowIndex> index_;
  const int stripe_bits_;
  const int64_t rows_per_stripe_;  // The largest stripe's capacity.
  const uint32_t admit_after_;
  const bool lfu_;
  const std::optional<int64_t> ttl_pushes_;
  const int64_t sketch_width_;  // Counters per sketch row: 4 * R.
  // Per row (stripe-major), guarded by the row's stripe lock: the touch of
  // its last push, and (LFU) its pushes since admission.
  const std::unique_ptr<uint64_t[], internal::FreeDeleter> touches_;
  const std::unique_ptr<uint32_t[], internal::FreeDeleter> push_counts_;
  // Per stripe (admit_after > 1), guarded by its lock: kSketchRows rows of
  // sketch_width_ counters, and the counts since the last halving.
  const std::unique_ptr<uint8_t[], internal::FreeDeleter> sketch_;
  const std::unique_ptr<int64_t[], internal::FreeDeleter> sketch_counts_;

  std::atomic<int64_t> rows_held_{0};
  std::atomic<int64_t> admissions_{0};
  std::atomic<int64_t> evictions_{0};
  std::atomic<int64_t> expirations_{0};
  std::atomic<int64_t> dropped_rows_{0};
  std::atomic<int64_t> absent_rows_looked_up_{0};
};

}  // namespace embedding

#endif  // SERVER_CORE_DYNAMIC_ROWS_H_
