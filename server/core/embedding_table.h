// EmbeddingTable: one torch.nn.Embedding weight matrix (this server's shard
// of it) with its optimizer state, serving lookups and sparse pushes.
//
//   absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
//       EmbeddingTable::Create(spec, /*initial_weights=*/{});
//   std::vector<float> out(indices.size() * dim);
//   absl::Status s = (*table)->Lookup(indices, DType::kFloat32, out.data());
//   (*table)->PushGradients(indices, grad, PushOptions{});
//
// Bag pooling and its backward are in bag.h, the coalescing of a push's
// gradient in gradient_accumulator.h; this class owns the rows, their locks
// and the optimizer state.
//
// Long operations take a Cancellation (common/cancellation.h) and ask it
// every kRowsBetweenCancelChecks rows; a cancelled one returns
// cancel.Status(). Reads stop where they are (their output is then partly
// written). Pushes and writes ask only before they change anything: a
// cancelled one changes nothing, and once one starts to apply it finishes.
//
// Thread-safe: any number of lookups and pushes may run at once. Rows are
// guarded by striped locks (row r by stripe r % kLockStripes). A change to a
// row (push, write, max_norm renorm) holds its stripe's writer lock, so
// concurrent pushes to one row never lose each other's update, and bumps the
// stripe's sequence counter around its stores. A lookup reads optimistically
// (a seqlock, seqlock.h): it copies the row, then checks the counter and
// copies again if a change overlapped, so it never returns a torn row and
// writes nothing shared; after kOptimisticReads overlapped copies it takes
// the reader lock, so a reader cannot starve. Every request is validated
// completely before any row is touched: a rejected request changes nothing.
//
// Snapshots (table_snapshot.h) take a consistent cut while all this goes on:
// every mutation (push, write, max_norm renorm) holds the table's mutation
// barrier shared for its duration, and stamps each row it changes with the
// current epoch; beginning a snapshot holds the barrier exclusively for an
// instant. A mutation of a row the snapshot has yet to copy first saves the
// row's pre-image (copy-on-write).
#ifndef SERVER_CORE_EMBEDDING_TABLE_H_
#define SERVER_CORE_EMBEDDING_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/cancellation.h"
#include "common/shard_layout.h"
#include "server/core/bag.h"
#include "server/core/dtype.h"
#include "server/core/dynamic_rows.h"
#include "server/core/exactly_once.h"
#include "server/core/gradient_accumulator.h"
#include "server/core/memory_budget.h"
#include "server/core/mutex.h"
#include "server/core/optimizer.h"
#include "server/core/seqlock.h"
#include "server/core/table_counters.h"
#include "server/core/table_spec.h"

namespace embedding {

class TableLoader;
class TableSnapshot;

struct PushOptions {
  // Replaces the table's learning rate for this push.
  std::optional<float> learning_rate;
  // Exactly-once: a (client_id, sequence) already applied is not applied
  // again (the rule is in exactly_once.h). Empty client_id disables the
  // check; at most kMaxClientIdBytes.
  std::string client_id;
  uint64_t sequence = 0;
};

// Why CreateTable refuses initial weights for a dynamic table.
inline constexpr char kNoInitialWeightsForDynamicTables[] =
    "a dynamic table takes no initial_weights: its rows are created by "
    "pushes, from the initializer";

// An upper bound of the scratch memory one push of `indices` indices (a
// PushGradients, or a PushBagGradients of that many bag indices) of a table
// of `dim` columns allocates while it runs, freed when it ends:
// 48 * indices + 4 * indices * dim + 4224 bytes; INT64_MAX when that
// overflows. A caller that accounts for memory reserves it before the push.
// (Each thread also keeps up to GradientAccumulator::kMaxRetainedBytes of
// scratch between pushes.)
int64_t PushScratchBytes(int64_t indices, int64_t dim);

struct PushResult {
  int64_t rows_updated = 0;  // Distinct rows the optimizer stepped.
  int64_t version = 0;       // Table version after the push.
  bool duplicate = false;    // Already applied earlier; nothing changed now.
  // Dynamic tables: ids that got a row (and were stepped: counted in
  // rows_updated too), ids whose gradient was dropped (not yet admitted),
  // rows evicted to make room.
  int64_t rows_admitted = 0;
  int64_t rows_dropped = 0;
  int64_t rows_evicted = 0;
};

// A consistent-enough snapshot for GetTable/ListTables.
struct TableStats {
  TableSpec spec;
  int64_t local_rows = 0;
  int64_t memory_bytes = 0;
  int64_t version = 0;
  int64_t step = 0;
  // What the table served since it was created or restored.
  TableCounts counts;
  // Set for a dynamic table (local_rows is then its rows held).
  std::optional<DynamicCounts> dynamic;
};

class EmbeddingTable {
 public:
  // Creates a table from a validated spec. `initial_weights` is empty (use
  // the initializer) or the global table's [num_embeddings, dim] floats; the
  // padding row starts as zeros either way. INVALID_ARGUMENT if the spec or
  // the weights (size, non-finite values) are bad; RESOURCE_EXHAUSTED when
  // the memory cannot be allocated; cancel.Status() (everything freed) when
  // cancelled during the initialisation.
  static absl::StatusOr<std::unique_ptr<EmbeddingTable>> Create(
      TableSpec spec, absl::Span<const float> initial_weights,
      const Cancellation& cancel = NeverCancelled());

