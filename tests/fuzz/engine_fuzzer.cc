// libFuzzer target for the engine: arbitrary lookups, bags, pushes and
// writes against small tables. Checks that nothing crashes (under ASan and
// UBSan) and the promise that a rejected request changes nothing.
//
//   scripts/test.sh builds it with clang (EMBEDDING_SANITIZE) and runs it for a
//   few seconds; longer: build-asan/tests/fuzz/engine_fuzzer
//   -max_total_time=600
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "common/status_macros.h"
#include "server/core/embedding_table.h"

namespace embedding {
namespace {

constexpr int64_t kRows = 40;

std::unique_ptr<EmbeddingTable> MakeTable(OptimizerKind optimizer,
                                          bool max_norm, bool by_frequency) {
  TableSpec spec;
  spec.name = "fuzz";
  spec.num_embeddings = kRows;
  spec.embedding_dim = 3;
  spec.padding_idx = 5;
  if (max_norm) spec.max_norm = 1.5f;
  spec.scale_grad_by_freq = by_frequency;
  spec.optimizer = DefaultOptimizerSpec(optimizer);
  return *EmbeddingTable::Create(spec, {});
}

// Every row and the counters, to compare before and after a request.
struct Snapshot {
  std::vector<float> rows;
  int64_t version;
  int64_t step;
  bool operator==(const Snapshot& other) const {
    return version == other.version && step == other.step &&
           std::memcmp(rows.data(), other.rows.data(),
                       rows.size() * sizeof(float)) == 0;
  }
};

Snapshot Take(EmbeddingTable& table) {
  Snapshot snapshot;
  std::vector<int64_t> all(kRows);
  for (int64_t i = 0; i < kRows; ++i) all[i] = i;
  snapshot.rows.resize(kRows * table.dim());
  if (!table.ReadRows(all, snapshot.rows.data()).ok()) std::abort();
  const TableStats stats = table.Stats();
  snapshot.version = stats.version;
  snapshot.step = stats.step;
  return snapshot;
}

std::vector<int64_t> Indices(FuzzedDataProvider& data, size_t count) {
  std::vector<int64_t> indices(count);
  for (int64_t& index : indices) {
    index = data.ConsumeBool()
                ? data.ConsumeIntegralInRange<int64_t>(0, kRows - 1)
                : data.ConsumeIntegral<int64_t>();
  }
  return indices;
}

std::vector<float> Floats(FuzzedDataProvider& data, size_t count) {
  std::vector<float> values(count);
  for (float& value : values) {
    switch (data.ConsumeIntegralInRange(0, 9)) {
      case 0:
        value = std::numeric_limits<float>::quiet_NaN();
        break;
      case 1:
        value = std::numeric_limits<float>::infinity();
        break;
      default:
        value = data.ConsumeFloatingPointInRange(-4.0f, 4.0f);
    }
  }
  return values;
}

// Sizes are usually right and sometimes off by a little.
size_t Size(FuzzedDataProvider& data, size_t right) {
  return data.ConsumeIntegralInRange(0, 7) == 0
             ? data.ConsumeIntegralInRange<size_t>(0, right + 2)
             : right;
}

absl::Status RunOne(FuzzedDataProvider& data, EmbeddingTable& table) {
  const int64_t dim = table.dim();
  const size_t count = data.ConsumeIntegralInRange<size_t>(0, 24);
  const std::vector<int64_t> indices = Indices(data, count);
  BagBatch batch;
  std::vector<int64_t> offsets;
  std::vector<float> weights;
  const int op = data.ConsumeIntegralInRange(0, 6);
  if (op == 2 || op == 3) {
    offsets.push_back(data.ConsumeIntegralInRange<int64_t>(-1, 1) == 0 ? 0 : 1);
    const size_t bags = data.ConsumeIntegralInRange<size_t>(0, 6);
    for (size_t b = 0; b < bags; ++b) {
      offsets.push_back(offsets.back() +
                        data.ConsumeIntegralInRange<int64_t>(-1, 5));
    }
    if (data.ConsumeBool()) weights = Floats(data, Size(data, count));
    batch = BagBatch{indices, offsets,
                     static_cast<BagMode>(data.ConsumeIntegralInRange(0, 2)),
                     weights, data.ConsumeBool()};
  }
  PushOptions options;
  if (data.ConsumeBool()) {
    options.learning_rate = data.ConsumeFloatingPointInRange(-1.0f, 1.0f);
  }
  if (data.ConsumeBool()) {
    options.client_id = "c";
    options.sequence = data.ConsumeIntegralInRange<uint64_t>(0, 8);
  }
  switch (op) {
    case 0: {
      std::vector<char> out(count * dim * sizeof(float));
      return table.Lookup(indices,
                          static_cast<DType>(data.ConsumeIntegralInRange(0, 2)),
                          out.data());
    }
    case 1:
      return table
          .PushGradients(indices, Floats(data, Size(data, count * dim)),
                         options)
          .status();
    case 2: {
      EMBEDDING_ASSIGN_OR_RETURN(const ValidatedBagBatch valid,
                                 ValidateBagBatch(batch));
      std::vector<float> out(valid.bags() * dim);
      std::vector<int64_t> max_indices(valid.bags() * dim);
      return table.LookupBag(valid, DType::kFloat32, out.data(),
                             max_indices.data());
    }
    case 3: {
      EMBEDDING_ASSIGN_OR_RETURN(const ValidatedBagBatch valid,
                                 ValidateBagBatch(batch));
      const size_t bags = valid.bags();
      const std::vector<int64_t> max_indices =
          Indices(data, Size(data, bags * dim));
      return table
          .PushBagGradients(valid, Floats(data, Size(data, bags * dim)),
                            max_indices, options)
          .status();
    }
    case 4:
      return table.WriteRows(indices, Floats(data, Size(data, count * dim)))
          .status();
    case 5:
      return table
          .WriteRowRange(data.ConsumeIntegralInRange<int64_t>(-2, kRows + 2),
                         Floats(data, Size(data, count * dim)))
          .status();
    default: {
      // Any kind of the table, any of its hyper-parameters, any value.
      OptimizerSpec optimizer = table.Stats().spec.optimizer;
      if (data.ConsumeBool()) {
        optimizer.kind = static_cast<OptimizerKind>(
            data.ConsumeIntegralInRange<size_t>(0, AllOptimizers().size() - 1));
      }
      const auto params = InfoOf(optimizer.kind).params;
      const HyperParameter& param =
          params[data.ConsumeIntegralInRange<size_t>(0, params.size() - 1)];
      optimizer.*param.field = data.ConsumeFloatingPointInRange(-2.0f, 2.0f);
      return table.SetOptimizer(optimizer);
    }
  }
}

}  // namespace
}  // namespace embedding

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  // One table per optimizer; max_norm and scale_grad_by_freq alternate.
  static auto* tables = [] {
    auto* made = new std::vector<std::unique_ptr<embedding::EmbeddingTable>>;
    int i = 0;
    for (const embedding::OptimizerInfo& info : embedding::AllOptimizers()) {
      made->push_back(
          embedding::MakeTable(info.kind, i % 2 == 1, i / 2 % 2 == 1));
      ++i;
    }
    return made;
  }();
  FuzzedDataProvider data(bytes, size);
  embedding::EmbeddingTable& table =
      *(*tables)[data.ConsumeIntegralInRange<size_t>(0, tables->size() - 1)];
  const embedding::Snapshot before = embedding::Take(table);
  const absl::Status status = embedding::RunOne(data, table);
  // A lookup may renorm rows in place even when ok; a rejected request of
  // any kind must leave the table exactly as it was.
  if (!status.ok() && !(embedding::Take(table) == before)) std::abort();
  return 0;
}
