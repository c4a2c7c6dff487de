// EmbeddingTable's dynamic mode (dynamic_ set): ids are any int64 but
// kReservedId, a slot (local row) holds an id only once a push admitted it,
// and an id without a row reads the initializer's values for it.
//
// Concurrency is the dense table's: a slot's weights, its id in the row
// index and its touch change only under its stripe's writer lock, with the
// stripe's counter odd, so a reader that finds an id and copies its row in
// one seqlock window (CopyDynamicRow) gets the row of that id as of one
// change, or retries. A push locks its stripes in ascending order, as
// ApplyChunk does.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "server/core/embedding_table.h"
#include "server/core/initializer.h"
#include "server/core/optimizer.h"
#include "server/core/renorm.h"

namespace embedding {
namespace {

// A touch orders the pushes of a row: the push's step, then the row's rank
// among the rows the push touched (saturated), so that within one push the
// rows stepped first count as older.
constexpr uint64_t kMaxRank = (uint64_t{1} << DynamicRows::kRankBits) - 1;

}  // namespace

absl::Status EmbeddingTable::DenseOnly(const char* what) const {
  if (dynamic_ == nullptr) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(
      "table ", QuoteForMessage(name_), " is dynamic: this server cannot ",
      what, " of a dynamic table yet"));
}

void EmbeddingTable::FillAbsentRow(int64_t id, float* out) const {
  if (IsPadding(id)) {
    std::fill_n(out, dim_, 0.0f);
  } else {
    FillRow(initializer_, seed_, id, dim_, out);
  }
}

absl::StatusOr<std::vector<int64_t>> EmbeddingTable::HeldIds(
    int64_t* cursor, int64_t max_rows) const {
  if (dynamic_ == nullptr) {
    return absl::UnimplementedError(absl::StrCat(
        "table ", QuoteForMessage(name_), " is dense: list its rows by range"));
  }
  if (max_rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_rows must be >= 1, got ", max_rows));
  }
  const int64_t pushes = pushes_applied_.load(std::memory_order_relaxed);
  std::vector<int64_t> ids;
  while (*cursor < local_rows_ && static_cast<int64_t>(ids.size()) < max_rows) {
    const int64_t slot = (*cursor)++;
    Stripe& stripe = StripeOf(slot);
    ReaderLock lock(&stripe.mu);
    const int64_t id = dynamic_->IdAt(slot);
    if (id != kReservedId && !dynamic_->Expired(slot, pushes)) {
      ids.push_back(id);
    }
  }
  return ids;
}

bool EmbeddingTable::CopyDynamicRow(int64_t id, const DynamicRows::Place& place,
                                    void* out) const {
  static_assert(DynamicRows::RowIndex::kLockFreeFind,
                "the row index is probed inside the seqlock window");
  Stripe& stripe = stripes_[place.stripe];
  const int64_t pushes = pushes_applied_.load(std::memory_order_relaxed);
  // The slot of `id` unless it has none or it expired.
  const auto live_slot = [&] {
    const int64_t slot = dynamic_->Find(place, id);
    return slot >= 0 && !dynamic_->Expired(slot, pushes) ? slot : -1;
  };
  for (int attempt = 0; attempt < kOptimisticReads; ++attempt) {
    const uint32_t begin = stripe.seq.ReadBegin();
    if ((begin & 1) != 0) continue;  // A change is under way.
    // A torn probe ends (it is bounded) and gives a slot of the stripe;
    // ReadValid throws both it and the copy away.
    const int64_t slot = live_slot();
    if (slot >= 0) LoadFloatsRelaxed(RowData(slot), dim_, out);
    if (stripe.seq.ReadValid(begin)) return slot >= 0;
  }
  ReaderLock lock(&stripe.mu);
  const int64_t slot = live_slot();
  if (slot < 0) return false;
  LoadFloatsRelaxed(RowData(slot), dim_, out);
  return true;
}

bool EmbeddingTable::ReadDynamicRow(int64_t id, bool renorm, float* out) {
  const DynamicRows::Place place = dynamic_->PlaceOf(id);
  const bool renorms = renorm && max_norm_.has_value();
  if (CopyDynamicRow(id, place, out)) {
    if (!renorms || RowNorm(out, dim_, norm_type_) <= *max_norm_) return true;
    ReaderLock barrier(&mutation_barrier_);
    const MutationContext mutation = CurrentMutation();
    Stripe& stripe = stripes_[place.stripe];
    WriterLock lock(&stripe.mu);
    // The id may have lost its row since the copy.
    const int64_t slot = dynamic_->Find(place, id);
    if (slot >= 0 && !dynamic_->Expired(slot, pushes_applied_.load(
                                                  std::memory_order_relaxed))) {
      RenormHeldRow(stripe, slot, mutation, out);
      return true;
    }
  }
  // No row to renorm in place: the values are renormed as read, as torch's
  // forward would see them, and stored only if a push admits the id.
  FillAbsentRow(id, out);
  if (renorms) RenormRow(out, dim_, *max_norm_, norm_type_);
  return false;
}