  // Bytes the weights and optimizer state of `spec` take on this server.
  // INVALID_ARGUMENT when the size overflows 64 bits (or for a dim or shard
  // that ValidateTableSpec refuses).
  static absl::StatusOr<int64_t> MemoryBytes(const TableSpec& spec);

  EmbeddingTable(const EmbeddingTable&) = delete;
  EmbeddingTable& operator=(const EmbeddingTable&) = delete;

  int64_t dim() const { return dim_; }
  TableStats Stats() const;

  // Counts this table against a memory budget until it is destroyed; its
  // snapshots' pre-images count too while they are kept. Call before the
  // table is shared.
  void HoldBudget(BudgetLease lease) { budget_ = std::move(lease); }

  // Replaces the exactly-once options (idle time, client limits, clock).
  void SetExactlyOnceOptions(ExactlyOnceOptions options) {
    exactly_once_.SetOptions(std::move(options));
  }

  // Writes the rows of `indices` (global ids) to `out` as `dtype`, row after
  // row (indices.size() * dim elements). With max_norm, rows over the norm
  // are renormalised in place first, as torch does. INVALID_ARGUMENT names
  // the first index out of range (or held by another shard) and its position.
  absl::Status Lookup(absl::Span<const int64_t> indices, DType dtype, void* out,
                      const Cancellation& cancel = NeverCancelled());

  // Writes the rows of `indices` to `out` as stored: float32, no max_norm
  // renormalisation (an export, not a forward pass). INVALID_ARGUMENT as
  // Lookup.
  absl::Status ReadRows(absl::Span<const int64_t> indices, float* out,
                        const Cancellation& cancel = NeverCancelled());

  // F.embedding_bag (see PoolBags): writes [bags, dim] pooled rows to `out`
  // as `dtype`. In MAX mode, `max_indices` (bags * dim) receives the winning
  // row per element (for empty bags -1, or INT64_MIN in a dynamic table,
  // where -1 is an id: BagMarkers); it may be null otherwise. A dynamic
  // table's absent ids read as in Lookup.
  // INVALID_ARGUMENT for an index as Lookup, or MAX on a scale_grad_by_freq
  // table. The batch itself was checked when it was validated.
  absl::Status LookupBag(const ValidatedBagBatch& batch, DType dtype, void* out,
                         int64_t* max_indices,
                         const Cancellation& cancel = NeverCancelled());

  // Backward of Lookup plus one optimizer step. `grad` is
  // [indices.size(), dim] float32. INVALID_ARGUMENT for a bad index, a size
  // mismatch or a non-finite gradient, or a bad client_id; the exactly-once
  // codes of ExactlyOnceTracker::Claim (FAILED_PRECONDITION for a sequence
  // too old to tell whether it was applied or a forgotten client,
  // RESOURCE_EXHAUSTED for too many clients); RESOURCE_EXHAUSTED when its
  // scratch cannot be allocated (at most PushScratchBytes). Cancelled, it
  // changes nothing.
  absl::StatusOr<PushResult> PushGradients(
      absl::Span<const int64_t> indices, absl::Span<const float> grad,
      const PushOptions& options,
      const Cancellation& cancel = NeverCancelled());

