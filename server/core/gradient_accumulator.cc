#include "server/core/gradient_accumulator.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <optional>

#include "common/checked_math.h"

namespace embedding {
namespace {

// This thread's accumulator once ForThisThread made it.
thread_local GradientAccumulator* this_thread_accumulator = nullptr;

}  // namespace

void PositionIndex::Reset(size_t max_keys) {
  // At most 2/3 full with max_keys keys: short linear probes.
  const size_t needed = std::max<size_t>(16, max_keys + (max_keys + 1) / 2);
  const size_t capacity = std::bit_ceil(needed);
  entries_.assign(capacity, 0);
  mask_ = capacity - 1;
  shift_ = 64 - std::countr_zero(capacity);
  count_ = 0;
}

int64_t PositionIndex::BytesBound(int64_t max_keys) {
  // The capacity is a power of two below 2 * 1.5 * max_keys + 2 (or 16).
  return CheckedMulAdd(max_keys, 3 * sizeof(uint32_t), 64)
      .value_or(std::numeric_limits<int64_t>::max());
}

void PositionIndex::Free() {
  std::vector<uint32_t>().swap(entries_);
  mask_ = 0;
  shift_ = 64;
  count_ = 0;
}

GradientAccumulator& GradientAccumulator::ForThisThread(int64_t dim,
                                                        size_t expected_rows) {
  thread_local GradientAccumulator accumulator;
  this_thread_accumulator = &accumulator;
  accumulator.dim_ = dim;
  accumulator.index_.Reset(expected_rows);
  accumulator.rows_.clear();
  accumulator.rows_.reserve(expected_rows);
  accumulator.sums_.clear();
  accumulator.sums_.reserve(expected_rows);
  accumulator.owned_index_.clear();
  accumulator.owned_index_.reserve(expected_rows);
  // Owned sums grow only as rows repeat: a push of distinct rows needs none.
  accumulator.owned_size_ = 0;
  accumulator.expected_floats_ = expected_rows * dim;
  return accumulator;
}

float* GradientAccumulator::Own(uint32_t slot) {
  const size_t needed = owned_size_ + dim_;
  if (needed > owned_capacity_) {
    // Doubling, but never past what ForThisThread expected (BytesBound).
    size_t capacity = std::max(needed, 2 * owned_capacity_);
    if (needed <= expected_floats_) {
      capacity = std::min(capacity, expected_floats_);
    }
    std::unique_ptr<float[]> grown =
        std::make_unique_for_overwrite<float[]>(capacity);
    std::copy(owned_.get(), owned_.get() + owned_size_, grown.get());
    owned_ = std::move(grown);
    owned_capacity_ = capacity;
    for (uint32_t s = 0; s < sums_.size(); ++s) {
      if (owned_index_[s] != kBorrowed) sums_[s] = OwnedSum(s);
    }
  }
  owned_index_[slot] = static_cast<uint32_t>(owned_size_ / dim_);
  owned_size_ = needed;
  float* sum = OwnedSum(slot);
  sums_[slot] = sum;
  return sum;
}

int64_t GradientAccumulator::BytesBound(int64_t rows, int64_t dim) {
  // The index, then rows (8 bytes), sum pointers (8), owned indices (4,
  // then groups), counts (4, then the slots by group) and owned sums (4 per
  // float) of at most `rows` distinct rows.
  std::optional<int64_t> floats = CheckedMul(rows, dim);
  std::optional<int64_t> bytes;
  if (floats.has_value()) {
    bytes =
        CheckedMulAdd(*floats, sizeof(float), PositionIndex::BytesBound(rows));
  }
  if (bytes.has_value()) {
    bytes = CheckedMulAdd(
        rows, sizeof(int64_t) + sizeof(const float*) + 2 * sizeof(uint32_t),
        *bytes);
  }
  return bytes.value_or(std::numeric_limits<int64_t>::max());
}

int64_t GradientAccumulator::RetainedBytesOnThisThread() {
  return this_thread_accumulator == nullptr
             ? 0
             : this_thread_accumulator->allocated_bytes();
}

int64_t GradientAccumulator::allocated_bytes() const {
  return index_.allocated_bytes() +
         static_cast<int64_t>(rows_.capacity() * sizeof(int64_t) +
                              sums_.capacity() * sizeof(const float*) +
                              owned_index_.capacity() * sizeof(uint32_t) +
                              owned_capacity_ * sizeof(float) +
                              counts_.capacity() * sizeof(uint32_t));
}

void GradientAccumulator::ReleaseIfLargeOnThisThread() {
  GradientAccumulator* accumulator = this_thread_accumulator;
  if (accumulator == nullptr ||
      accumulator->allocated_bytes() <= kMaxRetainedBytes) {
    return;
  }
  accumulator->index_.Free();
  std::vector<int64_t>().swap(accumulator->rows_);
  std::vector<const float*>().swap(accumulator->sums_);
  std::vector<uint32_t>().swap(accumulator->owned_index_);
  accumulator->owned_.reset();
  accumulator->owned_size_ = 0;
  accumulator->owned_capacity_ = 0;
  std::vector<uint32_t>().swap(accumulator->counts_);
}

PushScratch::~PushScratch() {
  GradientAccumulator::ReleaseIfLargeOnThisThread();
}

void GradientAccumulator::ScaleByFrequency(absl::Span<const int64_t> indices) {
  counts_.assign(rows_.size(), 0);
  const auto row_at = [this](uint32_t slot) { return rows_[slot]; };
  for (int64_t index : indices) {
    // Rows the push skipped (the padding row) have no slot and no count.
    const uint32_t slot = index_.Find(index, row_at);
    if (slot != PositionIndex::kNone) ++counts_[slot];
  }
  for (uint32_t slot = 0; slot < rows_.size(); ++slot) {
    // x / 1 is x: a row that came once keeps its sum, borrowed or not.
    if (counts_[slot] == 1) continue;
    const float count = static_cast<float>(counts_[slot]);
    const float* source = sums_[slot];  // The caller's row if borrowed.
    float* sum = owned_index_[slot] == kBorrowed ? Own(slot) : OwnedSum(slot);
    for (int64_t d = 0; d < dim_; ++d) sum[d] = source[d] / count;
  }
}

}  // namespace embedding
