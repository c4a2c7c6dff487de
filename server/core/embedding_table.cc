#include "server/core/embedding_table.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/cancel_check.h"
#include "common/checked_math.h"
#include "common/quote.h"
#include "common/row_checks.h"
#include "common/status_macros.h"
#include "server/core/huge_pages.h"
#include "server/core/initializer.h"
#include "server/core/optimizer.h"
#include "server/core/renorm.h"

namespace embedding {
namespace {

// The shard layout of a validated spec.
ShardLayout LayoutOf(const TableSpec& spec) {
  return *ShardLayout::Create(spec.shard_count,
                              spec.dynamic.has_value()
                                  ? ShardLayout::Routing::kHash
                                  : ShardLayout::Routing::kModulo);
}

// RESOURCE_EXHAUSTED past the indices one push or write may carry: their
// scratch indexes positions in 32 bits (PositionIndex).
absl::Status CheckIndexCount(size_t count, const char* what) {
  if (count < (size_t{1} << 31)) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "a ", what, " of ", count, " indices is more than one may carry (2^31)"));
}

// No allocation can be larger: x86-64 and AArch64 user space is 2^47 bytes.
// Larger tables are refused without asking the allocator (which may abort,
// under a sanitizer, rather than fail).
constexpr int64_t kMaxAllocationBytes = int64_t{1} << 47;

// Bytes a row's pre-image holds beyond its floats: the vector and its hash
// map entry.
constexpr int64_t kPreImageOverheadBytes = 96;

}  // namespace

int64_t PushScratchBytes(int64_t indices, int64_t dim) {
  // The accumulator, plus the index of the batch's rows a MAX bag push
  // checks its max_indices against, plus small fixed buffers.
  const std::optional<int64_t> bytes =
      CheckedAdd(GradientAccumulator::BytesBound(indices, dim),
                 PositionIndex::BytesBound(indices));
  if (!bytes.has_value()) return std::numeric_limits<int64_t>::max();
  return CheckedAdd(*bytes, 4096).value_or(std::numeric_limits<int64_t>::max());
}

absl::StatusOr<int64_t> EmbeddingTable::MemoryBytes(const TableSpec& spec) {
  if (spec.embedding_dim <= 0 || spec.embedding_dim > kMaxEmbeddingDim ||
      spec.shard_count < 1 || spec.shard_index < 0 ||
      spec.shard_index >= spec.shard_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot size a table of embedding_dim ", spec.embedding_dim, " (1 to ",
        kMaxEmbeddingDim, ") on shard ", spec.shard_index, " of ",
        spec.shard_count));
  }
  // dim <= 2^16, so the row width (weights and at most 2 * dim of state)
  // is small; only the product with the rows can overflow.
  const int64_t width =
      spec.embedding_dim +
      OptimizerStateWidth(spec.optimizer.kind, spec.embedding_dim);
  std::optional<int64_t> bytes = CheckedMul(LocalRowCount(spec), width);
  if (bytes.has_value()) bytes = CheckedMul(*bytes, sizeof(float));
  if (bytes.has_value() && spec.dynamic.has_value()) {
    bytes = CheckedAdd(*bytes, DynamicRows::MemoryBytes(*spec.dynamic));
  }
  if (!bytes.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "table of ", spec.num_embeddings, " x ", spec.embedding_dim, " with ",
        InfoOf(spec.optimizer.kind).name,
        " state overflows 64-bit size arithmetic"));
  }
  return *bytes;
}

