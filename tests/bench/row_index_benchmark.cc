// The dynamic tables' row index (server/core/row_index.h: open addressing,
// lock-free Find in a seqlock window) in front of a 1M x 64 float arena with
// one SeqCounter + SharedMutex per stripe, as EmbeddingTable uses them;
// beside anchors that copy or update the same rows at slots known in advance
// (no index). items_per_second is rows. (It also measured the index against
// an absl::flat_hash_map per stripe; row_index.h keeps the numbers.)
//
//   row_index_benchmark --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <random>
#include <vector>

#include "server/core/huge_pages.h"
#include "server/core/mutex.h"
#include "server/core/row_index.h"
#include "server/core/seqlock.h"

namespace embedding {
namespace {

constexpr int64_t kCapacity = 1000000;
constexpr int64_t kDim = 64;
constexpr int64_t kIdPoolSize = int64_t{1} << 20;
constexpr int kOptimisticReads = 4;
constexpr size_t kBlock = 32;            // Ids hashed and prefetched at once.
constexpr size_t kPrefetchDistance = 8;  // As EmbeddingTable's gather.
// BM_Lookup's pipeline: ids ahead whose buckets, and rows, it prefetches
// (12/4 did best of 6/2 to 64/8 here: the rate hardly depends on them).
constexpr int64_t kBucketsAhead = 12;
constexpr int64_t kRowsAhead = 4;

struct alignas(64) Stripe {
  SeqCounter seq;
  SharedMutex mu;
};

using Index = OpenAddressingRowIndex;

// An index filled to capacity in front of an arena, with a pool of present
// ids (uniform, with repeats) and their slots for the anchors.
struct Table {
  Table() {
    const int32_t stripe_count = Index::StripesFor(kCapacity);
    index = *Index::Create(kCapacity, stripe_count);
    stripes.reset(new Stripe[stripe_count]);
    rows.reset(new float[kCapacity * kDim]);
    AdviseHugePages(rows.get(), kCapacity * kDim * int64_t{sizeof(float)});
    std::fill_n(rows.get(), kCapacity * kDim, 0.5f);
    std::mt19937_64 random(1);
    std::vector<int64_t> present;
    while (static_cast<int64_t>(present.size()) < kCapacity) {
      const int64_t id = static_cast<int64_t>(random() >> 1);
      const uint64_t hash = Index::Hash(id);
      const uint32_t s = index->StripeOf(hash);
      if (index->Full(s) || index->Find(s, id, hash) >= 0) continue;
      index->Insert(s, id, hash);
      present.push_back(id);
    }
    ids.resize(kIdPoolSize);
    slots.resize(kIdPoolSize);
    for (int64_t k = 0; k < kIdPoolSize; ++k) {
      ids[k] = present[random() % present.size()];
      const uint64_t hash = Index::Hash(ids[k]);
      const uint32_t s = index->StripeOf(hash);
      slots[k] =
          index->Slot(s, static_cast<uint32_t>(index->Find(s, ids[k], hash)));
    }
  }
  float* Row(int64_t slot) const { return &rows[slot * kDim]; }

  std::unique_ptr<Index> index;
  std::unique_ptr<Stripe[]> stripes;
  std::unique_ptr<float[]> rows;
  std::vector<int64_t> ids;
  std::vector<int64_t> slots;
};

Table& TableOf() {
  static Table* table = new Table();
  return *table;
}

// The thread's stretch of the id pool, a batch at a time.
class Batches {
 public:
  explicit Batches(const benchmark::State& state)
      : batch_(state.range(0)),
        next_(state.thread_index() * (kIdPoolSize / state.threads())) {}
  int64_t Next() {
    if (next_ + batch_ > kIdPoolSize) next_ = 0;
    const int64_t begin = next_;
    next_ += batch_;
    return begin;
  }
  int64_t size() const { return batch_; }