  // Backward of LookupBag plus one optimizer step. `grad` is [bags, dim];
  // in MAX mode `max_indices` is what LookupBag returned. Errors as LookupBag
  // and PushGradients, and INVALID_ARGUMENT for bad max_indices.
  absl::StatusOr<PushResult> PushBagGradients(
      const ValidatedBagBatch& batch, absl::Span<const float> grad,
      absl::Span<const int64_t> max_indices, const PushOptions& options,
      const Cancellation& cancel = NeverCancelled());

  // Overwrites rows: `values` is [indices.size(), dim]. Each index may appear
  // once. Returns the new version. Cancelled, it changes nothing. On a
  // dynamic table a held id's row is overwritten (its optimizer state
  // kept), and an id without a row is admitted (admit_after aside) with
  // fresh state, evicting as a push's admission would but never a row of
  // this write: RESOURCE_EXHAUSTED, before any change, when more of its ids
  // fall in one stripe than the stripe holds. A written row counts as
  // pushed now for eviction and expiry.
  absl::StatusOr<int64_t> WriteRows(
      absl::Span<const int64_t> indices, absl::Span<const float> values,
      const Cancellation& cancel = NeverCancelled());

  // Overwrites the rows of the global range [start_row, start_row + rows)
  // that this shard holds, from `values` = [rows, dim] for the whole range.
  // INVALID_ARGUMENT when the range is not within the table. Cancelled, it
  // changes nothing.
  absl::StatusOr<int64_t> WriteRowRange(
      int64_t start_row, absl::Span<const float> values,
      const Cancellation& cancel = NeverCancelled());

  // Global ids of the rows this shard holds in [start_row, end_row), at most
  // `max_rows` of them from the first held row >= start_row, ascending: read
  // a range in chunks, each starting at the last row + 1. INVALID_ARGUMENT
  // when the range is not within [0, num_embeddings] or max_rows < 1.
  absl::StatusOr<std::vector<int64_t>> HeldRows(int64_t start_row,
                                                int64_t end_row,
                                                int64_t max_rows) const;

  // A dynamic table's held ids (expired rows aside), in slot order: at most
  // `max_rows` of them from slot `*cursor` on, advancing it; empty at the
  // end. Read a table in chunks from cursor 0; not a cut (a snapshot is):
  // rows admitted or evicted meanwhile may be missed or seen. UNIMPLEMENTED
  // for a dense table (HeldRows), INVALID_ARGUMENT for max_rows < 1.
  absl::StatusOr<std::vector<int64_t>> HeldIds(int64_t* cursor,
                                               int64_t max_rows) const;

  // Every held row of the range at once. Deprecated: a range of the whole
  // table costs 8 bytes per row; use the chunked overload.
  absl::StatusOr<std::vector<int64_t>> HeldRows(int64_t start_row,
                                                int64_t end_row) const;

  // INVALID_ARGUMENT naming the first index outside [0, num_embeddings) or
  // held by another shard, and its position.
  absl::Status CheckIndices(absl::Span<const int64_t> indices) const {
    return ValidateIndices(indices, "index");
  }

  // Replaces the optimizer's hyper-parameters. FAILED_PRECONDITION when
  // `spec` is of another kind than the table's (its state would not fit).
  absl::Status SetOptimizer(const OptimizerSpec& spec);

  // Begins a snapshot of the table as it is now (see table_snapshot.h): all
  // rows, or with `since` (the epoch() of an earlier snapshot) only the rows
  // changed after that snapshot's cut. FAILED_PRECONDITION while another
  // snapshot of the table is open; INVALID_ARGUMENT for a `since` that is
  // not an earlier epoch. The table must outlive the snapshot.
  absl::StatusOr<std::unique_ptr<TableSnapshot>> BeginSnapshot(
      std::optional<uint32_t> since);

