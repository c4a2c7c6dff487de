// The hash row index of a dynamic table: maps an int64 id to the row that
// holds it (docs/dynamic_tables_design.md §2).
//
// Why open addressing. Two designs were measured in front of the same
// 1M x 64 arena (tests/bench/row_index_benchmark.cc; Release, medians of 5,
// on a shared machine): this one, with a lock-free Find inside the stripe's
// seqlock window, against an absl::flat_hash_map per stripe, whose Find
// needs the stripe's reader lock. Open addressing did lookups 3x faster on
// 1 thread and 1.25-1.4x on 2, and pushes 1.8x; the map did churn (insert
// + erase on a full index, once per admission) 1.46x faster. Open
// addressing took 29.5 bytes a row at 1M rows, the map 43.8. The map
// design was deleted.
//
// Geometry. A table of `capacity` rows has S stripes (a power of two, see
// StripesFor). Stripe s holds at most R_s = C/S + (s < C%S) rows, numbered j
// in [0, R_s); Slot(s, j) = j*S + s covers [0, C) exactly, so the table's
// stripe of a slot stays `slot & (S-1)`. An id belongs to stripe
// StripeOf(Hash(id)); every id except INT64_MIN (reserved) can be a key.
//
//   const uint64_t hash = OpenAddressingRowIndex::Hash(id);
//   const uint32_t s = index->StripeOf(hash);
//   // Readers, in a seqlock window of stripe s:
//   const int64_t j = index->Find(s, id, hash);  // -1 when absent.
//   // Writers (stripe s's writer lock, between WriteBegin and WriteEnd):
//   const uint32_t j = index->Insert(s, id, hash);
//   index->EraseSlot(s, j);
//
// Thread-compatible per stripe: the caller's stripe lock and SeqCounter
// order every call on a stripe; stripes are independent.
#ifndef SERVER_CORE_ROW_INDEX_H_
#define SERVER_CORE_ROW_INDEX_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/hash64.h"

namespace embedding {
namespace internal {

struct FreeDeleter {
  void operator()(void* data) const { std::free(data); }
};

// The rows of the stripes, apart from the hash buckets that find them:
// geometry, the hash, each stripe's row keys and the bitmap of its used
// rows (Insert takes the lowest free j).
class StripedSlots {
 public:
  // Reserved; never a key. KeyAt returns it for a free row.
  static constexpr int64_t kNoKey = std::numeric_limits<int64_t>::min();
  static constexpr int64_t kMaxCapacity = int64_t{1} << 40;
  static constexpr int32_t kMaxStripes = 65536;
  static constexpr int64_t kRowsPerStripe = 512;

  // clamp(pow2_floor(capacity / 512), 1, 65536): about 512 rows a stripe.
  static int32_t StripesFor(int64_t capacity);

  // The stripe hash of an id. Salted: the routing of ids to servers uses
  // SplitMix64(id), and reusing it would leave stripes empty on a shard.
  static uint64_t Hash(int64_t id) {
    return SplitMix64(static_cast<uint64_t>(id) ^ kStripeSalt);
  }

  // The top log2(S) bits of `hash` (0 when S is 1: no shift by 64).
  uint32_t StripeOf(uint64_t hash) const {
    return static_cast<uint32_t>((hash >> 1) >> stripe_shift_);
  }

  int64_t capacity() const { return capacity_; }
  int32_t stripes() const { return stripes_; }
  // The table's slot of row j of `stripe`, in [0, capacity).
  int64_t Slot(uint32_t stripe, uint32_t j) const {
    return int64_t{j} * stripes_ + stripe;
  }
  // R_s: the most rows `stripe` holds.
  int64_t StripeCapacity(uint32_t stripe) const {
    return capacity_ / stripes_ + (stripe < capacity_ % stripes_ ? 1 : 0);
  }
  // Rows of `stripe` in use. REQUIRES: its writer lock, or quiescence.
  int64_t Size(uint32_t stripe) const { return headers_[stripe].size; }
  bool Full(uint32_t stripe) const {
    return Size(stripe) == StripeCapacity(stripe);
  }
  // The row Insert would give an id. REQUIRES: !Full(stripe), and the
  // writer lock (or quiescence).
  uint32_t LowestFreeRow(uint32_t stripe) const;
  // The key of row j, kNoKey when free. REQUIRES: the writer lock (or
  // quiescence), j < StripeCapacity(stripe).
  int64_t KeyAt(uint32_t stripe, uint32_t j) const {
    return Used(stripe, j) ? keys_[Meta(stripe, j)] : kNoKey;
  }

