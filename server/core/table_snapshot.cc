// TableSnapshot, and EmbeddingTable's side of snapshots (beginning and
// ending one), kept here beside it.
#include "server/core/table_snapshot.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace embedding {

absl::StatusOr<std::unique_ptr<TableSnapshot>> EmbeddingTable::BeginSnapshot(
    std::optional<uint32_t> since) {
  TableMetadata metadata;
  uint32_t cut;
  int64_t held = local_rows_;
  {
    // Waits for the mutations in flight; new ones wait for this instant.
    WriterLock barrier(&mutation_barrier_);
    if (snapshot_open_) {
      return absl::FailedPreconditionError(
          absl::StrCat("table ", QuoteForMessage(name_),
                       " already has a snapshot in progress"));
    }
    if (since.has_value() && *since >= epoch_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "snapshot since epoch ", *since, " of table ", QuoteForMessage(name_),
          ", which is only at epoch ", epoch_));
    }
    {
      ReaderLock lock(&spec_mu_);
      metadata.spec = spec_;
    }
    metadata.version = version_.load(std::memory_order_relaxed);
    metadata.step = step_.load(std::memory_order_relaxed);
    metadata.exactly_once = exactly_once_.Export();
    if (dynamic_ != nullptr) {
      // Pushes, which admit rows and count in the sketch, all wait.
      held = dynamic_->Counts().rows_held;
      metadata.admission = dynamic_->ExportAdmission();
    }
    cut = epoch_;
    // Rows changed from now on are stamped with the new epoch.
    ++epoch_;
    snapshot_open_ = true;
    snapshot_cut_ = cut;
    snapshot_since_ = since.has_value() ? int64_t{*since} : -1;
    snapshot_copied_below_.store(0, std::memory_order_relaxed);
  }
  return std::unique_ptr<TableSnapshot>(
      new TableSnapshot(*this, std::move(metadata), cut,
                        since.has_value() ? int64_t{*since} : -1, held));
}

void EmbeddingTable::EndSnapshot() {
  {
    WriterLock barrier(&mutation_barrier_);
    snapshot_open_ = false;
  }
  // No mutation adds a pre-image any more.
  int64_t freed = 0;
  for (int64_t s = 0; s < stripe_count_; ++s) {
    Stripe& stripe = stripes_[s];
    WriterLock lock(&stripe.mu);
    if (stripe.pre_images == nullptr) continue;
    freed += static_cast<int64_t>(stripe.pre_images->size());
    stripe.pre_images.reset();
  }
  budget_.Shrink(freed * PreImageBytes());
}

TableSnapshot::TableSnapshot(EmbeddingTable& table, TableMetadata metadata,
                             uint32_t cut, int64_t since, int64_t held)
    : table_(table), metadata_(std::move(metadata)), cut_(cut), since_(since) {
  if (!incremental()) {
    rows_ = held;
    return;
  }
  for (int64_t local = 0; local < table_.local_rows_; ++local) {
    // Stamps only grow and this thread saw every stamp written before the
    // cut (it took the barrier after those mutations): a row that reads
    // <= since here was <= since at the cut, and needs no lock.
    if (int64_t{table_.stamps_[local].load(std::memory_order_relaxed)} <=
        since_) {
      continue;
    }
    if (Holds(local)) held_.push_back(local);
  }
  rows_ = static_cast<int64_t>(held_.size());
}

TableSnapshot::~TableSnapshot() { table_.EndSnapshot(); }

const EmbeddingTable::PreImage* TableSnapshot::FindPreImage(
    EmbeddingTable::Stripe& stripe, int64_t local_row) {
  if (stripe.pre_images == nullptr) return nullptr;
  auto it = stripe.pre_images->find(local_row);
  return it == stripe.pre_images->end() ? nullptr : &it->second;
}

bool TableSnapshot::Holds(int64_t local_row) {
  EmbeddingTable::Stripe& stripe = table_.StripeOf(local_row);
  ReaderLock lock(&stripe.mu);
  if (const EmbeddingTable::PreImage* pre = FindPreImage(stripe, local_row)) {
    return int64_t{pre->stamp} > since_;
  }
  // Changed after the cut without a pre-image: it was not held (nothing is
  // copied yet, so a held row would have one).
  const uint32_t stamp =
      table_.stamps_[local_row].load(std::memory_order_relaxed);
  return stamp <= cut_ && int64_t{stamp} > since_;
}

bool TableSnapshot::CopyRow(EmbeddingTable::Stripe& stripe, int64_t local,
                            float* weights, float* state, DynamicKey* key) {
  const int64_t dim = table_.dim_;
  const int64_t state_width = table_.state_width_;
  DynamicKey found;
  if (const EmbeddingTable::PreImage* pre = FindPreImage(stripe, local)) {
    found = {pre->id, pre->usage};
    if (!dynamic() || found.id != kReservedId) {
      std::copy_n(pre->values.data(), dim, weights);
      std::copy_n(pre->values.data() + dim, state_width, state);
    }
    stripe.pre_images->erase(local);  // Copied: no longer needed.
    table_.budget_.Shrink(table_.PreImageBytes());
  } else {
    if (dynamic()) {
      found = {table_.dynamic_->IdAt(local), table_.dynamic_->UsageAt(local)};
    }
    if (!dynamic() || found.id != kReservedId) {
      std::copy_n(table_.RowData(local), dim, weights);
      std::copy_n(table_.StateData(local), state_width, state);
    }
  }
  if (key != nullptr) *key = found;
  if (dynamic() && found.id == kReservedId) {
    std::fill_n(weights, dim, 0.0f);
    std::fill_n(state, state_width, 0.0f);
    return false;
  }
  return true;
}

int64_t TableSnapshot::Read(int64_t max_rows, int64_t* global_rows,
                            float* weights, float* state, DynamicKey* keys) {
  const int64_t dim = table_.dim_;
  const int64_t state_width = table_.state_width_;
  const int64_t n = std::min(max_rows, rows_ - next_);
  if (n <= 0) return 0;
  DynamicKey unused;
  int64_t copied = 0;
  int64_t local = 0;
  while (copied < n) {
    if (incremental()) {
      local = held_[next_ + copied];
    } else if (dynamic()) {
      // A full snapshot of a dynamic table: its slots holding an id at the
      // cut, found in slot order.
      if (next_slot_ >= table_.local_rows_) break;
      local = next_slot_++;
    } else {
      local = next_ + copied;
    }
    EmbeddingTable::Stripe& stripe = table_.StripeOf(local);
    WriterLock lock(&stripe.mu);  // Writer: it may erase a pre-image.
    const bool held = CopyRow(stripe, local, weights + copied * dim,
                              state + copied * state_width,
                              keys != nullptr ? &keys[copied] : &unused);
    // An empty slot is part of a delta (it was emptied since the base), not
    // of a full snapshot.
    if (!held && !incremental()) continue;
    global_rows[copied] = dynamic() ? local : table_.GlobalRow(local);
    ++copied;
  }
  next_ += copied;
  // Rows up to `local` are copied: later changes to them need no pre-image.
  table_.snapshot_copied_below_.store(local + 1, std::memory_order_release);
  return copied;
}

}  // namespace embedding