absl::Status EmbeddingTable::GatherDynamic(absl::Span<const int64_t> ids,
                                           DType dtype, bool renorm, void* out,
                                           const Cancellation& cancel) {
  const size_t row_bytes = dim_ * ElementSize(dtype);
  char* dst = static_cast<char*>(out);
  const bool direct =
      dtype == DType::kFloat32 && !(renorm && max_norm_.has_value());
  std::vector<float> row(dim_);
  int64_t absent = 0;
  // Two cache misses per id, the index bucket and the row: a pipeline
  // hashes and prefetches the bucket kPlaceAhead ids ahead, probes it and
  // prefetches the row kRowAhead ids ahead, then copies. The probe ahead
  // may see a change under way; it only chooses what to prefetch.
  constexpr size_t kPlaceAhead = 12;
  constexpr size_t kRowAhead = 4;
  constexpr size_t kRing = 16;  // Places planned and not yet copied.
  DynamicRows::Place places[kRing];
  const auto plan = [&](size_t k) {
    places[k % kRing] = dynamic_->PlaceOf(ids[k]);
    dynamic_->Prefetch(places[k % kRing], ids[k]);
  };
  for (size_t k = 0; k < std::min(kPlaceAhead, ids.size()); ++k) plan(k);
  for (size_t begin = 0; begin < ids.size();
       begin += kRowsBetweenCancelChecks) {
    if (cancel.IsCancelled()) return cancel.Status();
    const size_t end =
        std::min<size_t>(ids.size(), begin + kRowsBetweenCancelChecks);
    for (size_t i = begin; i < end; ++i) {
      if (i + kPlaceAhead < ids.size()) plan(i + kPlaceAhead);
      if (i + kRowAhead < ids.size()) {
        const int64_t slot =
            dynamic_->Find(places[(i + kRowAhead) % kRing], ids[i + kRowAhead]);
        if (slot >= 0) PrefetchRow(slot, /*state=*/false);
      }
      const int64_t id = ids[i];
      bool held = true;
      if (!direct) {
        held = ReadDynamicRow(id, renorm, row.data());
        ConvertFloats(row.data(), dim_, dtype, dst);
      } else if (!CopyDynamicRow(id, places[i % kRing], dst)) {
        held = false;
        FillAbsentRow(id, row.data());
        std::copy_n(row.data(), dim_, reinterpret_cast<float*>(dst));
      }
      if (!held && !IsPadding(id)) ++absent;
      dst += row_bytes;
    }
  }
  // Lookups (renorm: a forward pass) count the ids without a row, the
  // padding id aside; exports (ReadRows) do not.
  if (renorm) dynamic_->CountAbsentLookups(absent);
  return absl::OkStatus();
}

PushResult EmbeddingTable::ApplyDynamicPush(GradientAccumulator& gradient,
                                            const OptimizerSpec& optimizer,
                                            const StepParams& params,
                                            int64_t step,
                                            const MutationContext& mutation) {
  const absl::Span<const uint32_t> order = gradient.SlotsByGroup(
      static_cast<uint32_t>(stripe_count_),
      [this](int64_t id) { return dynamic_->PlaceOf(id).stripe; });
  PushResult result;
  DynamicChange change{.first_touch = static_cast<uint64_t>(step)
                                      << DynamicRows::kRankBits,
                       .pushes_before = step - 1,
                       .fresh = std::vector<float>(dim_)};
  // Chunks of whole stripes (a stripe's held rows are all stepped before
  // any of its rows is evicted), of about kRowsPerLockChunk rows.
  const auto chunk_end = [&](size_t begin) {
    size_t end = std::min(order.size(), begin + kRowsPerLockChunk);
    while (end < order.size() &&
           gradient.group(order[end]) == gradient.group(order[end - 1])) {
      ++end;
    }
    return end;
  };
  // A pipeline of chunks: while one steps, the next one's rows and the
  // one after's index lines load (a row's address is known only once its
  // index line is in).
  // (A lambda, not a function: GCC drops calls to a function whose only
  // effect is a prefetch.)
  const auto prefetch_index = [&](size_t begin, size_t end) {
    for (size_t k = begin; k < end; ++k) {
      const int64_t id = gradient.row(order[k]);
      dynamic_->Prefetch(dynamic_->PlaceOf(id), id);
    }
  };
  size_t end = chunk_end(0);
  size_t next_end = chunk_end(end);
  prefetch_index(0, next_end);
  PrefetchDynamicRows(gradient, order, 0, end);
  for (size_t begin = 0; begin < order.size();) {
    const size_t after_next_end = chunk_end(next_end);
    prefetch_index(next_end, after_next_end);
    PrefetchDynamicRows(gradient, order, end, next_end);
    ApplyDynamicChunk(gradient, order, begin, end, optimizer, params, mutation,
                      change, result);
    begin = end;
    end = next_end;
    next_end = after_next_end;
  }
  dynamic_->Count(result.rows_admitted, result.rows_evicted, change.expirations,
                  result.rows_dropped);
  return result;
}