  // Bytes allocated so far (tests compare it with MemoryBytes).
  int64_t AllocatedBytes() const { return allocated_bytes_; }

 protected:
  // INVALID_ARGUMENT unless capacity is in [1, 2^40] and stripes a power of
  // two in [1, 65536].
  static absl::Status ValidateGeometry(int64_t capacity, int32_t stripes);
  // What the constructor allocates.
  static int64_t SlotsMemoryBytes(int64_t capacity, int32_t stripes);
  static int64_t RowsMax(int64_t capacity, int32_t stripes) {
    return (capacity + stripes - 1) / stripes;
  }

  // REQUIRES: ValidateGeometry passed. ok() is false if allocation failed.
  StripedSlots(int64_t capacity, int32_t stripes);
  bool ok() const;

  // Marks the lowest free row of `stripe` used by `id`, and returns it.
  // REQUIRES: !Full(stripe).
  uint32_t TakeFreeRow(uint32_t stripe, int64_t id);
  // REQUIRES: row j free.
  void TakeRow(uint32_t stripe, uint32_t j, int64_t id);
  // Frees row j and returns its key. REQUIRES: row j used.
  int64_t FreeRow(uint32_t stripe, uint32_t j);
  bool Used(uint32_t stripe, uint32_t j) const {
    return (used_[WordOf(stripe, j)] >> (j % 64) & 1) != 0;
  }
  // Bitmap, sizes and keys agree, and each key is in its stripe; then
  // `find(stripe, key, hash)` (the buckets' probe) gives each used row back.
  absl::Status CheckSlots(
      const std::function<int64_t(uint32_t, int64_t, uint64_t)>& find) const;

  int64_t rows_max() const { return rows_max_; }
  // What AllocatedBytes reports; the buckets add theirs.
  int64_t* allocated_bytes_counter() { return &allocated_bytes_; }

 private:
  static constexpr uint64_t kStripeSalt = 0x2545f4914f6cdd1dull;

  struct StripeHeader {
    uint32_t size;
    uint32_t first_free_word;  // No free row in the words before it.
  };
  int64_t Meta(uint32_t stripe, uint32_t j) const {
    return int64_t{stripe} * rows_max_ + j;
  }
  int64_t WordOf(uint32_t stripe, uint32_t j) const {
    return int64_t{stripe} * words_per_stripe_ + j / 64;
  }

  const int64_t capacity_;
  const int32_t stripes_;
  const int stripe_shift_;  // 63 - log2(stripes).
  const int64_t rows_max_;  // max R_s: the stride of keys_.
  const int64_t words_per_stripe_;
  int64_t allocated_bytes_ = 0;
  // Per stripe; zeroed.
  std::unique_ptr<StripeHeader[], FreeDeleter> headers_;
  // Stripe-major bitmap of used rows; zeroed.
  std::unique_ptr<uint64_t[], FreeDeleter> used_;
  // Stripe-major (s*rows_max + j) keys, valid where used; never filled.
  std::unique_ptr<int64_t[]> keys_;
};

// Zeroed memory for `count` T (calloc: pages the kernel zeroes when first
// touched); nullptr when it cannot be had.
template <typename T>
T* AllocateZeroed(int64_t count) {
  return static_cast<T*>(std::calloc(static_cast<size_t>(count), sizeof(T)));
}

}  // namespace internal

// Per stripe, B >= R_max*4/3 16-byte buckets {key, j+1} in groups of four,
// one cache line each (B a multiple of 4, the array 64-byte aligned); an id
// probes linearly from the first bucket of its home group,
// (low32(hash) * B/4) >> 32; erase by backward shift: no tombstones, no
// rehash, ever. Starting at a line's first bucket keeps nearly every hit in
// one line (at load 0.75 a key's run rarely leaves its group), so a lookup
// loads one line of index before the row's, not two.
//
// Find may run while a writer changes the stripe: every bucket field is
// loaded and stored as a relaxed atomic (std::atomic_ref: a plain mov on
// x86-64 and AArch64), so there is no data race, and a probe stops after B
// buckets even on a torn view. Its answer means something only once the
// caller's seqlock window around Find and the row copy validates; any j it
// returns is below R_s (buckets only ever hold such j), so the copy stays in
// the arena even when it is thrown away.
class OpenAddressingRowIndex : public internal::StripedSlots {
 public:
  // Find needs no lock: it runs in the reader's seqlock window (above).
  static constexpr bool kLockFreeFind = true;

