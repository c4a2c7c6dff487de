// Engine micro-benchmark: EmbeddingTable's gather, max_norm lookup and SGD /
// Adagrad pushes on a 1M x 64 table, single- and multi-threaded, beside a
// plain memcpy gather of the same rows from a float array (the ceiling the
// engine's gather is compared with) and a plain read-modify-write of them
// (the ceiling of its pushes); and the same on a dynamic table holding 1M
// raw 64-bit ids (issue 15), with lookups of absent ids and a churn of new
// ids. items_per_second is rows per second; bytes_per_row is the table's
// MemoryBytes over its rows (dense) or capacity (dynamic).
//
//   engine_benchmark --benchmark_min_time=0.5 --benchmark_format=json
//
// EMBEDDING_BENCH_ROWS overrides the table's rows (the smoke run uses few).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "server/core/dtype.h"
#include "server/core/embedding_table.h"
#include "server/core/huge_pages.h"
#include "server/core/initializer.h"
#include "server/core/table_spec.h"

namespace embedding {
namespace {

constexpr int64_t kDim = 64;
constexpr uint64_t kSeed = 1;
constexpr int64_t kIdPoolSize = int64_t{1} << 20;

int64_t TableRows() {
  const char* rows = std::getenv("EMBEDDING_BENCH_ROWS");
  return rows != nullptr ? std::atoll(rows) : 1000000;
}

// Uniform random row ids; each benchmark thread reads its own stretch.
const std::vector<int64_t>& Ids() {
  static const std::vector<int64_t>* ids = [] {
    auto* result = new std::vector<int64_t>(kIdPoolSize);
    std::mt19937_64 random(7);
    std::uniform_int_distribution<int64_t> row(0, TableRows() - 1);
    for (int64_t& id : *result) id = row(random);
    return result;
  }();
  return *ids;
}

TableSpec BenchSpec(OptimizerSpec::Kind optimizer) {
  TableSpec spec;
  spec.name = "bench";
  spec.embedding_dim = kDim;
  spec.seed = kSeed;
  spec.optimizer = DefaultOptimizerSpec(optimizer);
  return spec;
}

std::unique_ptr<EmbeddingTable> MakeTable(TableSpec spec) {
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
      EmbeddingTable::Create(std::move(spec), {});
  if (!table.ok()) {
    std::fprintf(stderr, "%s\n", table.status().ToString().c_str());
    std::abort();
  }
  return *std::move(table);
}

std::unique_ptr<EmbeddingTable> MakeTable(OptimizerSpec::Kind optimizer,
                                          std::optional<float> max_norm) {
  TableSpec spec = BenchSpec(optimizer);
  spec.num_embeddings = TableRows();
  spec.max_norm = max_norm;
  return MakeTable(std::move(spec));
}

EmbeddingTable& SgdTable() {
  static EmbeddingTable* table =
      MakeTable(OptimizerSpec::Kind::kSgd, std::nullopt).release();
  return *table;
}

EmbeddingTable& AdagradTable() {
  static EmbeddingTable* table =
      MakeTable(OptimizerSpec::Kind::kAdagrad, std::nullopt).release();
  return *table;
}

EmbeddingTable& MaxNormTable() {
  static EmbeddingTable* table =
      MakeTable(OptimizerSpec::Kind::kSgd, 1.0f).release();
  return *table;
}

// Allocates as the engine does for its tables (transparent huge pages where
// the kernel gives them), so the anchors pay the same TLB misses.
template <typename T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n) {
    void* data = std::malloc(n * sizeof(T));
    if (data == nullptr) throw std::bad_alloc();
    AdviseHugePages(data, static_cast<int64_t>(n * sizeof(T)));
    return static_cast<T*>(data);
  }
  void deallocate(T* data, size_t) { std::free(data); }
  bool operator==(const HugePageAllocator&) const = default;
};
using Floats = std::vector<float, HugePageAllocator<float>>;

// The same rows as the tables, in a plain array.
const Floats& PlainRows() {
  static const Floats* rows = [] {
    auto* result = new Floats(TableRows() * kDim);
    for (int64_t row = 0; row < TableRows(); ++row) {
      FillRow(InitializerSpec{}, kSeed, row, kDim, &(*result)[row * kDim]);
    }
    return result;
  }();
  return *rows;
}

