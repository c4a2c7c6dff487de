// Engine micro-benchmark: EmbeddingTable's gather, max_norm lookup and SGD /
// Adagrad pushes on a 1M x 64 table, single- and multi-threaded, beside a
// plain memcpy gather of the same rows from a float array (the ceiling the
// engine's gather is compared with) and a plain read-modify-write of them
// (the ceiling of its pushes). items_per_second is rows per second.
//
//   engine_benchmark --benchmark_min_time=0.5 --benchmark_format=json
//
// EMBEDDING_BENCH_ROWS overrides the table's rows (the smoke run uses few).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
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

std::unique_ptr<EmbeddingTable> MakeTable(OptimizerSpec::Kind optimizer,
                                          std::optional<float> max_norm) {
  TableSpec spec;
  spec.name = "bench";
  spec.num_embeddings = TableRows();
  spec.embedding_dim = kDim;
  spec.seed = kSeed;
  spec.max_norm = max_norm;
  spec.optimizer = DefaultOptimizerSpec(optimizer);
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
      EmbeddingTable::Create(spec, {});
  if (!table.ok()) std::abort();
  return *std::move(table);
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

// The thread's next batch of ids.
class IdStream {
 public:
  IdStream(const benchmark::State& state, int64_t batch)
      : batch_(batch),
        next_(state.thread_index() * (kIdPoolSize / state.threads())) {}
  absl::Span<const int64_t> Next() {
    if (next_ + batch_ > kIdPoolSize) next_ = 0;
    absl::Span<const int64_t> ids(&Ids()[next_], batch_);
    next_ += batch_;
    return ids;
  }

 private:
  const int64_t batch_;
  int64_t next_;
};

// Runs `step` on the thread's next batch of ids each iteration until the
// run ends or a step fails; items are rows, bytes their floats.
template <typename Step>
void RunBatches(benchmark::State& state, const Step& step) {
  const int64_t batch = state.range(0);
  IdStream ids(state, batch);
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

void LookupBenchmark(benchmark::State& state, EmbeddingTable& table) {
  std::vector<float> out(state.range(0) * kDim);
  RunBatches(state, [&](absl::Span<const int64_t> ids) {
    const absl::Status status = table.Lookup(ids, DType::kFloat32, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    return status;
  });
}

void PushBenchmark(benchmark::State& state, EmbeddingTable& table) {
  const std::vector<float> grad = RandomGrad(state);
  RunBatches(state, [&](absl::Span<const int64_t> ids) {
    return table.PushGradients(ids, grad, PushOptions{}).status();
  });
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
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