 private:
  friend class TableLoader;
  friend class TableSnapshot;

  // A dense table's lock stripes; a dynamic table's are its row index's.
  static constexpr int64_t kDenseStripes = 1024;
  // Copies of a row a lookup tries before it takes the reader lock.
  static constexpr int kOptimisticReads = 4;
  // Rows ahead that a gather or push prefetches.
  static constexpr size_t kPrefetchDistance = 8;
  // Rows a push steps under one set of stripe locks: bounds how long it
  // holds a stripe (readers retry meanwhile, then wait for the lock).
  static constexpr size_t kRowsPerLockChunk = 16;

  // A row (weights, then optimizer state) as it was at a snapshot's cut,
  // kept because it changed before the snapshot copied it.
  struct PreImage {
    uint32_t stamp;  // The row's epoch stamp at the cut.
    std::vector<float> values;
    // Dynamic tables: the slot's id at the cut (kReservedId: none) and its
    // usage.
    int64_t id = kReservedId;
    DynamicRows::Usage usage;
  };

  using PreImages = absl::flat_hash_map<int64_t, PreImage>;

  // Two cache lines: the first holds what every access of a row touches,
  // the sequence counter and the lock (56 bytes); the second the pointer
  // only snapshots use.
  struct alignas(64) Stripe {
    // Odd while a row of the stripe changes; changed only under `mu` held
    // exclusively.
    SeqCounter seq;
    SharedMutex mu;
    // Pre-images of this stripe's rows, by local row; allocated when the
    // first is kept.
    std::unique_ptr<PreImages> pre_images ABSL_GUARDED_BY(mu);
  };
  static_assert(sizeof(SeqCounter) + sizeof(SharedMutex) <= 64 &&
                    sizeof(Stripe) == 128,
                "a stripe's counter and lock share one cache line");

  // What a mutation needs to know of the snapshot in progress; read under
  // the mutation barrier, so it stays valid until the barrier is released.
  struct MutationContext {
    uint32_t epoch;  // Stamp of the rows the mutation changes.
    bool snapshot;   // A snapshot is open...
    uint32_t cut;    // ...of the rows whose stamp was <= cut at its cut
    int64_t since;   // ...and > since (-1: every row).
  };

  EmbeddingTable(TableSpec spec, int64_t local_rows, int64_t state_width,
                 std::unique_ptr<DynamicRows> dynamic);

  // Allocates the table of a validated `spec` (rows not yet written).
  // INVALID_ARGUMENT when its size overflows, RESOURCE_EXHAUSTED when it
  // cannot be allocated.
  static absl::StatusOr<std::unique_ptr<EmbeddingTable>> Allocate(
      TableSpec spec);

  // The global rows this shard holds in a range: Row(0), ..., Row(count-1).
  struct HeldRange {
    int64_t first = 0;
    int64_t count = 0;
    int64_t stride = 1;
    int64_t Row(int64_t i) const { return first + i * stride; }
  };
  // REQUIRES: 0 <= start_row <= end_row.
  HeldRange HeldIn(int64_t start_row, int64_t end_row) const;

  // Bytes a row's pre-image holds, as counted against the budget.
  int64_t PreImageBytes() const;

  MutationContext CurrentMutation() const
      ABSL_SHARED_LOCKS_REQUIRED(mutation_barrier_);

  // Call before changing a row (weights or state) during a mutation: saves
  // its pre-image if an open snapshot still needs it, and stamps it.
  void BeforeRowChange(Stripe& stripe, int64_t local_row,
                       const MutationContext& mutation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stripe.mu);

  // Ends the open snapshot and frees its pre-images.
  void EndSnapshot();

  // This table's BagMarkers; INVALID_ARGUMENT for MAX mode on a
  // scale_grad_by_freq table, as torch.
  absl::StatusOr<BagMarkers> CheckBagMode(BagMode mode) const;

