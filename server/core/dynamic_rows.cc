#include "server/core/dynamic_rows.h"

#include <bit>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

int64_t RowsPerStripe(int64_t capacity, int32_t stripes) {
  return (capacity + stripes - 1) / stripes;
}

}  // namespace

int64_t DynamicRows::MemoryBytes(const DynamicSpec& spec) {
  const int32_t stripes = RowIndex::StripesFor(spec.capacity);
  return RowIndex::MemoryBytes(spec.capacity, stripes) +
         stripes * RowsPerStripe(spec.capacity, stripes) *
             int64_t{sizeof(uint64_t)};
}

absl::StatusOr<std::unique_ptr<DynamicRows>> DynamicRows::Create(
    const DynamicSpec& spec) {
  const int32_t stripes = RowIndex::StripesFor(spec.capacity);
  EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<RowIndex> index,
                             RowIndex::Create(spec.capacity, stripes));
  // Not zero-filled: a touch is written when its row is admitted, and read
  // only while the row is held.
  std::unique_ptr<uint64_t[]> touches(new (
      std::nothrow) uint64_t[stripes * RowsPerStripe(spec.capacity, stripes)]);
  if (touches == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate the row touches of a dynamic table of ",
                     spec.capacity, " rows"));
  }
  return std::unique_ptr<DynamicRows>(
      new DynamicRows(std::move(index), std::move(touches)));
}

DynamicRows::DynamicRows(std::unique_ptr<RowIndex> index,
                         std::unique_ptr<uint64_t[]> touches)
    : index_(std::move(index)),
      stripe_bits_(std::countr_zero(static_cast<uint32_t>(index_->stripes()))),
      rows_per_stripe_(RowsPerStripe(index_->capacity(), index_->stripes())),
      touches_(std::move(touches)) {}

DynamicRows::Admission DynamicRows::Admit(const Place& place, int64_t id,
                                          uint64_t touch) {
  const uint32_t stripe = place.stripe;
  int64_t evicted_id = kReservedId;
  if (index_->Full(stripe)) {
    // The least recently pushed row of the stripe; the first on ties.
    const uint64_t* touches = &touches_[int64_t{stripe} * rows_per_stripe_];
    const int64_t rows = index_->StripeCapacity(stripe);
    int64_t victim = 0;
    for (int64_t j = 1; j < rows; ++j) {
      if (touches[j] < touches[victim]) victim = j;
    }
    evicted_id = index_->KeyAt(stripe, static_cast<uint32_t>(victim));
    index_->EraseSlot(stripe, static_cast<uint32_t>(victim));
  }
  const uint32_t j = index_->Insert(stripe, id, place.hash);
  const int64_t slot = index_->Slot(stripe, j);
  Touch(slot, touch);
  return {slot, evicted_id};
}

DynamicCounts DynamicRows::Counts() const {
  return {.rows_held = rows_held_.load(std::memory_order_relaxed),
          .admissions = admissions_.load(std::memory_order_relaxed),
          .evictions = evictions_.load(std::memory_order_relaxed),
          .expirations = 0,
          .dropped_rows = dropped_rows_.load(std::memory_order_relaxed),
          .absent_rows_looked_up =
              absent_rows_looked_up_.load(std::memory_order_relaxed)};
}

}  // namespace embedding