 private:
  const int64_t batch_;
  int64_t next_;
};

void Finish(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["bytes_per_row"] =
      benchmark::Counter(static_cast<double>(Index::MemoryBytes(
                             kCapacity, Index::StripesFor(kCapacity))) /
                             kCapacity,
                         benchmark::Counter::kAvgThreads);
}

// A read of one row: Find and copy in one seqlock window, retried, then
// under the reader lock (EmbeddingTable::CopyRow). -1 when absent.
int64_t ReadRow(const Table& table, int64_t id, uint64_t hash, uint32_t s,
                float* out) {
  const auto find_and_copy = [&] {
    const int64_t j = table.index->Find(s, id, hash);
    if (j >= 0) {
      LoadFloatsRelaxed(table.Row(table.index->Slot(s, j)), kDim, out);
    }
    return j;
  };
  Stripe& stripe = table.stripes[s];
  for (int attempt = 0; attempt < kOptimisticReads; ++attempt) {
    const uint32_t begin = stripe.seq.ReadBegin();
    if ((begin & 1) != 0) continue;
    const int64_t j = find_and_copy();
    if (stripe.seq.ReadValid(begin)) return j;
  }
  ReaderLock lock(&stripe.mu);
  return find_and_copy();
}

void PrefetchRow(const float* row) {
  for (int64_t d = 0; d < kDim; d += 64 / sizeof(float)) {
    __builtin_prefetch(row + d);
  }
}

// A lookup one id at a time, nothing prefetched.
void BM_LookupSimple(benchmark::State& state) {
  const Table& table = TableOf();
  Batches batches(state);
  std::vector<float> out(batches.size() * kDim);
  for (auto _ : state) {
    const int64_t begin = batches.Next();
    for (int64_t i = 0; i < batches.size(); ++i) {
      const int64_t id = table.ids[begin + i];
      const uint64_t hash = Index::Hash(id);
      ReadRow(table, id, hash, table.index->StripeOf(hash), &out[i * kDim]);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state);
}

// A lookup as a three-stage software pipeline over the batch: id
// i+kBucketsAhead is hashed and its buckets prefetched, id i+kRowsAhead
// opens its seqlock window, is found and its row prefetched, id i is copied
// and validated (an id whose window failed is read again by ReadRow).
void BM_Lookup(benchmark::State& state) {
  const Table& table = TableOf();
  const Index& index = *table.index;
  Batches batches(state);
  const int64_t n = batches.size();
  std::vector<float> out(n * kDim);
  std::vector<uint64_t> hashes(n);
  std::vector<uint32_t> stripe_of(n), begins(n);
  std::vector<int64_t> found(n);
  for (auto _ : state) {
    const int64_t* ids = &table.ids[batches.Next()];
    for (int64_t i = -kBucketsAhead; i < n; ++i) {
      if (const int64_t k = i + kBucketsAhead; k < n) {
        hashes[k] = Index::Hash(ids[k]);
        stripe_of[k] = index.StripeOf(hashes[k]);
        index.Prefetch(stripe_of[k], ids[k], hashes[k]);
      }
      if (const int64_t k = i + kRowsAhead; k >= 0 && k < n) {
        begins[k] = table.stripes[stripe_of[k]].seq.ReadBegin();
        found[k] = index.Find(stripe_of[k], ids[k], hashes[k]);
        if (found[k] >= 0) {
          PrefetchRow(table.Row(index.Slot(stripe_of[k], found[k])));
        }
      }
      if (i < 0) continue;
      if (found[i] >= 0) {
        LoadFloatsRelaxed(table.Row(index.Slot(stripe_of[i], found[i])), kDim,
                          &out[i * kDim]);
      }
      if (!table.stripes[stripe_of[i]].seq.ReadValid(begins[i])) {
        ReadRow(table, ids[i], hashes[i], stripe_of[i], &out[i * kDim]);
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state);
}

// Runs `step(i, row, stripe)` on the rows of each batch at slots known in
// advance (no index), each prefetched kPrefetchDistance rows early, as
// EmbeddingTable's dense gather and push do: the anchors.
template <typename Step>
void RunKnownSlots(benchmark::State& state, const Step& step) {
  Table& table = TableOf();
  const int64_t stripe_mask = table.index->stripes() - 1;
  Batches batches(state);
  for (auto _ : state) {
    const int64_t* slots = &table.slots[batches.Next()];
    for (int64_t i = 0; i < batches.size(); ++i) {
      if (i + kPrefetchDistance < static_cast<size_t>(batches.size())) {
        PrefetchRow(table.Row(slots[i + kPrefetchDistance]));
      }
      step(i, table.Row(slots[i]), table.stripes[slots[i] & stripe_mask]);
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

// The lookup anchor: the rows copied in seqlock windows.
void BM_GatherAnchor(benchmark::State& state) {
  std::vector<float> out(state.range(0) * kDim);
  RunKnownSlots(state, [&](int64_t i, const float* row, const Stripe& stripe) {
    for (;;) {
      const uint32_t begin = stripe.seq.ReadBegin();
      LoadFloatsRelaxed(row, kDim, &out[i * kDim]);
      if (stripe.seq.ReadValid(begin)) break;
    }
  });
}

// An SGD-like step of one row, under the writer lock with seq odd.
void StepRow(Stripe& stripe, float* row, const float* grad) {
  stripe.seq.WriteBegin();
  for (int64_t d = 0; d < kDim; ++d) row[d] -= 0.01f * grad[d];
  stripe.seq.WriteEnd();
}

// A push's core: for each id (buckets prefetched a block ahead), the
// stripe's writer lock, Find, and an update of the row.
void BM_PushLike(benchmark::State& state) {
  Table& table = TableOf();
  const Index& index = *table.index;
  Batches batches(state);
  const std::vector<float> grad(kDim, 1e-3f);
  uint64_t hashes[kBlock];
  uint32_t stripe_of[kBlock];
  for (auto _ : state) {
    const int64_t first = batches.Next();
    for (int64_t block = 0; block < batches.size(); block += kBlock) {
      const size_t n = std::min<size_t>(kBlock, batches.size() - block);
      const int64_t* ids = &table.ids[first + block];
      for (size_t i = 0; i < n; ++i) {
        hashes[i] = Index::Hash(ids[i]);
        stripe_of[i] = index.StripeOf(hashes[i]);
        index.Prefetch(stripe_of[i], ids[i], hashes[i]);
      }
      for (size_t i = 0; i < n; ++i) {
        Stripe& stripe = table.stripes[stripe_of[i]];
        WriterLock lock(&stripe.mu);
        const int64_t j = index.Find(stripe_of[i], ids[i], hashes[i]);
        StepRow(stripe, table.Row(index.Slot(stripe_of[i], j)), grad.data());
      }
    }
    benchmark::ClobberMemory();
  }
  Finish(state);
}

// The push anchor: the rows stepped under their stripes' writer locks.
void BM_PushAnchor(benchmark::State& state) {
  const std::vector<float> grad(kDim, 1e-3f);
  RunKnownSlots(state, [&](int64_t i, float* row, Stripe& stripe) {
    WriterLock lock(&stripe.mu);
    StepRow(stripe, row, grad.data());
  });
}

// A full index replacing rows: each new id evicts its stripe's oldest row
// (round robin over the stripe's rows, which Insert then reuses), under the
// writer lock with seq odd. Its own index: the lookups' ids stay present.
struct ChurnTable {
  ChurnTable()
      : index(*Index::Create(kCapacity, Index::StripesFor(kCapacity))),
        stripes(new Stripe[index->stripes()]),
        oldest(index->stripes(), 0) {
    while (next_id < kCapacity * 2) Admit();
  }
  void Admit() {
    const int64_t id = next_id++;
    const uint64_t hash = Index::Hash(id);
    const uint32_t s = index->StripeOf(hash);
    Stripe& stripe = stripes[s];
    WriterLock lock(&stripe.mu);
    stripe.seq.WriteBegin();
    if (index->Full(s)) {
      index->EraseSlot(s, oldest[s]);
      oldest[s] =
          static_cast<uint32_t>((oldest[s] + 1) % index->StripeCapacity(s));
    }
    index->Insert(s, id, hash);
    stripe.seq.WriteEnd();
  }

  std::unique_ptr<Index> index;
  std::unique_ptr<Stripe[]> stripes;
  std::vector<uint32_t> oldest;
  int64_t next_id = 0;
};

void BM_Churn(benchmark::State& state) {
  static ChurnTable* table = new ChurnTable();
  for (auto _ : state) {
    for (int64_t i = 0; i < state.range(0); ++i) table->Admit();
  }
  Finish(state);
}

void Batch(benchmark::internal::Benchmark* benchmark) {
  benchmark->Arg(64)->Arg(4096)->Threads(1)->Threads(2)->UseRealTime();
}

BENCHMARK(BM_GatherAnchor)->Apply(Batch);
BENCHMARK(BM_Lookup)->Apply(Batch);
BENCHMARK(BM_LookupSimple)->Apply(Batch);
BENCHMARK(BM_PushAnchor)->Arg(4096)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_PushLike)->Arg(4096)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Churn)->Arg(4096);

}  // namespace
}  // namespace embedding

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Builds the table before timing starts.
  embedding::TableOf();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