  // INVALID_ARGUMENT naming the first index not held by this shard.
  absl::Status ValidateIndices(absl::Span<const int64_t> indices,
                               const char* what) const;
  // UNIMPLEMENTED for a dynamic table, which cannot `what` yet.
  absl::Status DenseOnly(const char* what) const;
  int64_t LocalRow(int64_t global_row) const {
    return layout_.LocalRow(global_row);
  }
  int64_t GlobalRow(int64_t local_row) const {
    return layout_.GlobalRow(shard_index_, local_row);
  }
  bool IsPadding(int64_t global_row) const {
    return has_padding_ && global_row == padding_global_row_;
  }
  Stripe& StripeOf(int64_t local_row) const {
    return stripes_[local_row & stripe_mask_];
  }
  float* RowData(int64_t local_row) const {
    return weights_.get() + local_row * dim_;
  }
  float* StateData(int64_t local_row) const {
    return state_.get() + local_row * state_width_;
  }

  // Asks the CPU to load a row (and with `state`, its optimizer state, for
  // writing) into the cache.
  // Always inlined: GCC deems a function whose only effect is a prefetch
  // free of side effects and drops calls to it.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void PrefetchRow(int64_t local_row,
                                                bool state) const;

  // Copies a row's weights to `out` (dim floats, any alignment) as of one
  // change: optimistically, then under the reader lock (see the class
  // comment).
  void CopyRow(int64_t local_row, void* out) const;

  // CopyRow to `out`; with `renorm`, a row over max_norm is first
  // renormalised in place (under the writer lock) and `out` gets the
  // renormed row.
  void ReadRow(int64_t local_row, bool renorm, float* out);

  // With max_norm: copies the row to `out` and renorms it (and the stored
  // row) when over the norm. REQUIRES: the barrier held shared.
  void RenormHeldRow(Stripe& stripe, int64_t local_row,
                     const MutationContext& mutation, float* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stripe.mu);