absl::StatusOr<std::unique_ptr<EmbeddingTable>> EmbeddingTable::Allocate(
    TableSpec spec) {
  EMBEDDING_ASSIGN_OR_RETURN(const int64_t bytes, MemoryBytes(spec));
  const int64_t local_rows = LocalRowCount(spec);
  const int64_t state_width =
      OptimizerStateWidth(spec.optimizer.kind, spec.embedding_dim);
  const std::string name = QuoteForMessage(spec.name);
  const std::string cannot =
      absl::StrCat("cannot allocate table ", name, " of ", local_rows, " x ",
                   spec.embedding_dim, " floats and ", state_width,
                   " floats of optimizer state per row (", bytes, " bytes)");
  // The epoch stamps take 4 bytes a row more; none of these sums overflow
  // once MemoryBytes did not.
  if (bytes > kMaxAllocationBytes || local_rows > kMaxAllocationBytes / 4) {
    return absl::ResourceExhaustedError(
        absl::StrCat(cannot, ": more than the address space"));
  }
  std::unique_ptr<DynamicRows> dynamic;
  if (spec.dynamic.has_value()) {
    absl::StatusOr<std::unique_ptr<DynamicRows>> created =
        DynamicRows::Create(*spec.dynamic);
    if (!created.ok()) return absl::ResourceExhaustedError(cannot);
    dynamic = *std::move(created);
  }
  std::unique_ptr<EmbeddingTable> table(new (std::nothrow) EmbeddingTable(
      std::move(spec), local_rows, state_width, std::move(dynamic)));
  if (table == nullptr || table->weights_ == nullptr ||
      (state_width > 0 && table->state_ == nullptr) ||
      table->stripes_ == nullptr || table->stamps_ == nullptr) {
    return absl::ResourceExhaustedError(cannot);
  }
  AdviseHugePages(table->weights_.get(),
                  local_rows * table->dim_ * int64_t{sizeof(float)});
  if (state_width > 0) {
    AdviseHugePages(table->state_.get(),
                    local_rows * state_width * int64_t{sizeof(float)});
  }
  return table;
}

absl::StatusOr<std::unique_ptr<EmbeddingTable>> EmbeddingTable::Create(
    TableSpec spec, absl::Span<const float> initial_weights,
    const Cancellation& cancel) {
  EMBEDDING_RETURN_IF_ERROR(ValidateTableSpec(spec));
  const int64_t dim = spec.embedding_dim;
  if (spec.dynamic.has_value()) {
    // It starts empty: ids get rows as they are pushed.
    if (!initial_weights.empty()) {
      return absl::InvalidArgumentError(kNoInitialWeightsForDynamicTables);
    }
    return Allocate(std::move(spec));
  }
  if (!initial_weights.empty()) {
    EMBEDDING_RETURN_IF_ERROR(CheckRowsShape(
        initial_weights, spec.num_embeddings, dim, "initial_weights"));
  }
  const InitializerSpec initializer = spec.initializer;
  const OptimizerSpec optimizer = spec.optimizer;
  const uint64_t seed = spec.seed;
  EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<EmbeddingTable> table,
                             Allocate(std::move(spec)));
  // Initialising writes every page: a large table takes seconds, so it
  // stops (and frees it all) when the caller gives up.
  PeriodicCancelCheck check(cancel);
  for (int64_t local = 0; local < table->local_rows_; ++local) {
    if (check.Cancelled()) return check.status();
    const int64_t global = table->GlobalRow(local);
    float* row = table->RowData(local);
    if (table->IsPadding(global)) {
      std::fill_n(row, dim, 0.0f);
    } else if (!initial_weights.empty()) {
      std::copy_n(&initial_weights[global * dim], dim, row);
    } else {
      FillRow(initializer, seed, global, dim, row);
    }
  }
  for (int64_t local = 0; table->state_width_ > 0 && local < table->local_rows_;
       ++local) {
    if (check.Cancelled()) return check.status();
    InitializeOptimizerState(optimizer, dim, table->StateData(local));
  }
  return table;
}

EmbeddingTable::EmbeddingTable(TableSpec spec, int64_t local_rows,
                               int64_t state_width,
                               std::unique_ptr<DynamicRows> dynamic)
    : name_(spec.name),
      num_embeddings_(spec.num_embeddings),
      dim_(spec.embedding_dim),
      local_rows_(local_rows),
      state_width_(state_width),
      layout_(LayoutOf(spec)),
      shard_index_(spec.shard_index),
      has_padding_(spec.padding_idx.has_value()),
      padding_global_row_(spec.padding_idx.value_or(-1)),
      max_norm_(spec.max_norm),
      norm_type_(spec.norm_type),
      scale_grad_by_freq_(spec.scale_grad_by_freq),
      initializer_(spec.initializer),
      seed_(spec.seed),
      stripe_count_(dynamic != nullptr ? dynamic->stripes() : kDenseStripes),
      stripe_mask_(stripe_count_ - 1),
      dynamic_(std::move(dynamic)),
      weights_(new (std::nothrow) float[local_rows * spec.embedding_dim]),
      state_(state_width > 0
                 ? new (std::nothrow) float[local_rows * state_width]
                 : nullptr),
      stripes_(new (std::nothrow) Stripe[stripe_count_]),
      stamps_(new (std::nothrow) std::atomic<uint32_t>[local_rows]()),
      spec_(std::move(spec)) {}

