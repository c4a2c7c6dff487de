// GradientAccumulator: the coalesce step of a push. It sums the gradient of
// each distinct row once, so that the optimizer then steps each touched row
// exactly once, under that row's lock (the "fused coalesce + optimizer"
// push of DESIGN.md): a batch that names a row many times costs one locked
// update, not many.
//
//   PushScratch scratch;
//   GradientAccumulator& gradient = scratch.Start(dim, indices.size());
//   for (size_t i = 0; i < indices.size(); ++i) {
//     gradient.Add(indices[i], &grad[i * dim], 1.0f);
//   }
//   if (scale_grad_by_freq) gradient.ScaleByFrequency(indices);
//   for (size_t s = 0; s < gradient.size(); ++s) {
//     Step(gradient.row(s), gradient.sum(s));
//   }
//
// A row's sum refers to the caller's gradient until the row comes a second
// time (or is scaled): only repeated rows are copied and summed, in the
// order they were added, so sums are bit for bit those of summing from zeros.
//
// Memory: a push of n indices of dim floats allocates at most
// GradientAccumulator::BytesBound(n, dim) = 36 n + 4 n dim bytes (+ 64) of
// scratch. A thread keeps its scratch between pushes only up to
// kMaxRetainedBytes; past that it is freed when the push ends.
//
// Thread-compatible: one push uses one accumulator; ForThisThread gives each
// thread its own.
#ifndef SERVER_CORE_GRADIENT_ACCUMULATOR_H_
#define SERVER_CORE_GRADIENT_ACCUMULATOR_H_

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/types/span.h"

namespace embedding {

// An open-addressing hash set of int64 keys that the caller stores in an
// array of its own: the index holds only positions into that array (4 bytes
// an entry), so n keys cost at most BytesBound(n) = 12 n + 64 bytes. Keys
// are found through `key_at(position)`. Thread-compatible.
class PositionIndex {
 public:
  // Empties the index and sizes it for up to `max_keys` keys (it grows if
  // more come). REQUIRES: max_keys < 2^31.
  void Reset(size_t max_keys);

  // The position recorded for `key`; when there is none, records
  // `new_position` (which key_at need not know yet) and returns it.
  template <typename KeyAt>
  uint32_t FindOrInsert(int64_t key, uint32_t new_position, KeyAt&& key_at);

  // Whether a position with key_at(position) == key is recorded.
  template <typename KeyAt>
  bool Contains(int64_t key, KeyAt&& key_at) const;

  // The position of `key`, or kNone.
  template <typename KeyAt>
  uint32_t Find(int64_t key, KeyAt&& key_at) const;
  static constexpr uint32_t kNone = ~uint32_t{0};

  // Bytes held, and the most Reset(max_keys) and its inserts allocate.
  int64_t allocated_bytes() const {
    return static_cast<int64_t>(entries_.capacity() * sizeof(uint32_t));
  }
  static int64_t BytesBound(int64_t max_keys);

  // Frees the memory; Reset before the next use.
  void Free();

 private:
  // The slot where a probe for `key` starts.
  size_t Home(int64_t key) const {
    return static_cast<size_t>(
        (static_cast<uint64_t>(key) * 0x9e3779b97f4a7c15ull) >> shift_);
  }
  // Doubles the capacity, re-inserting every position.
  template <typename KeyAt>
  void Grow(KeyAt&& key_at);

  // position + 1 of the key probed here; 0 when empty. A power of two long,
  // at most 2/3 full.
  std::vector<uint32_t> entries_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t count_ = 0;
};

class GradientAccumulator {
 public:
  // Bytes of scratch a thread keeps between pushes.
  static constexpr int64_t kMaxRetainedBytes = int64_t{1} << 20;

  // This thread's accumulator for rows of `dim` floats and up to
  // `expected_rows` distinct rows, emptied. Its buffers stay allocated
  // between pushes (up to kMaxRetainedBytes, see PushScratch), so a steady
  // stream of small pushes allocates (and page-faults) nothing. May throw
  // std::bad_alloc.
  static GradientAccumulator& ForThisThread(int64_t dim, size_t expected_rows);

  // The most scratch one push of `rows` indices of `dim` floats allocates;
  // INT64_MAX when that overflows.
  static int64_t BytesBound(int64_t rows, int64_t dim);

  // Bytes of scratch this thread's accumulator holds now (a test hook, and
  // what a thread keeps between pushes).
  static int64_t RetainedBytesOnThisThread();

  GradientAccumulator(const GradientAccumulator&) = delete;
  GradientAccumulator& operator=(const GradientAccumulator&) = delete;