  // INVALID_ARGUMENT for a bad geometry, RESOURCE_EXHAUSTED when the
  // arrays cannot be allocated.
  static absl::StatusOr<std::unique_ptr<OpenAddressingRowIndex>> Create(
      int64_t capacity, int32_t stripes);
  // Every byte Create allocates. REQUIRES: a valid geometry.
  static int64_t MemoryBytes(int64_t capacity, int32_t stripes);

  // Row j of `id` in `stripe`, or -1. Safe beside a writer (see above).
  int64_t Find(uint32_t stripe, int64_t id, uint64_t hash) const {
    const Bucket* buckets = StripeBuckets(stripe);
    uint32_t i = Home(hash);
    for (uint32_t probes = 0; probes < buckets_per_stripe_; ++probes) {
      const uint32_t tag = LoadRelaxed(buckets[i].tag);
      if (tag == 0) return -1;
      if (LoadRelaxed(buckets[i].key) == id) return int64_t{tag} - 1;
      if (++i == buckets_per_stripe_) i = 0;
    }
    return -1;
  }
  // Starts loading the line where Find(stripe, id, hash) begins. Needs no
  // lock.
  void Prefetch(uint32_t stripe, int64_t id, uint64_t hash) const {
    __builtin_prefetch(&StripeBuckets(stripe)[Home(hash)]);
  }

  // Writers: the stripe's writer lock, inside seq.WriteBegin/WriteEnd.
  // Gives `id` the lowest free row and returns it. REQUIRES: id absent,
  // not INT64_MIN; !Full(stripe).
  uint32_t Insert(uint32_t stripe, int64_t id, uint64_t hash);
  // Gives `id` row j (a restore). REQUIRES: id absent, row j free.
  void InsertAt(uint32_t stripe, int64_t id, uint64_t hash, uint32_t j);
  // Removes the key of row j. REQUIRES: row j used.
  void EraseSlot(uint32_t stripe, uint32_t j);

  // INTERNAL naming the first inconsistency. REQUIRES: quiescence.
  absl::Status CheckInvariants() const;

  uint32_t buckets_per_stripe() const { return buckets_per_stripe_; }

 private:
  struct alignas(16) Bucket {
    int64_t key;   // Meaningful only when tag != 0.
    uint32_t tag;  // j + 1; 0 = empty.
    uint32_t unused;
  };

  static constexpr int64_t kLineBytes = 64;
  static constexpr int kBucketsPerLine = kLineBytes / sizeof(Bucket);

  static uint32_t BucketsPerStripe(int64_t capacity, int32_t stripes) {
    const int64_t groups =
        (RowsMax(capacity, stripes) * 4 + 3 * kBucketsPerLine - 1) /
        (3 * kBucketsPerLine);
    return static_cast<uint32_t>(groups * kBucketsPerLine);
  }
  template <typename T>
  static T LoadRelaxed(const T& field) {
    // atomic_ref needs a mutable referent; it is only loaded.
    return std::atomic_ref<T>(const_cast<T&>(field))
        .load(std::memory_order_relaxed);
  }
  template <typename T>
  static void StoreRelaxed(T& field, T value) {
    std::atomic_ref<T>(field).store(value, std::memory_order_relaxed);
  }

  OpenAddressingRowIndex(int64_t capacity, int32_t stripes);

  uint32_t Home(uint64_t hash) const {
    const uint64_t groups = buckets_per_stripe_ / kBucketsPerLine;
    return static_cast<uint32_t>(
               (uint64_t{static_cast<uint32_t>(hash)} * groups) >> 32) *
           kBucketsPerLine;
  }
  int64_t BucketBytes() const {
    return int64_t{stripes()} * buckets_per_stripe_ * int64_t{sizeof(Bucket)};
  }
  Bucket* StripeBuckets(uint32_t stripe) const {
    return &buckets_[int64_t{stripe} * buckets_per_stripe_];
  }
  // Stores {id, j+1} in the first empty bucket from id's home.
  void Place(uint32_t stripe, int64_t id, uint64_t hash, uint32_t j);

  const uint32_t buckets_per_stripe_;
  // Zeroed (empty) memory for the buckets and a line more, and its first
  // 64-byte aligned bucket.
  std::unique_ptr<char[], internal::FreeDeleter> bucket_memory_;
  Bucket* const buckets_;
};

}  // namespace embedding

#endif  // SERVER_CORE_ROW_INDEX_H_