TableStats EmbeddingTable::Stats() const {
  TableStats stats;
  {
    ReaderLock lock(&spec_mu_);
    stats.spec = spec_;
  }
  stats.local_rows = local_rows_;
  if (dynamic_ != nullptr) {
    stats.dynamic = dynamic_->Counts();
    stats.local_rows = stats.dynamic->rows_held;
  }
  stats.memory_bytes = *MemoryBytes(stats.spec);
  stats.version = version_.load(std::memory_order_relaxed);
  stats.step = step_.load(std::memory_order_relaxed);
  stats.counts = counters_.Read();
  return stats;
}

absl::Status EmbeddingTable::ValidateIndices(absl::Span<const int64_t> indices,
                                             const char* what) const {
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t index = indices[i];
    if (dynamic_ != nullptr) {
      if (index == kReservedId) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, " ", index, " at position ", i,
                         " is reserved: no id of a dynamic table"));
      }
    } else if (index < 0 || index >= num_embeddings_) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ", index, " at position ", i, " is outside [0, ",
                       num_embeddings_, ")"));
    }
    if (layout_.OwnerShard(index) != shard_index_) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " ", index, " at position ", i, " belongs to shard ",
          layout_.OwnerShard(index), "; this server is shard ", shard_index_,
          " of ", layout_.shard_count()));
    }
  }
  return absl::OkStatus();
}

EmbeddingTable::MutationContext EmbeddingTable::CurrentMutation() const {
  return {.epoch = epoch_,
          .snapshot = snapshot_open_,
          .cut = snapshot_cut_,
          .since = snapshot_since_};
}

void EmbeddingTable::BeforeRowChange(Stripe& stripe, int64_t local_row,
                                     const MutationContext& mutation) {
  std::atomic<uint32_t>& stamp = stamps_[local_row];
  const uint32_t old_stamp = stamp.load(std::memory_order_relaxed);
  // Already changed in this epoch: stamped, and its pre-image (if one was
  // needed) kept by that first change.
  if (old_stamp == mutation.epoch) return;
  // The open snapshot holds this row as it is now if it has not changed
  // since the cut, was part of the snapshot and is not yet copied.
  if (mutation.snapshot && old_stamp <= mutation.cut &&
      int64_t{old_stamp} > mutation.since &&
      local_row >= snapshot_copied_below_.load(std::memory_order_acquire)) {
    std::vector<float> values(dim_ + state_width_);
    std::copy_n(RowData(local_row), dim_, values.data());
    std::copy_n(StateData(local_row), state_width_, values.data() + dim_);
    if (stripe.pre_images == nullptr) {
      stripe.pre_images = std::make_unique<PreImages>();
    }
    PreImage pre{old_stamp, std::move(values)};
    if (dynamic_ != nullptr) {
      pre.id = dynamic_->IdAt(local_row);
      pre.usage = dynamic_->UsageAt(local_row);
    }
    stripe.pre_images->emplace(local_row, std::move(pre));
    budget_.Grow(PreImageBytes());
  }
  stamp.store(mutation.epoch, std::memory_order_relaxed);
}

void EmbeddingTable::CopyRow(int64_t local_row, void* out) const {
  Stripe& stripe = StripeOf(local_row);
  const float* row = RowData(local_row);
  for (int attempt = 0; attempt < kOptimisticReads; ++attempt) {
    const uint32_t begin = stripe.seq.ReadBegin();
    if ((begin & 1) != 0) continue;  // A change is under way.
    LoadFloatsRelaxed(row, dim_, out);
    if (stripe.seq.ReadValid(begin)) return;
  }
  // Changes kept overlapping: wait for the one under way and copy while
  // the next waits.
  ReaderLock lock(&stripe.mu);
  LoadFloatsRelaxed(row, dim_, out);
}

