// libFuzzer target for the checkpoint reader: a full checkpoint and maybe a
// delta, written from the input, restored by CheckpointManager::RestoreAll.
// Checks that nothing crashes (under ASan and UBSan) and that a restored
// table serves and saves.
//
// Random bytes rarely get past a checksum, so the input describes a valid
// checkpoint (what an empty input gives) plus damage: fields of the
// metadata replaced, data files flipped, cut, extended, replaced or missing,
// checksums recomputed over the damage or not, the metadata frame broken or
// replaced by raw bytes. Every check of the reader gets reached.
//
//   scripts/test.sh runs it for a few seconds; longer:
//   build-asan/tests/fuzz/checkpoint_fuzzer -max_total_time=600
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/optimizer_proto.h"
#include "common/shard_layout.h"
#include "server/checkpoint/checkpoint_format.h"
#include "server/checkpoint/checkpoint_manager.h"
#include "server/checkpoint/file_io.h"
#include "server/core/table_registry.h"

namespace embedding {
namespace {

namespace checkpoint_v1 = ::embedding::checkpoint::v1;
using internal::JoinPath;

// The table every checkpoint of an input describes.
struct Shape {
  int64_t num_embeddings;
  int64_t dim;
  OptimizerKind kind;
  int32_t shard_index;
  int32_t shard_count;
};

Shape FuzzShape(FuzzedDataProvider& input) {
  Shape shape;
  shape.num_embeddings = input.ConsumeIntegralInRange<int64_t>(1, 40);
  shape.dim = input.ConsumeIntegralInRange<int64_t>(1, 5);
  shape.kind = static_cast<OptimizerKind>(input.ConsumeIntegralInRange(0, 4));
  shape.shard_count = input.ConsumeBool() ? 2 : 1;
  shape.shard_index =
      shape.shard_count == 2 ? input.ConsumeIntegralInRange(0, 1) : 0;
  return shape;
}

void SetOptimizer(OptimizerKind kind, v1::Optimizer* optimizer) {
  OptimizerToProto(DefaultOptimizerSpec(kind), optimizer);
}

// The global rows a checkpoint holds: all the shard's, or for a delta every
// other one.
std::vector<int64_t> HeldRows(const Shape& shape, bool delta) {
  const ShardLayout layout = *ShardLayout::Create(shape.shard_count);
  std::vector<int64_t> rows;
  const int64_t local =
      layout.RowsOnShard(shape.num_embeddings, shape.shard_index);
  for (int64_t r = 0; r < local; r += delta ? 2 : 1) {
    rows.push_back(layout.GlobalRow(shape.shard_index, r));
  }
  return rows;
}

checkpoint_v1::CheckpointMetadata ValidMetadata(const Shape& shape,
                                                uint64_t sequence, bool delta,
                                                int64_t rows) {
  checkpoint_v1::CheckpointMetadata metadata;
  metadata.set_table("t");
  metadata.set_sequence(sequence);
  metadata.set_kind(delta ? checkpoint_v1::CheckpointMetadata::KIND_DELTA
                          : checkpoint_v1::CheckpointMetadata::KIND_FULL);
  metadata.set_base_sequence(delta ? sequence - 1 : 0);
  v1::TableSpec* spec = metadata.mutable_spec();
  spec->set_name("t");
  spec->set_num_embeddings(shape.num_embeddings);
  spec->set_embedding_dim(shape.dim);
  spec->set_shard_index(shape.shard_index);
  spec->set_shard_count(shape.shard_count);
  SetOptimizer(shape.kind, spec->mutable_optimizer());
  metadata.set_version(3);
  metadata.set_step(2);
  metadata.set_rows(rows);
  metadata.set_state_width(OptimizerStateWidth(shape.kind, shape.dim));
  checkpoint_v1::ClientWindow* window = metadata.add_exactly_once();
  window->set_client_id("c");
  window->add_sequences(1);
  window->add_sequences(4);
  metadata.set_block_size(internal::kMinBlockSize);
  return metadata;
}

// Replaces a few fields with fuzzed values.
void DamageMetadata(FuzzedDataProvider& input,
                    checkpoint_v1::CheckpointMetadata& metadata) {
  const int damages = input.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < damages; ++i) {
    v1::TableSpec* spec = metadata.mutable_spec();
    switch (input.ConsumeIntegralInRange(0, 16)) {
      case 0:
        metadata.set_table(input.ConsumeRandomLengthString(4));
        break;
      case 1:
        metadata.set_sequence(input.ConsumeIntegral<uint64_t>());
        break;
      case 2:
        metadata.set_kind(static_cast<checkpoint_v1::CheckpointMetadata::Kind>(
            input.ConsumeIntegralInRange(0, 3)));
        break;
      case 3:
        metadata.set_base_sequence(input.ConsumeIntegral<uint64_t>());
        break;
      case 4:
        spec->set_num_embeddings(input.ConsumeIntegral<int64_t>());
        break;
      case 5:
        spec->set_embedding_dim(input.ConsumeIntegral<int64_t>());
        break;
      case 6:
        spec->set_padding_idx(input.ConsumeIntegralInRange<int64_t>(-3, 40));
        break;
      case 7:
        spec->set_max_norm(input.ConsumeFloatingPoint<float>());
        break;
      case 8:
        spec->set_shard_index(input.ConsumeIntegral<int32_t>());
        spec->set_shard_count(input.ConsumeIntegralInRange(-1, 3));
        break;
      case 9:
        SetOptimizer(
            static_cast<OptimizerKind>(input.ConsumeIntegralInRange(0, 4)),
            spec->mutable_optimizer());
        spec->mutable_optimizer()->mutable_adagrad()->set_lr(
            input.ConsumeFloatingPoint<float>());
        break;
      case 10:
        metadata.set_version(input.ConsumeIntegral<int64_t>());
        metadata.set_step(input.ConsumeIntegral<int64_t>());
        break;
      case 11:
        metadata.set_rows(input.ConsumeIntegral<int64_t>());
        break;
      case 12:
        metadata.set_state_width(input.ConsumeIntegral<int64_t>());
        break;
      case 13: {
        checkpoint_v1::ClientWindow* window = metadata.add_exactly_once();
        window->set_client_id(input.ConsumeRandomLengthString(2));
        for (int s = input.ConsumeIntegralInRange(0, 4); s > 0; --s) {
          window->add_sequences(input.ConsumeIntegralInRange<uint64_t>(0, 5));
        }
        break;
      }
      case 14:
        metadata.set_block_size(input.ConsumeIntegral<uint32_t>());
        break;
      case 15:
        metadata.set_time_unix_micros(input.ConsumeIntegral<int64_t>());
        break;
      default:
        metadata.clear_files();
        break;
    }
  }
}

// rows.npy, weights.npy and state.npy of `rows`, values from the input
// (zeros once it runs out).
std::vector<std::string> ValidFiles(FuzzedDataProvider& input,
                                    const Shape& shape,
                                    const std::vector<int64_t>& rows) {
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t state_width = OptimizerStateWidth(shape.kind, shape.dim);
  std::string ids = internal::NpyHeader(internal::NpyType::kInt64, {n});
  ids.append(reinterpret_cast<const char*>(rows.data()), n * sizeof(int64_t));
  std::vector<std::string> files = {
      ids, internal::NpyHeader(internal::NpyType::kFloat32, {n, shape.dim}),
      internal::NpyHeader(internal::NpyType::kFloat32, {n, state_width})};
  const size_t sizes[] = {0, n * shape.dim * sizeof(float),
                          n * state_width * sizeof(float)};
  for (int i = 1; i < 3; ++i) {
    std::string values = input.ConsumeBytesAsString(sizes[i]);
    values.resize(sizes[i], '\0');
    files[i] += values;
  }
  return files;
}

// Flips, cuts, extends or replaces some of the files.
void DamageFiles(FuzzedDataProvider& input, std::vector<std::string>& files) {
  const int damages = input.ConsumeIntegralInRange(0, 2);
  for (int i = 0; i < damages; ++i) {
    std::string& file = files[input.ConsumeIntegralInRange<size_t>(0, 2)];
    switch (input.ConsumeIntegralInRange(0, 3)) {
      case 0:
        if (!file.empty()) {
          file[input.ConsumeIntegralInRange<size_t>(0, file.size() - 1)] ^=
              static_cast<char>(input.ConsumeIntegralInRange(1, 255));
        }
        break;
      case 1:
        file.resize(input.ConsumeIntegralInRange<size_t>(0, file.size()));
        break;
      case 2:
        file += input.ConsumeRandomLengthString(16);
        break;
      default:
        file = input.ConsumeRandomLengthString(256);
        break;
    }
  }
}

// Lists `files` in `metadata` with their sizes and block checksums.
void DescribeFiles(const std::vector<std::string>& files,
                   checkpoint_v1::CheckpointMetadata& metadata) {
  const uint32_t block = internal::kMinBlockSize;
  metadata.set_block_size(block);
  metadata.clear_files();
  const absl::string_view names[] = {
      internal::kRowsFile, internal::kWeightsFile, internal::kStateFile};
  for (size_t i = 0; i < files.size(); ++i) {
    checkpoint_v1::DataFile* file = metadata.add_files();
    file->set_name(std::string(names[i]));
    file->set_size(files[i].size());
    for (size_t at = 0; at < files[i].size(); at += block) {
      file->add_block_xxh3(
          internal::Checksum(absl::string_view(files[i]).substr(at, block)));
    }
  }
}

void WriteFile(const std::string& path, const std::string& bytes) {
  absl::StatusOr<internal::File> file = internal::File::Create(path);
  if (!file.ok() || !file->Write(bytes).ok()) std::abort();
}

// Checkpoint `sequence` of the table in `table_dir`, from the input.
void FuzzCheckpoint(FuzzedDataProvider& input, const std::string& table_dir,
                    const Shape& shape, uint64_t sequence, bool delta) {
  const internal::CheckpointName name{sequence, delta};
  const std::string dir = JoinPath(table_dir, name.ToString());
  if (!internal::MakeDirectory(dir).ok()) std::abort();
  const std::vector<int64_t> rows = HeldRows(shape, delta);
  checkpoint_v1::CheckpointMetadata metadata =
      ValidMetadata(shape, sequence, delta, static_cast<int64_t>(rows.size()));
  std::vector<std::string> files = ValidFiles(input, shape, rows);
  DescribeFiles(files, metadata);
  DamageFiles(input, files);
  // Damage behind correct checksums reaches the checks of the content.
  if (input.ConsumeBool()) DescribeFiles(files, metadata);
  DamageMetadata(input, metadata);
  const absl::string_view names[] = {
      internal::kRowsFile, internal::kWeightsFile, internal::kStateFile};
  const int missing =
      input.ConsumeBool() ? input.ConsumeIntegralInRange(0, 3) : -1;
  for (int i = 0; i < 3; ++i) {
    if (i != missing) WriteFile(JoinPath(dir, names[i]), files[i]);
  }
  if (missing == 3) return;
  std::string meta = internal::FrameMetadata(metadata);
  switch (input.ConsumeBool() ? input.ConsumeIntegralInRange(0, 2) : -1) {
    case 0:  // A damaged frame.
      meta[input.ConsumeIntegralInRange<size_t>(0, meta.size() - 1)] ^=
          static_cast<char>(input.ConsumeIntegralInRange(1, 255));
      break;
    case 1:  // Raw bytes behind a correct frame.
      meta = internal::FrameMetadata(checkpoint_v1::CheckpointMetadata());
      meta.resize(internal::kMetadataHeaderBytes);
      meta += input.ConsumeRandomLengthString(256);
      break;
    case 2:  // Raw bytes.
      meta = input.ConsumeRandomLengthString(256);
      break;
    default:
      break;
  }
  WriteFile(JoinPath(dir, internal::kMetadataFile), meta);
}

// A directory of this process, removed when it exits.
const std::string& Root() {
  static const std::string* root = [] {
    std::string pattern = "/tmp/checkpoint_fuzzer.XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    std::atexit([] { internal::RemoveTree(Root()).IgnoreError(); });
    return new std::string(pattern);
  }();
  return *root;
}

// Restores a directory made from the input.
void FuzzOne(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  const std::string root = JoinPath(Root(), "ckpt");
  if (!internal::RemoveTree(root).ok() || !internal::MakeDirectory(root).ok()) {
    std::abort();
  }
  const std::string table_dir = JoinPath(root, "t");
  if (!internal::MakeDirectory(table_dir).ok()) std::abort();
  const Shape shape = FuzzShape(input);
  const bool with_delta = input.ConsumeBool();
  FuzzCheckpoint(input, table_dir, shape, 1, /*delta=*/false);
  if (with_delta) FuzzCheckpoint(input, table_dir, shape, 2, /*delta=*/true);
  TableRegistry registry({.memory_budget_bytes = int64_t{64} << 20,
                          .shard_index = shape.shard_index,
                          .shard_count = input.ConsumeBool()
                                             ? shape.shard_count
                                             : 3 - shape.shard_count});
  absl::StatusOr<std::unique_ptr<CheckpointManager>> manager =
      CheckpointManager::Create({.directory = root}, &registry);
  if (!manager.ok()) std::abort();
  absl::StatusOr<std::vector<RestoredTable>> restored =
      (*manager)->RestoreAll();
  if (!restored.ok() || restored->size() != 1) std::abort();
  if (!restored->front().restored) return;
  // A restored table serves and saves.
  absl::StatusOr<std::shared_ptr<EmbeddingTable>> table = registry.Get("t");
  if (!table.ok()) std::abort();
  const TableStats stats = (*table)->Stats();
  const std::vector<int64_t> rows =
      *(*table)->HeldRows(0, stats.spec.num_embeddings);
  std::vector<float> out(rows.size() * (*table)->dim());
  if (!(*table)->Lookup(rows, DType::kFloat32, out.data()).ok()) std::abort();
  const std::vector<std::string> tables = {"t"};
  if (!(*manager)->Save(tables, SaveKind::kIncremental).ok()) std::abort();
}

}  // namespace
}  // namespace embedding

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  embedding::FuzzOne(data, size);
  return 0;
}
