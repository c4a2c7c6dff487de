#include "server/core/dynamic_rows.h"

#include <algorithm>
#include <bit>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/hash64.h"
#include "common/status_macros.h"
#include "server/core/huge_pages.h"

namespace embedding {
namespace {

// Salts the sketch's hash apart from the index's and the routing's.
constexpr uint64_t kSketchSalt = 0x6a09e667f3bcc909ull;

struct Shape {
  int32_t stripes;
  int64_t rows_per_stripe;  // The largest stripe's capacity.
  int64_t RowBytes(const DynamicSpec& spec) const {
    return int64_t{sizeof(uint64_t)} +
           (spec.eviction == DynamicSpec::Eviction::kLfu ? 4 : 0);
  }
};

Shape ShapeOf(const DynamicSpec& spec) {
  const int32_t stripes = DynamicRows::RowIndex::StripesFor(spec.capacity);
  return {stripes, (spec.capacity + stripes - 1) / stripes};
}

// Zeroed `count` T when `wanted`, on huge pages where the kernel has them:
// like the rows, these are read and written at random (a push reads its
// rows' last push), and with 4 KiB pages each access would also miss the
// TLB.
template <typename T>
std::unique_ptr<T[], internal::FreeDeleter> AllocateIf(bool wanted,
                                                       int64_t count) {
  if (!wanted) return nullptr;
  T* data = internal::AllocateZeroed<T>(count);
  if (data != nullptr) AdviseHugePages(data, count * int64_t{sizeof(T)});
  return std::unique_ptr<T[], internal::FreeDeleter>(data);
}

}  // namespace

int64_t DynamicRows::AdmissionCounters(const DynamicSpec& spec) {
  if (spec.admit_after <= 1) return 0;
  const Shape shape = ShapeOf(spec);
  return int64_t{shape.stripes} * kSketchRows * kSketchWidthPerRow *
         shape.rows_per_stripe;
}

int64_t DynamicRows::AdmissionStripes(const DynamicSpec& spec) {
  return spec.admit_after <= 1 ? 0 : ShapeOf(spec).stripes;
}

int64_t DynamicRows::MemoryBytes(const DynamicSpec& spec) {
  const Shape shape = ShapeOf(spec);
  const int64_t rows = int64_t{shape.stripes} * shape.rows_per_stripe;
  return RowIndex::MemoryBytes(spec.capacity, shape.stripes) +
         rows * shape.RowBytes(spec) + AdmissionCounters(spec) +
         AdmissionStripes(spec) * int64_t{sizeof(int64_t)};
}

absl::StatusOr<std::unique_ptr<DynamicRows>> DynamicRows::Create(
    const DynamicSpec& spec) {
  const Shape shape = ShapeOf(spec);
  EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<RowIndex> index,
                             RowIndex::Create(spec.capacity, shape.stripes));
  std::unique_ptr<DynamicRows> rows(new (std::nothrow)
                                        DynamicRows(spec, std::move(index)));
  if (rows == nullptr || !rows->Allocated()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate the row metadata of a dynamic table of ",
                     spec.capacity, " rows (", MemoryBytes(spec), " bytes)"));
  }
  return rows;
}

DynamicRows::DynamicRows(const DynamicSpec& spec,
                         std::unique_ptr<RowIndex> index)
    : index_(std::move(index)),
      stripe_bits_(std::countr_zero(static_cast<uint32_t>(index_->stripes()))),
      rows_per_stripe_(ShapeOf(spec).rows_per_stripe),
      admit_after_(spec.admit_after),
      lfu_(spec.eviction == DynamicSpec::Eviction::kLfu),
      ttl_pushes_(spec.ttl_pushes),
      sketch_width_(kSketchWidthPerRow * rows_per_stripe_),
      touches_(AllocateIf<uint64_t>(true, stripes() * rows_per_stripe_)),
      push_counts_(AllocateIf<uint32_t>(lfu_, stripes() * rows_per_stripe_)),
      sketch_(AllocateIf<uint8_t>(admit_after_ > 1,
                                  stripes() * kSketchRows * sketch_width_)),
      sketch_counts_(AllocateIf<int64_t>(admit_after_ > 1, stripes())) {}