void EmbeddingTable::ReadRow(int64_t local_row, bool renorm, float* out) {
  CopyRow(local_row, out);
  if (!renorm || !max_norm_.has_value() ||
      RowNorm(out, dim_, norm_type_) <= *max_norm_) {
    return;
  }
  ReaderLock barrier(&mutation_barrier_);
  const MutationContext mutation = CurrentMutation();
  Stripe& stripe = StripeOf(local_row);
  WriterLock lock(&stripe.mu);
  RenormHeldRow(stripe, local_row, mutation, out);
}

void EmbeddingTable::RenormHeldRow(Stripe& stripe, int64_t local_row,
                                   const MutationContext& mutation,
                                   float* out) {
  // Re-read under the writer lock: another lookup may have renormed it
  // meanwhile. Renorming changes the row, so it is a mutation for
  // snapshots.
  std::copy_n(RowData(local_row), dim_, out);  // No writer can race.
  if (RenormRow(out, dim_, *max_norm_, norm_type_)) {
    BeforeRowChange(stripe, local_row, mutation);
    StoreRow(stripe, local_row, out);
  }
}

void EmbeddingTable::StoreRow(Stripe& stripe, int64_t local_row,
                              const float* values) {
  stripe.seq.WriteBegin();
  StoreFloatsRelaxed(values, dim_, RowData(local_row));
  stripe.seq.WriteEnd();
}

int64_t EmbeddingTable::PreImageBytes() const {
  return (dim_ + state_width_) * int64_t{sizeof(float)} +
         kPreImageOverheadBytes;
}

absl::Status EmbeddingTable::Lookup(absl::Span<const int64_t> indices,
                                    DType dtype, void* out,
                                    const Cancellation& cancel) {
  EMBEDDING_RETURN_IF_ERROR(
      Gather(indices, dtype, /*renorm=*/true, out, cancel));
  counters_.AddLookup(static_cast<int64_t>(indices.size()));
  return absl::OkStatus();
}

absl::Status EmbeddingTable::ReadRows(absl::Span<const int64_t> indices,
                                      float* out, const Cancellation& cancel) {
  EMBEDDING_RETURN_IF_ERROR(
      Gather(indices, DType::kFloat32, /*renorm=*/false, out, cancel));
  counters_.AddRead(static_cast<int64_t>(indices.size()));
  return absl::OkStatus();
}

