#include "server/core/row_index.h"

#include <algorithm>
#include <bit>
#include <new>

#include "absl/strings/str_cat.h"
#include "server/core/huge_pages.h"

namespace embedding {
namespace internal {

int32_t StripedSlots::StripesFor(int64_t capacity) {
  const int64_t target = capacity / kRowsPerStripe;
  int32_t stripes = 1;
  while (stripes < kMaxStripes && int64_t{stripes} * 2 <= target) stripes *= 2;
  return stripes;
}

absl::Status StripedSlots::ValidateGeometry(int64_t capacity, int32_t stripes) {
  if (capacity < 1 || capacity > kMaxCapacity) {
    return absl::InvalidArgumentError(absl::StrCat("row index capacity ",
                                                   capacity, " is outside [1, ",
                                                   kMaxCapacity, "]"));
  }
  if (stripes < 1 || stripes > kMaxStripes ||
      !std::has_single_bit(static_cast<uint32_t>(stripes))) {
    return absl::InvalidArgumentError(
        absl::StrCat("row index stripes ", stripes,
                     " is not a power of two in [1, ", kMaxStripes, "]"));
  }
  return absl::OkStatus();
}

int64_t StripedSlots::SlotsMemoryBytes(int64_t capacity, int32_t stripes) {
  const int64_t rows_max = RowsMax(capacity, stripes);
  const int64_t words = (rows_max + 63) / 64;
  return stripes *
         (int64_t{sizeof(StripeHeader)} + words * int64_t{sizeof(uint64_t)} +
          rows_max * int64_t{sizeof(int64_t)});
}

StripedSlots::StripedSlots(int64_t capacity, int32_t stripes)
    : capacity_(capacity),
      stripes_(stripes),
      stripe_shift_(63 - std::countr_zero(static_cast<uint32_t>(stripes))),
      rows_max_(RowsMax(capacity, stripes)),
      words_per_stripe_((rows_max_ + 63) / 64),
      headers_(AllocateZeroed<StripeHeader>(stripes)),
      used_(AllocateZeroed<uint64_t>(stripes * words_per_stripe_)),
      keys_(new (std::nothrow) int64_t[stripes * rows_max_]) {
  allocated_bytes_ = SlotsMemoryBytes(capacity, stripes);
}

bool StripedSlots::ok() const {
  return headers_ != nullptr && used_ != nullptr && keys_ != nullptr;
}

uint32_t StripedSlots::LowestFreeRow(uint32_t stripe) const {
  const uint64_t* words = &used_[int64_t{stripe} * words_per_stripe_];
  // A free row exists below R_s, so the lowest free bit is one.
  uint32_t word = headers_[stripe].first_free_word;
  while (words[word] == ~uint64_t{0}) ++word;
  return word * 64 + std::countr_one(words[word]);
}

uint32_t StripedSlots::TakeFreeRow(uint32_t stripe, int64_t id) {
  const uint32_t j = LowestFreeRow(stripe);
  headers_[stripe].first_free_word = j / 64;
  TakeRow(stripe, j, id);
  return j;
}

void StripedSlots::TakeRow(uint32_t stripe, uint32_t j, int64_t id) {
  used_[WordOf(stripe, j)] |= uint64_t{1} << (j % 64);
  keys_[Meta(stripe, j)] = id;
  ++headers_[stripe].size;
}

int64_t StripedSlots::FreeRow(uint32_t stripe, uint32_t j) {
  StripeHeader& header = headers_[stripe];
  used_[WordOf(stripe, j)] &= ~(uint64_t{1} << (j % 64));
  header.first_free_word = std::min(header.first_free_word, j / 64);
  --header.size;
  return keys_[Meta(stripe, j)];
}

absl::Status StripedSlots::CheckSlots(
    const std::function<int64_t(uint32_t, int64_t, uint64_t)>& find) const {
  for (uint32_t s = 0; s < static_cast<uint32_t>(stripes_); ++s) {
    const int64_t rows = StripeCapacity(s);
    int64_t used = 0;
    for (int64_t j = 0; j < words_per_stripe_ * 64; ++j) {
      if (!Used(s, static_cast<uint32_t>(j))) continue;
      ++used;
      const int64_t key = keys_[Meta(s, static_cast<uint32_t>(j))];
      const uint64_t hash = Hash(key);
      if (j >= rows || key == kNoKey || StripeOf(hash) != s) {
        return absl::InternalError(
            absl::StrCat("stripe ", s, " row ", j, " of ", rows, " holds key ",
                         key, " of stripe ", StripeOf(hash)));
      }
      if (const int64_t found = find(s, key, hash); found != j) {
        return absl::InternalError(
            absl::StrCat("stripe ", s, " row ", j, " holds key ", key,
                         " but the index finds ", found));
      }
    }
    if (used != headers_[s].size) {
      return absl::InternalError(absl::StrCat("stripe ", s, " uses ", used,
                                              " rows; its size says ",
                                              headers_[s].size));
    }
    for (uint32_t w = 0; w < headers_[s].first_free_word; ++w) {
      if (used_[int64_t{s} * words_per_stripe_ + w] != ~uint64_t{0}) {
        return absl::InternalError(absl::StrCat(
            "stripe ", s, " has a free row in word ", w,
            ", below its first free word ", headers_[s].first_free_word));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace internal

int64_t OpenAddressingRowIndex::MemoryBytes(int64_t capacity, int32_t stripes) {
  return SlotsMemoryBytes(capacity, stripes) + kLineBytes +
         int64_t{stripes} * BucketsPerStripe(capacity, stripes) *
             int64_t{sizeof(Bucket)};
}

OpenAddressingRowIndex::OpenAddressingRowIndex(int64_t capacity,
                                               int32_t stripes)
    : StripedSlots(capacity, stripes),
      buckets_per_stripe_(BucketsPerStripe(capacity, stripes)),
      bucket_memory_(
          internal::AllocateZeroed<char>(BucketBytes() + kLineBytes)),
      buckets_(reinterpret_cast<Bucket*>(
          (reinterpret_cast<uintptr_t>(bucket_memory_.get()) + kLineBytes - 1) &
          ~uintptr_t{kLineBytes - 1})) {
  *allocated_bytes_counter() += BucketBytes() + kLineBytes;
}

absl::StatusOr<std::unique_ptr<OpenAddressingRowIndex>>
OpenAddressingRowIndex::Create(int64_t capacity, int32_t stripes) {
  if (absl::Status status = ValidateGeometry(capacity, stripes); !status.ok()) {
    return status;
  }
  std::unique_ptr<OpenAddressingRowIndex> index(
      new (std::nothrow) OpenAddressingRowIndex(capacity, stripes));
  if (index == nullptr || !index->ok() || index->bucket_memory_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate the row index of ", capacity, " rows (",
                     MemoryBytes(capacity, stripes), " bytes)"));
  }
  // Probed at random, like the rows.
  AdviseHugePages(index->buckets_, index->BucketBytes());
  return index;
}

void OpenAddressingRowIndex::Place(uint32_t stripe, int64_t id, uint64_t hash,
                                   uint32_t j) {
  Bucket* buckets = StripeBuckets(stripe);
  // Fewer keys than buckets: an empty one is ahead.
  uint32_t i = Home(hash);
  while (buckets[i].tag != 0) {
    if (++i == buckets_per_stripe_) i = 0;
  }
  StoreRelaxed(buckets[i].key, id);
  StoreRelaxed(buckets[i].tag, j + 1);
}

uint32_t OpenAddressingRowIndex::Insert(uint32_t stripe, int64_t id,
                                        uint64_t hash) {
  const uint32_t j = TakeFreeRow(stripe, id);
  Place(stripe, id, hash, j);
  return j;
}

void OpenAddressingRowIndex::InsertAt(uint32_t stripe, int64_t id,
                                      uint64_t hash, uint32_t j) {
  TakeRow(stripe, j, id);
  Place(stripe, id, hash, j);
}

void OpenAddressingRowIndex::EraseSlot(uint32_t stripe, uint32_t j) {
  const int64_t key = FreeRow(stripe, j);
  Bucket* buckets = StripeBuckets(stripe);
  const uint32_t size = buckets_per_stripe_;
  const auto distance = [size](uint32_t from, uint32_t to) {
    return to >= from ? to - from : to + size - from;
  };
  uint32_t hole = Home(Hash(key));
  while (buckets[hole].tag != j + 1) {
    if (++hole == size) hole = 0;
  }
  // Backward shift: pull each later key of the run whose probe passes the
  // hole into it, so every key stays reachable with no tombstone.
  for (uint32_t next = hole;;) {
    if (++next == size) next = 0;
    if (buckets[next].tag == 0) break;
    const uint32_t home = Home(Hash(buckets[next].key));
    if (distance(home, next) >= distance(hole, next)) {
      StoreRelaxed(buckets[hole].key, buckets[next].key);
      StoreRelaxed(buckets[hole].tag, buckets[next].tag);
      hole = next;
    }
  }
  StoreRelaxed(buckets[hole].tag, uint32_t{0});
}

absl::Status OpenAddressingRowIndex::CheckInvariants() const {
  for (uint32_t s = 0; s < static_cast<uint32_t>(stripes()); ++s) {
    const Bucket* buckets = StripeBuckets(s);
    int64_t full = 0;
    for (uint32_t i = 0; i < buckets_per_stripe_; ++i) {
      if (buckets[i].tag == 0) continue;
      ++full;
      const uint32_t j = buckets[i].tag - 1;
      if (j >= StripeCapacity(s) || KeyAt(s, j) != buckets[i].key) {
        return absl::InternalError(
            absl::StrCat("stripe ", s, " bucket ", i, " maps key ",
                         buckets[i].key, " to row ", j, " which holds key ",
                         j < StripeCapacity(s) ? KeyAt(s, j) : kNoKey));
      }
    }
    if (full != Size(s)) {
      return absl::InternalError(absl::StrCat(
          "stripe ", s, " has ", full, " full buckets for ", Size(s), " rows"));
    }
  }
  return CheckSlots([this](uint32_t s, int64_t id, uint64_t hash) {
    return Find(s, id, hash);
  });
}

}  // namespace embedding