  // Adds scale * grad[0, dim) to the sum of `row`. A row's first gradient
  // (scale 1) is not copied: the sum refers to `grad` until the row comes
  // again, so REQUIRES: grad[0, dim) stays valid and unchanged while this
  // accumulator is in use. Inline: it runs once per index of every push.
  void Add(int64_t row, const float* grad, float scale) {
    const uint32_t slot = SlotOf(row);
    if (slot < rows_.size()) {
      float* sum = Owned(slot);
      for (int64_t d = 0; d < dim_; ++d) sum[d] += scale * grad[d];
      return;
    }
    rows_.push_back(row);
    // 0 + 1 * g is g, bit for bit, except that -0 becomes +0: a row holding
    // -0 is copied so that the sum is exactly what summing from zeros gives.
    if (scale == 1.0f && !HasNegativeZero(grad)) {
      sums_.push_back(grad);
      owned_index_.push_back(kBorrowed);
      return;
    }
    float* sum = NewOwned();
    for (int64_t d = 0; d < dim_; ++d) sum[d] = 0.0f + scale * grad[d];
  }

  // Adds `value` to one column of the sum of `row`.
  void AddElement(int64_t row, int64_t column, float value) {
    const uint32_t slot = SlotOf(row);
    float* sum = nullptr;
    if (slot < rows_.size()) {
      sum = Owned(slot);
    } else {
      rows_.push_back(row);
      sum = NewOwned();
      std::fill(sum, sum + dim_, 0.0f);
    }
    sum[column] += value;
  }

  // Divides each row's sum by the number of times the row occurs in
  // `indices` (the batch's), as scale_grad_by_freq does. REQUIRES: every
  // accumulated row occurs in `indices`.
  void ScaleByFrequency(absl::Span<const int64_t> indices);

  // The slots ordered by group_of(row(slot)), a uint32_t < `groups`; slots
  // of one group in the order they came. group(slot) then returns a slot's
  // group. Two passes, no comparisons: a push groups its rows by lock
  // stripe with it. It ends the accumulation: it reuses the scratch that
  // only Add, AddElement and ScaleByFrequency need (so the bound does not
  // grow), and none of them may follow until the next ForThisThread; the
  // span is valid until then. REQUIRES: groups <= kMaxGroups.
  template <typename GroupOf>
  absl::Span<const uint32_t> SlotsByGroup(uint32_t groups, GroupOf&& group_of);
  uint32_t group(size_t slot) const { return owned_index_[slot]; }
  // A dynamic table's lock stripes (row_index.h) are the most groups.
  static constexpr uint32_t kMaxGroups = 65536;

  // Distinct rows accumulated, in the order they first came.
  size_t size() const { return rows_.size(); }
  int64_t row(size_t slot) const { return rows_[slot]; }
  // The `dim` summed floats of the row in `slot`.
  const float* sum(size_t slot) const { return sums_[slot]; }

  // Bytes its buffers hold.
  int64_t allocated_bytes() const;

  // Frees every buffer of this thread's accumulator when they hold more
  // than kMaxRetainedBytes.
  static void ReleaseIfLargeOnThisThread();

 private:
  // owned_index_ of a slot whose sum is the caller's gradient row.
  static constexpr uint32_t kBorrowed = ~uint32_t{0};

  GradientAccumulator() = default;

  // The slot of `row`; rows_.size() (not yet pushed) when the row is new.
  uint32_t SlotOf(int64_t row) {
    return index_.FindOrInsert(
        row, static_cast<uint32_t>(rows_.size()),
        [this](uint32_t position) { return rows_[position]; });
  }

  bool HasNegativeZero(const float* grad) const {
    bool found = false;
    for (int64_t d = 0; d < dim_; ++d) {
      found |= std::bit_cast<uint32_t>(grad[d]) == 0x80000000u;
    }
    return found;
  }

  // The writable sum of an existing slot: a borrowed one is copied first.
  float* Owned(uint32_t slot) {
    if (owned_index_[slot] != kBorrowed) return OwnedSum(slot);
    const float* borrowed = sums_[slot];
    float* sum = Own(slot);
    std::copy(borrowed, borrowed + dim_, sum);
    return sum;
  }
  // The owned floats of a slot that has them.
  float* OwnedSum(uint32_t slot) {
    return &owned_[size_t{owned_index_[slot]} * dim_];
  }

  // Appends the slot of the row just pushed with `dim` owned floats, unset.
  float* NewOwned() {
    sums_.push_back(nullptr);
    owned_index_.push_back(kBorrowed);
    return Own(static_cast<uint32_t>(rows_.size() - 1));
  }