absl::Status EmbeddingTable::Gather(absl::Span<const int64_t> indices,
                                    DType dtype, bool renorm, void* out,
                                    const Cancellation& cancel) {
  EMBEDDING_RETURN_IF_ERROR(ValidateIndices(indices, "index"));
  if (dynamic_ != nullptr) {
    return GatherDynamic(indices, dtype, renorm, out, cancel);
  }
  const size_t row_bytes = dim_ * ElementSize(dtype);
  char* dst = static_cast<char*>(out);
  // float32 rows that need no renorm go straight to `out`; others through
  // one row of scratch.
  const bool direct =
      dtype == DType::kFloat32 && !(renorm && max_norm_.has_value());
  std::vector<float> row(direct ? 0 : dim_);
  // Blocks of rows with a check between them; the inner loop as tight as
  // without.
  for (size_t begin = 0; begin < indices.size();
       begin += kRowsBetweenCancelChecks) {
    if (cancel.IsCancelled()) return cancel.Status();
    const size_t end =
        std::min<size_t>(indices.size(), begin + kRowsBetweenCancelChecks);
    for (size_t i = begin; i < end; ++i) {
      if (i + kPrefetchDistance < indices.size()) {
        PrefetchRow(LocalRow(indices[i + kPrefetchDistance]), /*state=*/false);
      }
      if (direct) {
        CopyRow(LocalRow(indices[i]), dst);
      } else {
        ReadRow(LocalRow(indices[i]), renorm, row.data());
        ConvertFloats(row.data(), dim_, dtype, dst);
      }
      dst += row_bytes;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<BagMarkers> EmbeddingTable::CheckBagMode(BagMode mode) const {
  if (mode == BagMode::kMax && scale_grad_by_freq_) {
    return absl::InvalidArgumentError(
        "mode MAX does not support scale_grad_by_freq (torch refuses it too)");
  }
  static_assert(BagMarkers::kDynamicNoRow == kReservedId);
  return BagMarkers::ForTable(dynamic_ != nullptr,
                              has_padding_
                                  ? std::optional<int64_t>(padding_global_row_)
                                  : std::nullopt);
}

absl::Status EmbeddingTable::LookupBag(const ValidatedBagBatch& batch,
                                       DType dtype, void* out,
                                       int64_t* max_indices,
                                       const Cancellation& cancel) {
  EMBEDDING_ASSIGN_OR_RETURN(const BagMarkers markers,
                             CheckBagMode(batch.mode()));
  EMBEDDING_RETURN_IF_ERROR(ValidateIndices(batch.indices(), "index"));
  std::vector<float> row(dim_);
  int64_t absent = 0;  // A dynamic table's ids without a row.
  EMBEDDING_RETURN_IF_ERROR(PoolBags(
      batch, dim_, markers,
      [&](int64_t index, const auto& use) {
        if (dynamic_ == nullptr) {
          ReadRow(LocalRow(index), /*renorm=*/true, row.data());
        } else if (!ReadDynamicRow(index, /*renorm=*/true, row.data())) {
          ++absent;  // The padding id is never read.
        }
        use(row.data());
      },
      dtype, out, max_indices, cancel));
  if (dynamic_ != nullptr) dynamic_->CountAbsentLookups(absent);
  counters_.AddLookup(static_cast<int64_t>(batch.indices().size()));
  return absl::OkStatus();
}

absl::StatusOr<PushResult> EmbeddingTable::PushGradients(
    absl::Span<const int64_t> indices, absl::Span<const float> grad,
    const PushOptions& options, const Cancellation& cancel) {
  EMBEDDING_RETURN_IF_ERROR(ValidateIndices(indices, "index"));
  EMBEDDING_RETURN_IF_ERROR(
      CheckRowsShape(grad, static_cast<int64_t>(indices.size()), dim_, "grad"));
  return Push(indices, options, cancel,
              [&](GradientAccumulator& gradient) -> absl::Status {
                PeriodicCancelCheck check(cancel);
                for (size_t position = 0; position < indices.size();
                     ++position) {
                  if (check.Cancelled()) return check.status();
                  if (IsPadding(indices[position])) continue;
                  gradient.Add(indices[position], &grad[position * dim_], 1.0f);
                }
                return absl::OkStatus();
              });
}

absl::StatusOr<PushResult> EmbeddingTable::PushBagGradients(
    const ValidatedBagBatch& batch, absl::Span<const float> grad,
    absl::Span<const int64_t> max_indices, const PushOptions& options,
    const Cancellation& cancel) {
  EMBEDDING_ASSIGN_OR_RETURN(const BagMarkers markers,
                             CheckBagMode(batch.mode()));
  EMBEDDING_RETURN_IF_ERROR(ValidateIndices(batch.indices(), "index"));
  EMBEDDING_RETURN_IF_ERROR(CheckRowsShape(grad, batch.bags(), dim_, "grad"));
  // A dynamic table's ids with a gradient count toward their admission in
  // Push, as PushGradients' do.
  return Push(batch.indices(), options, cancel,
              [&](GradientAccumulator& gradient) {
                return ScatterBagGradients(batch, dim_, markers, grad,
                                           max_indices, gradient, cancel);
              });
}

absl::StatusOr<PushResult> EmbeddingTable::Push(
    absl::Span<const int64_t> indices, const PushOptions& options,
    const Cancellation& cancel,
    absl::FunctionRef<absl::Status(GradientAccumulator&)> accumulate) {
  EMBEDDING_RETURN_IF_ERROR(CheckIndexCount(indices.size(), "push"));
  if (options.learning_rate.has_value() &&
      !(*options.learning_rate > 0 && std::isfinite(*options.learning_rate))) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning_rate must be a finite number > 0, got ",
                     *options.learning_rate));
  }
  if (!options.client_id.empty()) {
    // Before the scratch: a refused push costs nothing.
    EMBEDDING_RETURN_IF_ERROR(
        ExactlyOnceTracker::CheckClaim(options.client_id, options.sequence));
  }
  // Distinct rows are at most this shard's rows, however many indices (a
  // dynamic table's ids are not bounded by its capacity).
  const size_t distinct =
      dynamic_ != nullptr
          ? indices.size()
          : std::min(indices.size(), static_cast<size_t>(local_rows_));
  PushScratch scratch;  // Frees a large push's scratch when it ends.
  GradientAccumulator* gradient = nullptr;
  try {
    gradient = &scratch.Start(dim_, distinct);
    EMBEDDING_RETURN_IF_ERROR(accumulate(*gradient));
  } catch (const std::bad_alloc&) {
    // Nothing is changed yet.
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate the scratch of a push of ", indices.size(),
        " indices to table ", QuoteForMessage(name_), " (at most ",
        PushScratchBytes(indices.size(), dim_), " bytes)"));
  }
  EMBEDDING_ASSIGN_OR_RETURN(PushResult result,
                             ApplyPush(*gradient, indices, options, cancel));
  counters_.AddPush(result.rows_updated, result.duplicate);
  return result;
}