bool DynamicRows::Allocated() const {
  return touches_ != nullptr && (!lfu_ || push_counts_ != nullptr) &&
         (admit_after_ <= 1 || (sketch_ != nullptr && sketch_counts_));
}

void DynamicRows::Touch(int64_t slot, uint64_t touch) {
  const int64_t meta = MetaOf(slot);
  // Pushes run concurrently and take their steps as they begin, so a push
  // may reach a row after a later step did. Under a TTL the row keeps the
  // latest, or a row pushed by every push could look idle and expire (the
  // push has just loaded the touch to judge expiry). Otherwise only the
  // eviction order reads it, and steps in flight together are close, so a
  // store does (a load here would wait on memory: 10-15% of a push).
  std::atomic_ref<uint64_t> last(touches_[meta]);
  if (!ttl_pushes_.has_value() ||
      touch > last.load(std::memory_order_relaxed)) {
    last.store(touch, std::memory_order_relaxed);
  }
  if (lfu_ && push_counts_[meta] != UINT32_MAX) ++push_counts_[meta];
}

uint8_t& DynamicRows::SketchCounter(const Place& place, int64_t id,
                                    int k) const {
  // Double hashing: counter k at a + k * b, reduced to the row's width.
  const uint64_t hash = SplitMix64(static_cast<uint64_t>(id) ^ kSketchSalt);
  const uint32_t a = static_cast<uint32_t>(hash);
  const uint32_t b = static_cast<uint32_t>(hash >> 32) | 1;
  const uint32_t mixed = a + static_cast<uint32_t>(k) * b;
  const int64_t column = static_cast<int64_t>(
      (uint64_t{mixed} * static_cast<uint64_t>(sketch_width_)) >> 32);
  return sketch_[(int64_t{place.stripe} * kSketchRows + k) * sketch_width_ +
                 column];
}

bool DynamicRows::Admits(const Place& place, int64_t id) {
  if (admit_after_ <= 1) return true;
  uint8_t* counters[kSketchRows];
  uint8_t estimate = UINT8_MAX;
  for (int k = 0; k < kSketchRows; ++k) {
    counters[k] = &SketchCounter(place, id, k);
    estimate = std::min(estimate, *counters[k]);
  }
  // This push is the id's estimate + 1st.
  if (estimate + 1 >= static_cast<int>(admit_after_)) return true;
  // Conservative update: only the counters at the minimum grow.
  for (uint8_t* counter : counters) {
    if (*counter == estimate) ++*counter;
  }
  // Aging: the stripe's counts halve every 2 * R counts, so that "a pushes"
  // means a pushes recently.
  int64_t& counted = sketch_counts_[place.stripe];
  if (++counted >= 2 * rows_per_stripe_) {
    counted = 0;
    uint8_t* row =
        &sketch_[int64_t{place.stripe} * kSketchRows * sketch_width_];
    for (int64_t c = 0; c < kSketchRows * sketch_width_; ++c) row[c] >>= 1;
  }
  return false;
}

template <typename Kept>
uint32_t DynamicRows::Victim(uint32_t stripe, int64_t pushes,
                             const Kept& kept) const {
  const int64_t base = int64_t{stripe} * rows_per_stripe_;
  const int64_t rows = index_->StripeCapacity(stripe);
  int64_t first = 0;
  while (kept(first)) ++first;
  // The least recent row is the first to have expired: under LRU it is the
  // victim either way.
  int64_t least_recent = first;
  for (int64_t j = first + 1; j < rows; ++j) {
    if (!kept(j) && LoadTouch(base + j) < LoadTouch(base + least_recent)) {
      least_recent = j;
    }
  }
  const bool expired =
      ttl_pushes_.has_value() &&
      pushes - LastPush(LoadTouch(base + least_recent)) >= *ttl_pushes_;
  if (!lfu_ || expired) return static_cast<uint32_t>(least_recent);
  int64_t victim = first;
  for (int64_t j = first + 1; j < rows; ++j) {
    if (kept(j)) continue;
    const uint32_t count = push_counts_[base + j];
    const uint32_t victim_count = push_counts_[base + victim];
    if (count < victim_count ||
        (count == victim_count &&
         LoadTouch(base + j) < LoadTouch(base + victim))) {
      victim = j;
    }
  }
  return static_cast<uint32_t>(victim);
}