void EmbeddingTable::PrefetchDynamicRows(const GradientAccumulator& gradient,
                                         absl::Span<const uint32_t> order,
                                         size_t begin, size_t end) const {
  for (size_t k = begin; k < end; ++k) {
    const int64_t id = gradient.row(order[k]);
    // Without the lock: a probe racing a change only prefetches another
    // row of the stripe.
    const int64_t slot = dynamic_->Find(dynamic_->PlaceOf(id), id);
    if (slot >= 0) {
      dynamic_->PrefetchUsage(slot);
      PrefetchRow(slot, /*state=*/true);
    }
  }
}

void EmbeddingTable::ApplyDynamicChunk(
    GradientAccumulator& gradient, absl::Span<const uint32_t> order,
    size_t begin, size_t end, const OptimizerSpec& optimizer,
    const StepParams& params, const MutationContext& mutation,
    DynamicChange& change, PushResult& result) {
  // Ranks of this push's rows so far: rows_updated counts them all.
  const auto next_touch = [&] {
    return change.first_touch |
           std::min(static_cast<uint64_t>(result.rows_updated++), kMaxRank);
  };
  std::vector<float>& fresh = change.fresh;
  std::vector<size_t>& absent = change.absent;
  LockStripes(gradient, order, begin, end);
  for (size_t group_begin = begin; group_begin < end;) {
    const uint32_t stripe_index = gradient.group(order[group_begin]);
    size_t group_end = group_begin + 1;
    while (group_end < end &&
           gradient.group(order[group_end]) == stripe_index) {
      ++group_end;
    }
    Stripe& stripe = stripes_[stripe_index];
    stripe.seq.WriteBegin();
    absent.clear();
    for (size_t k = group_begin; k < group_end; ++k) {
      const int64_t id = gradient.row(order[k]);
      const int64_t slot = dynamic_->Find(dynamic_->PlaceOf(id), id);
      if (slot < 0 || dynamic_->Expired(slot, change.pushes_before)) {
        absent.push_back(k);
        continue;
      }
      BeforeRowChange(stripe, slot, mutation);
      dynamic_->Touch(slot, next_touch());
      StepRow(optimizer, params, gradient.sum(order[k]), slot);
    }
    for (size_t k : absent) {
      const int64_t id = gradient.row(order[k]);
      const DynamicRows::Place place = dynamic_->PlaceOf(id);
      if (!dynamic_->Admits(place, id)) {
        ++result.rows_dropped;
        continue;
      }
      const int64_t slot =
          dynamic_->AdmissionSlot(place, id, change.pushes_before);
      // The row as the forward pass read it (renormed under max_norm).
      FillAbsentRow(id, fresh.data());
      if (max_norm_.has_value()) {
        RenormRow(fresh.data(), dim_, *max_norm_, norm_type_);
      }
      const DynamicRows::Replaced replaced =
          AdmitRow(stripe, place, id, slot, next_touch(), change.pushes_before,
                   fresh.data(), optimizer, mutation);
      ++result.rows_admitted;
      if (replaced.expired) {
        ++change.expirations;
      } else if (replaced.id != kReservedId) {
        ++result.rows_evicted;
      }
      StepRow(optimizer, params, gradient.sum(order[k]), slot);
    }
    stripe.seq.WriteEnd();
    group_begin = group_end;
  }
  UnlockStripes(gradient, order, begin, end);
}

}  // namespace embedding