absl::StatusOr<PushResult> EmbeddingTable::ApplyPush(
    GradientAccumulator& gradient, absl::Span<const int64_t> indices,
    const PushOptions& options, const Cancellation& cancel) {
  // The last moment to stop: the claim below is the first change.
  if (cancel.IsCancelled()) return cancel.Status();
  // Held from the claim to the version's increment, so that a snapshot's
  // exactly-once windows, rows and version agree.
  ReaderLock barrier(&mutation_barrier_);
  if (!options.client_id.empty()) {
    EMBEDDING_ASSIGN_OR_RETURN(
        const bool fresh,
        exactly_once_.Claim(options.client_id, options.sequence));
    if (!fresh) {
      return PushResult{.rows_updated = 0,
                        .version = version_.load(std::memory_order_relaxed),
                        .duplicate = true};
    }
  }
  if (scale_grad_by_freq_) gradient.ScaleByFrequency(indices);
  OptimizerSpec optimizer;
  {
    ReaderLock lock(&spec_mu_);
    optimizer = spec_.optimizer;
  }
  const int64_t step = step_.fetch_add(1, std::memory_order_relaxed) + 1;
  const StepParams params =
      MakeStepParams(optimizer, step, options.learning_rate);
  const MutationContext mutation = CurrentMutation();
  if (dynamic_ != nullptr) {
    PushResult result =
        ApplyDynamicPush(gradient, optimizer, params, step, mutation);
    pushes_applied_.fetch_add(1, std::memory_order_relaxed);
    result.version = version_.fetch_add(1, std::memory_order_relaxed) + 1;
    return result;
  }
  static_assert(kDenseStripes <= GradientAccumulator::kMaxGroups);
  // The accumulator holds global rows; group them by stripe, so that a
  // stripe's lock and counter are taken once for all its rows of a chunk.
  const absl::Span<const uint32_t> order =
      gradient.SlotsByGroup(kDenseStripes, [this](int64_t row) {
        return static_cast<uint32_t>(LocalRow(row) & (kDenseStripes - 1));
      });
  PrefetchRows(gradient, order, 0, std::min(kRowsPerLockChunk, order.size()));
  for (size_t begin = 0; begin < order.size(); begin += kRowsPerLockChunk) {
    const size_t end = std::min(order.size(), begin + kRowsPerLockChunk);
    ApplyChunk(gradient, order, begin, end, optimizer, params, mutation);
  }
  return PushResult{
      .rows_updated = static_cast<int64_t>(gradient.size()),
      .version = version_.fetch_add(1, std::memory_order_relaxed) + 1,
      .duplicate = false};
}

void EmbeddingTable::PrefetchRows(const GradientAccumulator& gradient,
                                  absl::Span<const uint32_t> order,
                                  size_t begin, size_t end) const {
  constexpr int64_t kFloatsPerLine = 64 / sizeof(float);
  for (size_t k = begin; k < end; ++k) {
    PrefetchRow(LocalRow(gradient.row(order[k])), /*state=*/true);
    // The gradient too: read in stripe order, it is no stream the CPU's
    // own prefetcher would follow.
    const float* sum = gradient.sum(order[k]);
    for (int64_t d = 0; d < dim_; d += kFloatsPerLine) {
      __builtin_prefetch(sum + d);
    }
  }
}