template <typename Kept>
int64_t DynamicRows::AdmissionSlotKeeping(const Place& place, int64_t id,
                                          int64_t pushes,
                                          const Kept& kept) const {
  if (const int64_t own = Find(place, id); own >= 0) return own;  // Expired.
  const uint32_t stripe = place.stripe;
  const uint32_t j = index_->Full(stripe) ? Victim(stripe, pushes, kept)
                                          : index_->LowestFreeRow(stripe);
  return index_->Slot(stripe, j);
}

int64_t DynamicRows::AdmissionSlot(const Place& place, int64_t id,
                                   int64_t pushes) const {
  return AdmissionSlotKeeping(place, id, pushes,
                              [](int64_t /*j*/) { return false; });
}

int64_t DynamicRows::AdmissionSlot(
    const Place& place, int64_t id, int64_t pushes,
    const absl::flat_hash_set<int64_t>& kept) const {
  return AdmissionSlotKeeping(place, id, pushes, [&](int64_t j) {
    return kept.contains(index_->Slot(place.stripe, static_cast<uint32_t>(j)));
  });
}

DynamicRows::Replaced DynamicRows::Occupy(const Place& place, int64_t id,
                                          int64_t slot, uint64_t touch,
                                          int64_t pushes) {
  const uint32_t stripe = place.stripe;
  const uint32_t j = RowOfSlot(slot);
  Replaced replaced;
  const int64_t held = index_->KeyAt(stripe, j);
  if (held != kReservedId) {
    replaced.expired = Expired(slot, pushes);
    if (held != id) {
      replaced.id = held;
      index_->EraseSlot(stripe, j);
    }
  }
  if (held != id) index_->InsertAt(stripe, id, place.hash, j);
  const int64_t meta = MetaOf(slot);
  if (lfu_) push_counts_[meta] = 0;
  Touch(slot, touch);
  return replaced;
}

void DynamicRows::Count(int64_t admissions, int64_t evictions,
                        int64_t expirations, int64_t dropped_rows) {
  admissions_.fetch_add(admissions, std::memory_order_relaxed);
  evictions_.fetch_add(evictions, std::memory_order_relaxed);
  expirations_.fetch_add(expirations, std::memory_order_relaxed);
  dropped_rows_.fetch_add(dropped_rows, std::memory_order_relaxed);
  // Re-admissions of expired rows and reclaims hold no more rows.
  rows_held_.fetch_add(admissions - evictions - expirations,
                       std::memory_order_relaxed);
}

DynamicRows::Usage DynamicRows::UsageAt(int64_t slot) const {
  const int64_t meta = MetaOf(slot);
  return {.touch = LoadTouch(meta),
          .push_count = lfu_ ? push_counts_[meta] : 0};
}

DynamicRows::Admission DynamicRows::ExportAdmission() const {
  Admission admission;
  if (admit_after_ <= 1) return admission;
  admission.counters.assign(sketch_.get(), sketch_.get() + SketchCounters());
  admission.counts.assign(sketch_counts_.get(),
                          sketch_counts_.get() + stripes());
  return admission;
}

