// WriteRows of a dynamic table (an import): a held id's row is overwritten,
// an id without a row is admitted as a push admits one (AdmitRow), without
// admit_after. The write's ids are grouped by stripe and each stripe is
// changed under its writer lock, its counter odd, as a push's chunk is.
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "server/core/embedding_table.h"
#include "server/core/optimizer.h"

namespace embedding {

DynamicRows::Replaced EmbeddingTable::AdmitRow(
    Stripe& stripe, const DynamicRows::Place& place, int64_t id, int64_t slot,
    uint64_t touch, int64_t pushes, const float* values,
    const OptimizerSpec& optimizer, const MutationContext& mutation) {
  BeforeRowChange(stripe, slot, mutation);
  const DynamicRows::Replaced replaced =
      dynamic_->Occupy(place, id, slot, touch, pushes);
  StoreFloatsRelaxed(values, dim_, RowData(slot));
  // An evicted or expired id starts over.
  InitializeOptimizerState(optimizer, dim_, StateData(slot));
  return replaced;
}

absl::StatusOr<int64_t> EmbeddingTable::WriteDynamicRows(
    absl::Span<const int64_t> ids, absl::Span<const float> values,
    const Cancellation& cancel) {
  // Positions of the ids grouped by stripe (a counting sort): each stripe
  // is locked once, and its count checked against its rows before any
  // change, so that every id of the write holds a row after it.
  const auto stripes = static_cast<uint32_t>(stripe_count_);
  std::vector<uint32_t> stripe_of(ids.size());
  std::vector<size_t> group_begin(size_t{stripes} + 1, 0);
  for (size_t i = 0; i < ids.size(); ++i) {
    stripe_of[i] = dynamic_->PlaceOf(ids[i]).stripe;
    ++group_begin[stripe_of[i] + 1];
  }
  for (uint32_t s = 0; s < stripes; ++s) {
    const auto count = static_cast<int64_t>(group_begin[s + 1]);
    if (count > dynamic_->StripeCapacity(s)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          count, " ids of the write fall in stripe ", s, " of table ",
          QuoteForMessage(name_), ", which holds at most ",
          dynamic_->StripeCapacity(s), " rows (capacity ", dynamic_->capacity(),
          " in ", stripes,
          " stripes): write fewer ids at once, or use a larger table"));
    }
    group_begin[s + 1] += group_begin[s];
  }
  std::vector<uint32_t> order(ids.size());
  {
    std::vector<size_t> next(group_begin.begin(), group_begin.end() - 1);
    for (size_t i = 0; i < ids.size(); ++i) {
      order[next[stripe_of[i]]++] = static_cast<uint32_t>(i);
    }
  }
  if (cancel.IsCancelled()) return cancel.Status();

  ReaderLock barrier(&mutation_barrier_);
  OptimizerSpec optimizer;
  {
    ReaderLock lock(&spec_mu_);
    optimizer = spec_.optimizer;
  }
  const MutationContext mutation = CurrentMutation();
  // Expiry is judged as readers judge it; a written row counts as pushed by
  // the last push begun, after all of that push's rows.
  const int64_t pushes = pushes_applied_.load(std::memory_order_relaxed);
  const uint64_t touch =
      (static_cast<uint64_t>(step_.load(std::memory_order_relaxed) + 1)
       << DynamicRows::kRankBits) -
      1;
  int64_t admissions = 0;
  int64_t evictions = 0;
  int64_t expirations = 0;
  // The stripe's slots this write has written: never a victim.
  absl::flat_hash_set<int64_t> kept;
  std::vector<uint32_t> absent;
  for (uint32_t s = 0; s < stripes; ++s) {
    if (group_begin[s] == group_begin[s + 1]) continue;
    Stripe& stripe = stripes_[s];
    WriterLock lock(&stripe.mu);
    stripe.seq.WriteBegin();
    kept.clear();
    absent.clear();
    // The held rows first, so that no admission evicts one of them.
    for (size_t k = group_begin[s]; k < group_begin[s + 1]; ++k) {
      const int64_t id = ids[order[k]];
      const int64_t slot = dynamic_->Find(dynamic_->PlaceOf(id), id);
      if (slot < 0 || dynamic_->Expired(slot, pushes)) {
        absent.push_back(order[k]);
        continue;
      }
      BeforeRowChange(stripe, slot, mutation);
      dynamic_->Touch(slot, touch);
      StoreFloatsRelaxed(&values[order[k] * dim_], dim_, RowData(slot));
      kept.insert(slot);
    }
    for (const uint32_t i : absent) {
      const DynamicRows::Place place = dynamic_->PlaceOf(ids[i]);
      const int64_t slot = dynamic_->AdmissionSlot(place, ids[i], pushes, kept);
      const DynamicRows::Replaced replaced =
          AdmitRow(stripe, place, ids[i], slot, touch, pushes,
                   &values[i * dim_], optimizer, mutation);
      kept.insert(slot);
      ++admissions;
      if (replaced.expired) {
        ++expirations;
      } else if (replaced.id != kReservedId) {
        ++evictions;
      }
    }
    stripe.seq.WriteEnd();
  }
  dynamic_->Count(admissions, evictions, expirations, /*dropped_rows=*/0);
  counters_.AddWrite(static_cast<int64_t>(ids.size()));
  return version_.fetch_add(1, std::memory_order_relaxed) + 1;
}

}  // namespace embedding