void EmbeddingTable::ApplyChunk(GradientAccumulator& gradient,
                                absl::Span<const uint32_t> order, size_t begin,
                                size_t end, const OptimizerSpec& optimizer,
                                const StepParams& params,
                                const MutationContext& mutation) {
  // order[begin, end) is sorted by stripe: each stripe once, ascending (the
  // lock order of every holder of several stripes; every other holder of a
  // stripe lock holds just one). A stripe with rows on both sides of a
  // chunk boundary is locked once per chunk. One counter bump per stripe
  // per chunk, and the locks' atomic instructions together rather than one
  // between every two rows' cache misses.
  const auto stripe_at = [&](size_t k) { return gradient.group(order[k]); };
  // The next chunk's rows, in a tight loop, so that their cache misses
  // overlap one another and this chunk's work.
  PrefetchRows(gradient, order, end,
               std::min(order.size(), end + kRowsPerLockChunk));
  LockStripes(gradient, order, begin, end);
  for (size_t k = begin; k < end; ++k) {
    Stripe& stripe = stripes_[stripe_at(k)];
    const bool first_of_stripe = k == begin || stripe_at(k) != stripe_at(k - 1);
    const bool last_of_stripe =
        k + 1 == end || stripe_at(k) != stripe_at(k + 1);
    const uint32_t slot = order[k];
    const int64_t row = LocalRow(gradient.row(slot));
    BeforeRowChange(stripe, row, mutation);
    if (first_of_stripe) stripe.seq.WriteBegin();
    StepRow(optimizer, params, gradient.sum(slot), row);
    if (last_of_stripe) stripe.seq.WriteEnd();
  }
  UnlockStripes(gradient, order, begin, end);
}

void EmbeddingTable::StepRow(const OptimizerSpec& optimizer,
                             const StepParams& params, const float* gradient,
                             int64_t local_row) {
  if constexpr (kSeqlockPlainStores) {
    ApplyOptimizerRow(optimizer, params, dim_, gradient, RowData(local_row),
                      StateData(local_row));
  } else {
    ApplyOptimizerRowShared(optimizer, params, dim_, gradient,
                            RowData(local_row), StateData(local_row));
  }
}

void EmbeddingTable::LockStripes(const GradientAccumulator& gradient,
                                 absl::Span<const uint32_t> order, size_t begin,
                                 size_t end) {
  for (size_t k = begin; k < end; ++k) {
    const uint32_t stripe = gradient.group(order[k]);
    if (k == begin || stripe != gradient.group(order[k - 1])) {
      stripes_[stripe].mu.Lock();
    }
  }
}

void EmbeddingTable::UnlockStripes(const GradientAccumulator& gradient,
                                   absl::Span<const uint32_t> order,
                                   size_t begin, size_t end) {
  for (size_t k = begin; k < end; ++k) {
    const uint32_t stripe = gradient.group(order[k]);
    if (k == begin || stripe != gradient.group(order[k - 1])) {
      stripes_[stripe].mu.Unlock();
    }
  }
}

absl::StatusOr<int64_t> EmbeddingTable::WriteRows(
    absl::Span<const int64_t> indices, absl::Span<const float> values,
    const Cancellation& cancel) {
  EMBEDDING_RETURN_IF_ERROR(ValidateIndices(indices, "index"));
  EMBEDDING_RETURN_IF_ERROR(CheckRowsShape(
      values, static_cast<int64_t>(indices.size()), dim_, "values"));
  EMBEDDING_RETURN_IF_ERROR(CheckIndexCount(indices.size(), "write"));
  {
    // 12 bytes per index (PositionIndex), freed before the rows change.
    const auto index_at = [&](uint32_t position) { return indices[position]; };
    PositionIndex seen;
    seen.Reset(indices.size());
    PeriodicCancelCheck check(cancel);
    for (size_t i = 0; i < indices.size(); ++i) {
      if (check.Cancelled()) return check.status();
      if (seen.FindOrInsert(indices[i], static_cast<uint32_t>(i), index_at) !=
          i) {
        return absl::InvalidArgumentError(
            absl::StrCat("index ", indices[i], " at position ", i,
                         " is written twice in one request"));
      }
    }
  }
  if (dynamic_ != nullptr) return WriteDynamicRows(indices, values, cancel);
  if (cancel.IsCancelled()) return cancel.Status();
  ReaderLock barrier(&mutation_barrier_);
  const MutationContext mutation = CurrentMutation();
  for (size_t i = 0; i < indices.size(); ++i) {
    const int64_t row = LocalRow(indices[i]);
    Stripe& stripe = StripeOf(row);
    WriterLock lock(&stripe.mu);
    BeforeRowChange(stripe, row, mutation);
    StoreRow(stripe, row, &values[i * dim_]);
  }
  counters_.AddWrite(static_cast<int64_t>(indices.size()));
  return version_.fetch_add(1, std::memory_order_relaxed) + 1;
}