absl::Status DynamicRows::ImportAdmission(const Admission& admission) {
  const int64_t counters = SketchCounters();
  const int64_t counts = admit_after_ <= 1 ? 0 : stripes();
  if (static_cast<int64_t>(admission.counters.size()) != counters ||
      static_cast<int64_t>(admission.counts.size()) != counts) {
    return absl::InvalidArgumentError(absl::StrCat(
        "admission sketch of ", admission.counters.size(), " counters and ",
        admission.counts.size(), " stripe counts; the table's has ", counters,
        " and ", counts));
  }
  for (int64_t count : admission.counts) {
    if (count < 0 || count >= 2 * rows_per_stripe_) {
      return absl::InvalidArgumentError(
          absl::StrCat("admission count ", count, " is outside [0, ",
                       2 * rows_per_stripe_, ")"));
    }
  }
  std::copy(admission.counters.begin(), admission.counters.end(),
            sketch_.get());
  std::copy(admission.counts.begin(), admission.counts.end(),
            sketch_counts_.get());
  return absl::OkStatus();
}

absl::Status DynamicRows::CheckRestore(int64_t slot, int64_t id) const {
  const uint32_t stripe = StripeOfSlot(slot);
  if (slot < 0 || slot >= SlotBound() ||
      RowOfSlot(slot) >= index_->StripeCapacity(stripe)) {
    return absl::InvalidArgumentError(
        absl::StrCat("slot ", slot, " is not one of the table's ",
                     index_->capacity(), " slots"));
  }
  if (id != kReservedId && PlaceOf(id).stripe != stripe) {
    return absl::InvalidArgumentError(
        absl::StrCat("id ", id, " belongs to stripe ", PlaceOf(id).stripe,
                     ", not to slot ", slot, "'s stripe ", stripe));
  }
  return absl::OkStatus();
}

void DynamicRows::Restore(int64_t slot, int64_t id, const Usage& usage) {
  const uint32_t stripe = StripeOfSlot(slot);
  const uint32_t j = RowOfSlot(slot);
  const int64_t held = index_->KeyAt(stripe, j);
  if (held != id) {
    if (held != kReservedId) index_->EraseSlot(stripe, j);
    if (id != kReservedId) {
      const Place place = PlaceOf(id);
      // A later checkpoint moved it: it leaves its old slot, which the same
      // checkpoint gives to another id.
      if (const int64_t old = Find(place, id); old >= 0) {
        index_->EraseSlot(stripe, RowOfSlot(old));
      }
      index_->InsertAt(stripe, id, place.hash, j);
    }
  }
  SetUsage(slot, usage);
}

void DynamicRows::SetUsage(int64_t slot, const Usage& usage) {
  const int64_t meta = MetaOf(slot);
  touches_[meta] = usage.touch;
  if (lfu_) push_counts_[meta] = usage.push_count;
}

absl::StatusOr<int64_t> DynamicRows::RestoreById(int64_t id,
                                                 const Usage& usage) {
  const Place place = PlaceOf(id);
  int64_t slot = Find(place, id);
  if (slot < 0) {
    if (index_->Full(place.stripe)) {
      return absl::FailedPreconditionError(
          absl::StrCat("id ", id, " does not fit: its stripe ", place.stripe,
                       " already holds ", index_->StripeCapacity(place.stripe),
                       " rows (capacity ", index_->capacity(), ")"));
    }
    const uint32_t j = index_->LowestFreeRow(place.stripe);
    index_->InsertAt(place.stripe, id, place.hash, j);
    slot = index_->Slot(place.stripe, j);
  }
  SetUsage(slot, usage);
  return slot;
}

void DynamicRows::CountRestoredRows() {
  int64_t held = 0;
  for (uint32_t s = 0; s < static_cast<uint32_t>(stripes()); ++s) {
    held += index_->Size(s);
  }
  rows_held_.store(held, std::memory_order_relaxed);
}

DynamicCounts DynamicRows::Counts() const {
  return {.rows_held = rows_held_.load(std::memory_order_relaxed),
          .admissions = admissions_.load(std::memory_order_relaxed),
          .evictions = evictions_.load(std::memory_order_relaxed),
          .expirations = expirations_.load(std::memory_order_relaxed),
          .dropped_rows = dropped_rows_.load(std::memory_order_relaxed),
          .absent_rows_looked_up =
              absent_rows_looked_up_.load(std::memory_order_relaxed)};
}

}  // namespace embedding