  // Gives `slot` `dim` owned floats, unset, and points its sum at them.
  float* Own(uint32_t slot);

  int64_t dim_ = 0;
  // Owned floats ForThisThread expects to need at most: how far owned_ grows
  // at once.
  size_t expected_floats_ = 0;
  PositionIndex index_;             // Row -> slot.
  std::vector<int64_t> rows_;       // Slot -> row.
  std::vector<const float*> sums_;  // Slot -> dim floats (caller's or owned).
  // Slot -> which dim floats of owned_ are its sum, or kBorrowed.
  std::vector<uint32_t> owned_index_;
  // Sums of rows that came twice or were scaled, dim floats each; not
  // zero-filled, as every use writes its floats first.
  std::unique_ptr<float[]> owned_;
  size_t owned_size_ = 0;      // Floats in use.
  size_t owned_capacity_ = 0;  // Floats allocated.
  // Slot -> occurrences (ScaleByFrequency); then the slots by group
  // (SlotsByGroup, which also turns owned_index_ into slot -> group).
  std::vector<uint32_t> counts_;
  // Per group, where its slots start in counts_ (SlotsByGroup): kept by the
  // thread, at most 4 * (kMaxGroups + 1) bytes.
  std::vector<uint32_t> group_starts_;
};

// This thread's accumulator for one push: when the push ends (this goes out
// of scope), its buffers are freed if they hold more than
// GradientAccumulator::kMaxRetainedBytes, so no thread keeps a large push's
// scratch. Start may throw std::bad_alloc; the scratch is trimmed then too.
// Thread-compatible.
class PushScratch {
 public:
  PushScratch() = default;
  ~PushScratch();
  PushScratch(const PushScratch&) = delete;
  PushScratch& operator=(const PushScratch&) = delete;

  // GradientAccumulator::ForThisThread(dim, expected_rows).
  GradientAccumulator& Start(int64_t dim, size_t expected_rows) {
    return GradientAccumulator::ForThisThread(dim, expected_rows);
  }
};

// Implementation.

template <typename GroupOf>
absl::Span<const uint32_t> GradientAccumulator::SlotsByGroup(
    uint32_t groups, GroupOf&& group_of) {
  const size_t slots = rows_.size();
  std::vector<uint32_t>& slot_groups = owned_index_;  // Sums are in sums_.
  std::vector<uint32_t>& grouped = counts_;
  grouped.resize(slots);
  group_starts_.assign(groups + 1, 0u);
  for (size_t slot = 0; slot < slots; ++slot) {
    const uint32_t group = group_of(rows_[slot]);
    slot_groups[slot] = group;
    ++group_starts_[group + 1];
  }
  for (uint32_t g = 1; g <= groups; ++g) {
    group_starts_[g] += group_starts_[g - 1];
  }
  for (size_t slot = 0; slot < slots; ++slot) {
    grouped[group_starts_[slot_groups[slot]]++] = static_cast<uint32_t>(slot);
  }
  return grouped;
}

template <typename KeyAt>
uint32_t PositionIndex::FindOrInsert(int64_t key, uint32_t new_position,
                                     KeyAt&& key_at) {
  if ((count_ + 1) * 3 > entries_.size() * 2) Grow(key_at);
  for (size_t i = Home(key);; i = (i + 1) & mask_) {
    const uint32_t entry = entries_[i];
    if (entry == 0) {
      entries_[i] = new_position + 1;
      ++count_;
      return new_position;
    }
    if (key_at(entry - 1) == key) return entry - 1;
  }
}

template <typename KeyAt>
uint32_t PositionIndex::Find(int64_t key, KeyAt&& key_at) const {
  if (entries_.empty()) return kNone;
  for (size_t i = Home(key);; i = (i + 1) & mask_) {
    const uint32_t entry = entries_[i];
    if (entry == 0) return kNone;
    if (key_at(entry - 1) == key) return entry - 1;
  }
}

template <typename KeyAt>
bool PositionIndex::Contains(int64_t key, KeyAt&& key_at) const {
  return Find(key, key_at) != kNone;
}

template <typename KeyAt>
void PositionIndex::Grow(KeyAt&& key_at) {
  std::vector<uint32_t> old;
  old.swap(entries_);
  Reset(old.empty() ? 0 : old.size());
  for (uint32_t entry : old) {
    if (entry == 0) continue;
    size_t i = Home(key_at(entry - 1));
    while (entries_[i] != 0) i = (i + 1) & mask_;
    entries_[i] = entry;
    ++count_;
  }
}

}  // namespace embedding

#endif  // SERVER_CORE_GRADIENT_ACCUMULATOR_H_