absl::StatusOr<int64_t> EmbeddingTable::WriteRowRange(
    int64_t start_row, absl::Span<const float> values,
    const Cancellation& cancel) {
  EMBEDDING_RETURN_IF_ERROR(DenseOnly("write a row range"));
  const int64_t rows = static_cast<int64_t>(values.size()) / dim_;
  if (values.empty() || static_cast<int64_t>(values.size()) % dim_ != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("values has ", values.size(),
                     " elements, expected a positive multiple of "
                     "embedding_dim ",
                     dim_));
  }
  // rows >= 1 and num_embeddings >= 1: the difference cannot overflow.
  if (start_row < 0 || start_row > num_embeddings_ - rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(rows, " rows from row ", start_row, " are not within [0, ",
                     num_embeddings_, ")"));
  }
  EMBEDDING_RETURN_IF_ERROR(CheckFiniteRows(values, dim_, "values"));
  if (cancel.IsCancelled()) return cancel.Status();
  const HeldRange held = HeldIn(start_row, start_row + rows);
  ReaderLock barrier(&mutation_barrier_);
  const MutationContext mutation = CurrentMutation();
  for (int64_t i = 0; i < held.count; ++i) {
    const int64_t global = held.Row(i);
    const int64_t row = LocalRow(global);
    Stripe& stripe = StripeOf(row);
    WriterLock lock(&stripe.mu);
    BeforeRowChange(stripe, row, mutation);
    StoreRow(stripe, row, &values[(global - start_row) * dim_]);
  }
  counters_.AddWrite(held.count);
  return version_.fetch_add(1, std::memory_order_relaxed) + 1;
}

EmbeddingTable::HeldRange EmbeddingTable::HeldIn(int64_t start_row,
                                                 int64_t end_row) const {
  const int64_t shards = layout_.shard_count();
  const int64_t ahead = (shard_index_ - start_row % shards + shards) % shards;
  // start_row + ahead may pass INT64_MAX only when it is past end_row.
  if (ahead >= end_row - start_row) return {.first = start_row, .count = 0};
  const int64_t first = start_row + ahead;
  // end_row - first > 0: no overflow, and first + (count - 1) * shards <
  // end_row.
  return {.first = first,
          .count = (end_row - first - 1) / shards + 1,
          .stride = shards};
}

absl::StatusOr<std::vector<int64_t>> EmbeddingTable::HeldRows(
    int64_t start_row, int64_t end_row, int64_t max_rows) const {
  EMBEDDING_RETURN_IF_ERROR(DenseOnly("list held rows by range"));
  if (start_row < 0 || end_row < start_row || end_row > num_embeddings_) {
    return absl::InvalidArgumentError(
        absl::StrCat("row range [", start_row, ", ", end_row,
                     ") is not within [0, ", num_embeddings_, "]"));
  }
  if (max_rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_rows must be >= 1, got ", max_rows));
  }
  const HeldRange held = HeldIn(start_row, end_row);
  std::vector<int64_t> rows;
  rows.reserve(std::min(held.count, max_rows));
  for (int64_t i = 0; i < held.count && i < max_rows; ++i) {
    rows.push_back(held.Row(i));
  }
  return rows;
}

absl::StatusOr<std::vector<int64_t>> EmbeddingTable::HeldRows(
    int64_t start_row, int64_t end_row) const {
  return HeldRows(start_row, end_row, std::numeric_limits<int64_t>::max());
}

absl::Status EmbeddingTable::SetOptimizer(const OptimizerSpec& optimizer) {
  EMBEDDING_RETURN_IF_ERROR(ValidateOptimizerSpec(optimizer));
  WriterLock lock(&spec_mu_);
  if (optimizer.kind != spec_.optimizer.kind) {
    return absl::FailedPreconditionError(absl::StrCat(
        "table ", QuoteForMessage(name_), " uses ",
        InfoOf(spec_.optimizer.kind).name, "; its optimizer cannot change to ",
        InfoOf(optimizer.kind).name));
  }
  spec_.optimizer = optimizer;
  return absl::OkStatus();
}

}  // namespace embedding