  // Replaces a row's weights with `values`, for the optimistic readers.
  void StoreRow(Stripe& stripe, int64_t local_row, const float* values)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stripe.mu);

  // Lookup and ReadRows: rows of `indices` to `out` as `dtype`.
  absl::Status Gather(absl::Span<const int64_t> indices, DType dtype,
                      bool renorm, void* out, const Cancellation& cancel);

  // Dynamic tables (dynamic_ set). Gather of validated ids.
  absl::Status GatherDynamic(absl::Span<const int64_t> ids, DType dtype,
                             bool renorm, void* out,
                             const Cancellation& cancel);
  // Copies the row of `id` to `out` (dim floats, any alignment) as of one
  // change, as CopyRow; false (`out` untouched) when `id` holds no row.
  bool CopyDynamicRow(int64_t id, const DynamicRows::Place& place,
                      void* out) const;
  // The row of `id` to `out`: its held row (renormed in place with
  // `renorm`, as ReadRow), or the initializer's values (renormed, not
  // stored). Returns whether the id holds a row.
  bool ReadDynamicRow(int64_t id, bool renorm, float* out);
  // The values an id holding no row reads: FillRow, or zeros for padding.
  void FillAbsentRow(int64_t id, float* out) const;
  // ApplyPush of a dynamic table, after the claim: steps the held rows,
  // admits the others.
  PushResult ApplyDynamicPush(GradientAccumulator& gradient,
                              const OptimizerSpec& optimizer,
                              const StepParams& params, int64_t step,
                              const MutationContext& mutation);
  // WriteRows of a dynamic table, its request validated (ids, values, no
  // id twice): RESOURCE_EXHAUSTED when more of its ids fall in one stripe
  // than the stripe holds; otherwise overwrites the rows held (optimizer
  // state kept) and admits the other ids, which may evict rows but none of
  // the write's (embedding_table_dynamic_write.cc).
  absl::StatusOr<int64_t> WriteDynamicRows(absl::Span<const int64_t> ids,
                                           absl::Span<const float> values,
                                           const Cancellation& cancel);
  // Gives `id` (holding no row, or an expired one) the slot AdmissionSlot
  // chose: saves what the slot held for an open snapshot, occupies it with
  // `touch`, stores `values` and fresh optimizer state. Returns what it
  // replaced. REQUIRES: the stripe's writer lock, its counter odd.
  DynamicRows::Replaced AdmitRow(Stripe& stripe,
                                 const DynamicRows::Place& place, int64_t id,
                                 int64_t slot, uint64_t touch, int64_t pushes,
                                 const float* values,
                                 const OptimizerSpec& optimizer,
                                 const MutationContext& mutation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stripe.mu);
  // PrefetchRow (with state) of the held rows of order[begin, end).
  void PrefetchDynamicRows(const GradientAccumulator& gradient,
                           absl::Span<const uint32_t> order, size_t begin,
                           size_t end) const;
  // What a dynamic push carries across its chunks.
  struct DynamicChange {
    uint64_t first_touch;   // The push's step, in a touch.
    int64_t pushes_before;  // Pushes of the table before this one.
    int64_t expirations = 0;
    // Scratch of the chunks, allocated once per push: a new row's values,
    // and the chunk's ids without a row (positions in `order`).
    std::vector<float> fresh;
    std::vector<size_t> absent;
  };
  // The rows of order[begin, end): every row of the stripes they cover,
  // held under those stripes' writer locks. Within a stripe the held rows
  // (not expired) are stepped first, then the others counted toward
  // admission and admitted (DynamicRows), so that no row of the push is
  // evicted before its step.
  void ApplyDynamicChunk(GradientAccumulator& gradient,
                         absl::Span<const uint32_t> order, size_t begin,
                         size_t end, const OptimizerSpec& optimizer,
                         const StepParams& params,
                         const MutationContext& mutation, DynamicChange& change,
                         PushResult& result) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // The step of one row of a push: its new weights and state, stored for
  // the optimistic readers. REQUIRES: the row's stripe counter is odd.
  void StepRow(const OptimizerSpec& optimizer, const StepParams& params,
               const float* gradient, int64_t local_row);
  // Locks (or unlocks) the stripes of order[begin, end), grouped by stripe.
  void LockStripes(const GradientAccumulator& gradient,
                   absl::Span<const uint32_t> order, size_t begin,
                   size_t end) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  void UnlockStripes(const GradientAccumulator& gradient,
                     absl::Span<const uint32_t> order, size_t begin,
                     size_t end) ABSL_NO_THREAD_SAFETY_ANALYSIS;

  // PushGradients and PushBagGradients once their tensors are validated:
  // checks the options, `accumulate` sums the gradient of the push (of
  // `indices`) into this thread's accumulator, then ApplyPush.
  // RESOURCE_EXHAUSTED when the scratch cannot be allocated.
  absl::StatusOr<PushResult> Push(
      absl::Span<const int64_t> indices, const PushOptions& options,
      const Cancellation& cancel,
      absl::FunctionRef<absl::Status(GradientAccumulator&)> accumulate);

  // The coalesced gradient of a push of `indices` -> one optimizer step per
  // row, unless options (checked by Push) name a push already applied or
  // `cancel` says stop (asked once, before anything changes).
  absl::StatusOr<PushResult> ApplyPush(GradientAccumulator& gradient,
                                       absl::Span<const int64_t> indices,
                                       const PushOptions& options,
                                       const Cancellation& cancel);

  // PrefetchRow (with state) of the rows of order[begin, end), slots of
  // `gradient`.
  void PrefetchRows(const GradientAccumulator& gradient,
                    absl::Span<const uint32_t> order, size_t begin,
                    size_t end) const;

  // ApplyPush's optimizer steps of the rows of order[begin, end) (slots of
  // `gradient`, grouped by stripe), holding those rows' stripes' writer
  // locks, all taken before the first step and released after the last.
  // The analysis cannot follow locks taken in a loop.
  void ApplyChunk(GradientAccumulator& gradient,
                  absl::Span<const uint32_t> order, size_t begin, size_t end,
                  const OptimizerSpec& optimizer, const StepParams& params,
                  const MutationContext& mutation)
      ABSL_NO_THREAD_SAFETY_ANALYSIS;

  // Destroyed last: the budget gets the bytes back once they are freed.
  BudgetLease budget_;

  const std::string name_;
  const int64_t num_embeddings_;
  const int64_t dim_;
  const int64_t local_rows_;
  const int64_t state_width_;
  const ShardLayout layout_;
  const int32_t shard_index_;
  const bool has_padding_;
  // -1 when the table has none (a dynamic table's may be any id: see
  // has_padding_).
  const int64_t padding_global_row_;
  const std::optional<float> max_norm_;
  const float norm_type_;
  const bool scale_grad_by_freq_;
  const InitializerSpec initializer_;
  const uint64_t seed_;
  // Dense: kDenseStripes. Dynamic: the row index's (any power of two).
  const int64_t stripe_count_;
  const int64_t stripe_mask_;
  // Set for a dynamic table: which id each slot (local row) holds.
  const std::unique_ptr<DynamicRows> dynamic_;

  // Row data: row r and its state are guarded by StripeOf(r). Lookups load
  // the weights without the lock (seqlock.h), so every store to the weights
  // of a published table happens while its stripe's counter is odd, and is
  // a relaxed atomic under TSan (StoreRow, ApplyPush; kSeqlockPlainStores);
  // the state is read only under the lock. Creation and TableLoader write rows
  // before the table is shared. Raw arrays (not vectors) so the memory is not
  // zero-filled twice at creation.
  const std::unique_ptr<float[]> weights_;
  const std::unique_ptr<float[]> state_;
  const std::unique_ptr<Stripe[]> stripes_;
  // The epoch in which each row last changed (0: not since creation or
  // restore). Written under the row's stripe lock; atomic only so that a
  // snapshot may skip rows unchanged since an earlier cut without taking
  // their locks (stamps only grow, so a stale read is still <= since).
  const std::unique_ptr<std::atomic<uint32_t>[]> stamps_;

  mutable SharedMutex spec_mu_;
  TableSpec spec_ ABSL_GUARDED_BY(spec_mu_);  // The optimizer may change.

  // Held shared by every mutation, exclusively to begin or end a snapshot.
  // Writers are preferred: pushes hold it shared nearly all the time.
  // Lock order: mutation_barrier_, then a stripe, spec_mu_ or exactly_once_.
  mutable SharedMutex mutation_barrier_{SharedMutex::Prefer::kWriters};
  uint32_t epoch_ ABSL_GUARDED_BY(mutation_barrier_) = 1;
  bool snapshot_open_ ABSL_GUARDED_BY(mutation_barrier_) = false;
  uint32_t snapshot_cut_ ABSL_GUARDED_BY(mutation_barrier_) = 0;
  int64_t snapshot_since_ ABSL_GUARDED_BY(mutation_barrier_) = -1;
  // Local rows below it have been copied by the open snapshot, so they need
  // no pre-image. The saver stores it after copying (release); a mutation
  // loads it under the row's stripe lock, so a value it sees never runs
  // ahead of the copy (acquire).
  std::atomic<int64_t> snapshot_copied_below_{0};

  std::atomic<int64_t> version_{0};
  std::atomic<int64_t> step_{0};
  // Dynamic tables: pushes applied so far (step_ counts them as they begin).
  // Readers judge expiry by it, so that no lookup sees as expired a row that
  // a push under way still steps (that push judges by the pushes before
  // it).
  std::atomic<int64_t> pushes_applied_{0};
  ExactlyOnceTracker exactly_once_;
  // Bumped once per successful call (never per row, never under a lock).
  TableCounters counters_;
};

// Implementation.

inline void EmbeddingTable::PrefetchRow(int64_t local_row, bool state) const {
  // Random rows miss the cache; a push's lock (an atomic instruction) keeps
  // the CPU from overlapping those misses on its own, and a lookup's copy
  // loop runs too few rows ahead, so ask for them early.
  constexpr int64_t kFloatsPerLine = 64 / sizeof(float);
  const float* row = RowData(local_row);
  for (int64_t d = 0; d < dim_; d += kFloatsPerLine) {
    __builtin_prefetch(row + d);
  }
  if (state) {
    const float* row_state = StateData(local_row);
    for (int64_t d = 0; d < state_width_; d += kFloatsPerLine) {
      __builtin_prefetch(row_state + d, 1);
    }
    __builtin_prefetch(&stamps_[local_row], 1);
  }
}

}  // namespace embedding

#endif  // SERVER_CORE_EMBEDDING_TABLE_H_