// The thread's next batch of ids from `pool` (kIdPoolSize ids).
class IdStream {
 public:
  IdStream(const benchmark::State& state, int64_t batch,
           const std::vector<int64_t>& pool)
      : pool_(pool),
        batch_(batch),
        next_(state.thread_index() * (kIdPoolSize / state.threads())) {}
  absl::Span<const int64_t> Next() {
    if (next_ + batch_ > kIdPoolSize) next_ = 0;
    absl::Span<const int64_t> ids(&pool_[next_], batch_);
    next_ += batch_;
    return ids;
  }

 private:
  const std::vector<int64_t>& pool_;
  const int64_t batch_;
  int64_t next_;
};

// Runs `step` on the thread's next batch of ids each iteration until the
// run ends or a step fails; items are rows, bytes their floats.
template <typename Step>
void RunBatches(benchmark::State& state, const Step& step,
                const std::vector<int64_t>& pool = Ids()) {
  const int64_t batch = state.range(0);
  IdStream ids(state, batch, pool);
  for (auto _ : state) {
    if (const absl::Status status = step(ids.Next()); !status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(state.iterations() * batch * kDim * sizeof(float));
}

// A gather of plain rows into `out`, prefetching each row `prefetch_ahead`
// rows early (0: none).
absl::Status PlainGather(absl::Span<const int64_t> ids, int64_t prefetch_ahead,
                         std::vector<float>& out) {
  const Floats& rows = PlainRows();
  const int64_t batch = static_cast<int64_t>(ids.size());
  for (int64_t i = 0; i < batch; ++i) {
    if (prefetch_ahead > 0 && i + prefetch_ahead < batch) {
      const float* ahead = &rows[ids[i + prefetch_ahead] * kDim];
      for (size_t line = 0; line < kDim * sizeof(float); line += 64) {
        __builtin_prefetch(reinterpret_cast<const char*>(ahead) + line);
      }
    }
    std::memcpy(&out[i * kDim], &rows[ids[i] * kDim], kDim * sizeof(float));
  }
  benchmark::DoNotOptimize(out.data());
  benchmark::ClobberMemory();
  return absl::OkStatus();
}

void BM_MemcpyGather(benchmark::State& state) {
  std::vector<float> out(state.range(0) * kDim);
  RunBatches(state, [&](absl::Span<const int64_t> ids) {
    return PlainGather(ids, /*prefetch_ahead=*/0, out);
  });
}

// The memcpy gather with each row prefetched 8 rows early, to show what
// prefetching in the engine's gather could gain.
void BM_PrefetchGather(benchmark::State& state) {
  std::vector<float> out(state.range(0) * kDim);
  RunBatches(state, [&](absl::Span<const int64_t> ids) {
    return PlainGather(ids, /*prefetch_ahead=*/8, out);
  });
}

// Mutable plain copies of the rows (and of Adagrad's state) for the
// read-modify-write anchors below.
struct PlainTable {
  Floats weights = PlainRows();
  Floats state;  // Adagrad's squared-gradient sums; empty for SGD.
};

PlainTable& PlainSgdTable() {
  static PlainTable* table = new PlainTable();
  return *table;
}

PlainTable& PlainAdagradTable() {
  static PlainTable* table = [] {
    auto* result = new PlainTable();
    result->state.assign(result->weights.size(),
                         DefaultOptimizerSpec(OptimizerSpec::Kind::kAdagrad)
                             .initial_accumulator_value);
    return result;
  }();
  return *table;
}

// The floor of a push: each row of `ids` (and its state) prefetched 8 rows
// early and updated in place from its gradient row, as the engine's SGD or
// Adagrad step does, with no locks, no validation and no coalescing of
// repeated ids. Threads race on a shared row (Hogwild): rare with 1M rows,
// and this is a benchmark, never run under TSan.
absl::Status PlainUpdate(absl::Span<const int64_t> ids,
                         const std::vector<float>& grad, PlainTable& table) {
  constexpr float kLr = 0.01f, kEps = 1e-10f;
  const bool adagrad = !table.state.empty();
  const int64_t batch = static_cast<int64_t>(ids.size());
  for (int64_t i = 0; i < batch; ++i) {
    if (i + 8 < batch) {
      const int64_t ahead = ids[i + 8] * kDim;
      for (int64_t d = 0; d < kDim; d += 16) {
        __builtin_prefetch(&table.weights[ahead + d], 1);
        if (adagrad) __builtin_prefetch(&table.state[ahead + d], 1);
      }
    }
    float* row = &table.weights[ids[i] * kDim];
    const float* g = &grad[i * kDim];
    if (adagrad) {
      float* sums = &table.state[ids[i] * kDim];
      for (int64_t d = 0; d < kDim; ++d) {
        sums[d] += g[d] * g[d];
        row[d] -= kLr * (g[d] / (std::sqrt(sums[d]) + kEps));
      }
    } else {
      for (int64_t d = 0; d < kDim; ++d) row[d] -= kLr * g[d];
    }
  }
  benchmark::ClobberMemory();
  return absl::OkStatus();
}

// Random gradient rows, [batch, kDim], different per thread.
std::vector<float> RandomGrad(const benchmark::State& state) {
  std::vector<float> grad(state.range(0) * kDim);
  std::mt19937 random(state.thread_index());
  std::uniform_real_distribution<float> value(-1e-3f, 1e-3f);
  for (float& g : grad) g = value(random);
  return grad;
}

void BM_PrefetchSgdUpdate(benchmark::State& state) {
  const std::vector<float> grad = RandomGrad(state);
  RunBatches(state, [&](absl::Span<const int64_t> ids) {
    return PlainUpdate(ids, grad, PlainSgdTable());
  });
}

void BM_PrefetchAdagradUpdate(benchmark::State& state) {
  const std::vector<float> grad = RandomGrad(state);
  RunBatches(state, [&](absl::Span<const int64_t> ids) {
    return PlainUpdate(ids, grad, PlainAdagradTable());
  });
}

// The table's memory per row it can hold, as a counter.
void ReportBytesPerRow(benchmark::State& state, const EmbeddingTable& table) {
  const TableStats stats = table.Stats();
  const int64_t rows = stats.spec.dynamic.has_value()
                           ? stats.spec.dynamic->capacity
                           : stats.spec.num_embeddings;
  state.counters["bytes_per_row"] = benchmark::Counter(
      static_cast<double>(stats.memory_bytes) / static_cast<double>(rows),
      benchmark::Counter::kAvgThreads);
}

void LookupBenchmark(benchmark::State& state, EmbeddingTable& table,
                     const std::vector<int64_t>& pool = Ids()) {
  std::vector<float> out(state.range(0) * kDim);
  RunBatches(
      state,
      [&](absl::Span<const int64_t> ids) {
        const absl::Status status =
            table.Lookup(ids, DType::kFloat32, out.data());
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
        return status;
      },
      pool);
  ReportBytesPerRow(state, table);
}

void PushBenchmark(benchmark::State& state, EmbeddingTable& table,
                   const std::vector<int64_t>& pool = Ids()) {
  const std::vector<float> grad = RandomGrad(state);
  RunBatches(
      state,
      [&](absl::Span<const int64_t> ids) {
        return table.PushGradients(ids, grad, PushOptions{}).status();
      },
      pool);
  ReportBytesPerRow(state, table);
}

void BM_EngineLookup(benchmark::State& state) {
  LookupBenchmark(state, SgdTable());
}
void BM_EngineLookupMaxNorm(benchmark::State& state) {
  LookupBenchmark(state, MaxNormTable());
}
void BM_EnginePushSgd(benchmark::State& state) {
  PushBenchmark(state, SgdTable());
}
void BM_EnginePushAdagrad(benchmark::State& state) {
  PushBenchmark(state, AdagradTable());
}

// ---- Dynamic tables (issue 15).

// Raw ids: far above any dense row, as hashed 64-bit ids are.
constexpr int64_t kFirstDynamicId = int64_t{1} << 40;

// A dynamic table of capacity TableRows(), full, and the ids it holds.
struct FullDynamicTable {
  std::unique_ptr<EmbeddingTable> table;
  // held[Ids()[k]]: the dense benchmarks' pattern over the held ids.
  std::vector<int64_t> pool;
  // Ids from here up were never pushed.
  int64_t next_new_id = 0;
};

// Fills a dynamic table by pushes of gradients of ones to ids
// kFirstDynamicId + k, k from 0 up, each batch `admit_after` times, until
// every stripe is full (a full stripe evicts its least recently used row,
// so more ids than rows are pushed); then reads which ids hold a row: those
// whose row is no longer the initializer's value.
FullDynamicTable* MakeFullDynamicTable(OptimizerSpec::Kind optimizer,
                                       uint32_t admit_after) {
  TableSpec spec = BenchSpec(optimizer);
  spec.dynamic =
      DynamicSpec{.capacity = TableRows(), .admit_after = admit_after};
  auto* full = new FullDynamicTable{.table = MakeTable(spec)};
  EmbeddingTable& table = *full->table;
  // Few new ids per stripe in each push, even in a small table, so that no
  // push evicts rows it has just admitted.
  const int64_t batch =
      std::min<int64_t>(4096, std::max<int64_t>(1, TableRows() / 16));
  const std::vector<float> ones(batch * kDim, 1.0f);
  std::vector<int64_t> ids(batch);
  int64_t next = kFirstDynamicId;
  while (table.Stats().dynamic->rows_held < TableRows()) {
    std::iota(ids.begin(), ids.end(), next);
    next += batch;
    for (uint32_t push = 0; push < admit_after; ++push) {
      if (!table.PushGradients(ids, ones, PushOptions{}).ok()) std::abort();
    }
  }
  std::vector<int64_t> held;
  std::vector<float> rows(batch * kDim), initial(kDim);
  for (int64_t first = kFirstDynamicId; first < next; first += batch) {
    std::iota(ids.begin(), ids.end(), first);
    if (!table.Lookup(ids, DType::kFloat32, rows.data()).ok()) std::abort();
    for (int64_t i = 0; i < batch; ++i) {
      FillRow(spec.initializer, kSeed, ids[i], kDim, initial.data());
      if (std::memcmp(&rows[i * kDim], initial.data(), kDim * sizeof(float)) !=
          0) {
        held.push_back(ids[i]);
      }
    }
  }
  if (static_cast<int64_t>(held.size()) != TableRows()) {
    std::fprintf(stderr, "the dynamic table holds %zu ids, not %lld\n",
                 held.size(), static_cast<long long>(TableRows()));
    std::abort();
  }
  full->pool.resize(kIdPoolSize);
  for (int64_t k = 0; k < kIdPoolSize; ++k) full->pool[k] = held[Ids()[k]];
  full->next_new_id = next;
  return full;
}

FullDynamicTable& DynamicSgdTable() {
  static FullDynamicTable* table =
      MakeFullDynamicTable(OptimizerSpec::Kind::kSgd, 1);
  return *table;
}

FullDynamicTable& DynamicAdagradTable() {
  static FullDynamicTable* table =
      MakeFullDynamicTable(OptimizerSpec::Kind::kAdagrad, 1);
  return *table;
}

// Ids that hold no row: the dense pattern, negated.
const std::vector<int64_t>& AbsentIds() {
  static const std::vector<int64_t>* ids = [] {
    auto* result = new std::vector<int64_t>(kIdPoolSize);
    for (int64_t k = 0; k < kIdPoolSize; ++k) (*result)[k] = -1 - Ids()[k];
    return result;
  }();
  return *ids;
}

void BM_DynamicLookup(benchmark::State& state) {
  FullDynamicTable& dynamic = DynamicSgdTable();
  LookupBenchmark(state, *dynamic.table, dynamic.pool);
}
// Every row from the initializer (FillRow), none from memory.
void BM_DynamicLookupAbsent(benchmark::State& state) {
  LookupBenchmark(state, *DynamicSgdTable().table, AbsentIds());
}
void BM_DynamicPushSgd(benchmark::State& state) {
  FullDynamicTable& dynamic = DynamicSgdTable();
  PushBenchmark(state, *dynamic.table, dynamic.pool);
}
void BM_DynamicPushAdagrad(benchmark::State& state) {
  FullDynamicTable& dynamic = DynamicAdagradTable();
  PushBenchmark(state, *dynamic.table, dynamic.pool);
}

// Adagrad pushes to a full table where 1% of each batch are new ids: each
// new id is pushed in kAdmitAfter consecutive batches, so it gets a row (and
// evicts one) in the last. The other ids are held ones, as in
// BM_DynamicPushAdagrad; an evicted one is admitted again when next pushed
// (the counters say how many rows moved per batch). p50_ms and p99_ms are
// of the time of each push.
template <uint32_t kAdmitAfter>
void BM_DynamicChurn(benchmark::State& state) {
  static FullDynamicTable* dynamic =
      MakeFullDynamicTable(OptimizerSpec::Kind::kAdagrad, kAdmitAfter);
  static int64_t first_new_id = 0;
  static uint32_t pushes_left = 0;  // Of the new ids from first_new_id.
  const int64_t batch = state.range(0);
  const int64_t new_ids = std::max<int64_t>(1, batch / 100);
  const std::vector<float> grad = RandomGrad(state);
  IdStream held(state, batch - new_ids, dynamic->pool);
  std::vector<int64_t> ids(batch);
  std::vector<double> seconds;
  int64_t admitted = 0, evicted = 0, dropped = 0;
  for (auto _ : state) {
    if (pushes_left == 0) {
      first_new_id = dynamic->next_new_id;
      dynamic->next_new_id += new_ids;
      pushes_left = kAdmitAfter;
    }
    --pushes_left;
    const absl::Span<const int64_t> old_ids = held.Next();
    std::copy(old_ids.begin(), old_ids.end(), ids.begin());
    std::iota(ids.end() - new_ids, ids.end(), first_new_id);
    const auto start = std::chrono::steady_clock::now();
    const absl::StatusOr<PushResult> result =
        dynamic->table->PushGradients(ids, grad, PushOptions{});
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      break;
    }
    admitted += result->rows_admitted;
    evicted += result->rows_evicted;
    dropped += result->rows_dropped;
  }
  state.SetItemsProcessed(state.iterations() * batch);
  if (seconds.empty()) return;
  const auto percentile_ms = [&seconds](double fraction) {
    const auto at =
        seconds.begin() + static_cast<int64_t>(fraction * (seconds.size() - 1));
    std::nth_element(seconds.begin(), at, seconds.end());
    return *at * 1e3;
  };
  state.counters["p50_ms"] = percentile_ms(0.50);
  state.counters["p99_ms"] = percentile_ms(0.99);
  const double batches = static_cast<double>(seconds.size());
  state.counters["admitted_per_batch"] = admitted / batches;
  state.counters["evicted_per_batch"] = evicted / batches;
  state.counters["dropped_per_batch"] = dropped / batches;
  ReportBytesPerRow(state, *dynamic->table);
}

void Batches(benchmark::internal::Benchmark* benchmark) {
  benchmark->Arg(64)->Arg(4096)->Threads(1)->Threads(2)->UseRealTime();
}

BENCHMARK(BM_MemcpyGather)->Apply(Batches);
BENCHMARK(BM_PrefetchGather)->Apply(Batches);
BENCHMARK(BM_PrefetchSgdUpdate)->Apply(Batches);
BENCHMARK(BM_PrefetchAdagradUpdate)->Apply(Batches);
BENCHMARK(BM_EngineLookup)->Apply(Batches);
BENCHMARK(BM_EngineLookupMaxNorm)->Apply(Batches);
BENCHMARK(BM_EnginePushSgd)->Apply(Batches);
BENCHMARK(BM_EnginePushAdagrad)->Apply(Batches);
BENCHMARK(BM_DynamicLookup)->Apply(Batches);
BENCHMARK(BM_DynamicLookupAbsent)->Apply(Batches);
BENCHMARK(BM_DynamicPushSgd)->Apply(Batches);
BENCHMARK(BM_DynamicPushAdagrad)->Apply(Batches);
BENCHMARK_TEMPLATE(BM_DynamicChurn, 1)->Arg(4096)->UseRealTime();
BENCHMARK_TEMPLATE(BM_DynamicChurn, 2)->Arg(4096)->UseRealTime();

}  // namespace
}  // namespace embedding

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Builds the tables before timing starts, so no run pays for it.
  embedding::Ids();
  embedding::PlainRows();
  embedding::PlainSgdTable();
  embedding::PlainAdagradTable();
  embedding::SgdTable();
  embedding::AdagradTable();
  embedding::MaxNormTable();
  // The dynamic tables are filled on first use (seconds; before timing).
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
