#include "server/checkpoint/checkpoint_writer.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/checkpoint/file_io.h"
#include "server/service/proto_convert.h"

namespace embedding::internal {
namespace {

// Writes a file block by block, recording each block's checksum.
class BlockWriter {
 public:
  static absl::StatusOr<BlockWriter> Create(std::string path,
                                            uint32_t block_size) {
    EMBEDDING_ASSIGN_OR_RETURN(File file, File::Create(std::move(path)));
    return BlockWriter(std::move(file), block_size);
  }

  absl::Status Append(const void* data, size_t size) {
    const char* bytes = static_cast<const char*>(data);
    while (size > 0) {
      const size_t take = std::min(size, block_size_ - buffer_.size());
      buffer_.append(bytes, take);
      bytes += take;
      size -= take;
      if (buffer_.size() == block_size_) EMBEDDING_RETURN_IF_ERROR(Flush());
    }
    return absl::OkStatus();
  }

  // Writes what is left, fsyncs, closes, and describes the file in `out`.
  absl::Status Finish(absl::string_view name, checkpoint_v1::DataFile* out) {
    if (!buffer_.empty()) EMBEDDING_RETURN_IF_ERROR(Flush());
    EMBEDDING_RETURN_IF_ERROR(file_.SyncAndClose());
    out->set_name(std::string(name));
    out->set_size(size_);
    for (uint64_t checksum : checksums_) out->add_block_xxh3(checksum);
    return absl::OkStatus();
  }

 private:
  BlockWriter(File file, uint32_t block_size)
      : file_(std::move(file)), block_size_(block_size) {
    buffer_.reserve(block_size);
  }

  absl::Status Flush() {
    checksums_.push_back(Checksum(buffer_));
    EMBEDDING_RETURN_IF_ERROR(file_.Write(buffer_));
    size_ += buffer_.size();
    buffer_.clear();
    return absl::OkStatus();
  }

  File file_;
  size_t block_size_;
  std::string buffer_;
  uint64_t size_ = 0;
  std::vector<uint64_t> checksums_;
};

absl::Status CheckFinite(const std::vector<float>& values, int64_t width,
                         const std::vector<int64_t>& rows, int64_t n,
                         const char* what) {
  for (int64_t i = 0; i < n * width; ++i) {
    if (!std::isfinite(values[i])) {
      return absl::FailedPreconditionError(
          absl::StrCat("row ", rows[i / width], " has a non-finite ", what,
                       " (", values[i], ") at column ", i % width,
                       "; a checkpoint of it could not be restored"));
    }
  }
  return absl::OkStatus();
}

absl::Status Cancelled(const WriteRequest& request) {
  if (request.cancelled != nullptr &&
      request.cancelled->load(std::memory_order_relaxed)) {
    return absl::CancelledError(
        absl::StrCat("save to ", request.table_directory, " cancelled"));
  }
  return absl::OkStatus();
}

checkpoint_v1::CheckpointMetadata MetadataOf(const WriteRequest& request,
                                             const TableMetadata& table,
                                             int64_t rows,
                                             int64_t state_width) {
  checkpoint_v1::CheckpointMetadata metadata;
  metadata.set_table(table.spec.name);
  metadata.set_sequence(request.name.sequence);
  metadata.set_kind(request.name.delta
                        ? checkpoint_v1::CheckpointMetadata::KIND_DELTA
                        : checkpoint_v1::CheckpointMetadata::KIND_FULL);
  metadata.set_base_sequence(request.name.delta ? request.base_sequence : 0);
  v1::TableInfo info;
  ToProto(TableStats{.spec = table.spec}, &info);
  *metadata.mutable_spec() = info.spec();
  metadata.set_version(table.version);
  metadata.set_step(table.step);
  metadata.set_time_unix_micros(absl::ToUnixMicros(request.time));
  metadata.set_rows(rows);
  metadata.set_state_width(state_width);
  for (const ClientWindow& window : table.exactly_once) {
    checkpoint_v1::ClientWindow* out = metadata.add_exactly_once();
    out->set_client_id(window.client_id);
    out->mutable_sequences()->Add(window.sequences.begin(),
                                  window.sequences.end());
  }
  metadata.set_block_size(request.block_size);
  metadata.mutable_admission_counts()->Add(table.admission.counts.begin(),
                                           table.admission.counts.end());
  return metadata;
}

// A data file being written: its name, its writer.
struct DataFileWriter {
  absl::string_view name;
  BlockWriter writer;
};

absl::StatusOr<DataFileWriter> StartFile(const WriteRequest& request,
                                         const std::string& temporary,
                                         absl::string_view name, NpyType type,
                                         const std::vector<int64_t>& shape) {
  EMBEDDING_ASSIGN_OR_RETURN(
      BlockWriter writer,
      BlockWriter::Create(JoinPath(temporary, name), request.block_size));
  const std::string header = NpyHeader(type, shape);
  EMBEDDING_RETURN_IF_ERROR(writer.Append(header.data(), header.size()));
  return DataFileWriter{name, std::move(writer)};
}

// Everything but the rename: the data files and the metadata, fsynced, in
// `temporary`.
absl::StatusOr<WrittenCheckpoint> WriteFiles(
    const WriteRequest& request, const std::string& temporary,
    std::unique_ptr<TableSnapshot> snapshot) {
  const int64_t rows = snapshot->rows();
  const int64_t dim = snapshot->dim();
  const int64_t state_width = snapshot->state_width();
  const bool dynamic = snapshot->dynamic();
  // rows, weights, state (and keys).
  std::vector<DataFileWriter> files;
  for (auto [name, type, shape] : std::vector<
           std::tuple<absl::string_view, NpyType, std::vector<int64_t>>>{
           {kRowsFile, NpyType::kInt64, {rows}},
           {kWeightsFile, NpyType::kFloat32, {rows, dim}},
           {kStateFile, NpyType::kFloat32, {rows, state_width}},
           {kKeysFile, NpyType::kInt64, {rows, kKeyColumns}}}) {
    if (name == kKeysFile && !dynamic) break;
    EMBEDDING_ASSIGN_OR_RETURN(
        DataFileWriter file, StartFile(request, temporary, name, type, shape));
    files.push_back(std::move(file));
  }

  // About a block of weights per chunk: cancellation is polled per chunk.
  const int64_t chunk = std::max<int64_t>(
      1, request.block_size / ((dim + state_width) * sizeof(float) + 8));
  std::vector<int64_t> ids(chunk);
  std::vector<float> weights(chunk * dim), state(chunk * state_width);
  std::vector<DynamicKey> keys(dynamic ? chunk : 0);
  std::vector<int64_t> key_columns(dynamic ? chunk * kKeyColumns : 0);
  int64_t copied = 0;
  while (const int64_t n = snapshot->Read(chunk, ids.data(), weights.data(),
                                          state.data(), keys.data())) {
    EMBEDDING_RETURN_IF_ERROR(Cancelled(request));
    EMBEDDING_RETURN_IF_ERROR(CheckFinite(weights, dim, ids, n, "weight"));
    EMBEDDING_RETURN_IF_ERROR(
        CheckFinite(state, state_width, ids, n, "optimizer state value"));
    EMBEDDING_RETURN_IF_ERROR(
        files[0].writer.Append(ids.data(), n * sizeof(int64_t)));
    EMBEDDING_RETURN_IF_ERROR(
        files[1].writer.Append(weights.data(), n * dim * sizeof(float)));
    EMBEDDING_RETURN_IF_ERROR(
        files[2].writer.Append(state.data(), n * state_width * sizeof(float)));
    if (dynamic) {
      for (int64_t i = 0; i < n; ++i) {
        key_columns[i * kKeyColumns] = keys[i].id;
        key_columns[i * kKeyColumns + 1] =
            static_cast<int64_t>(keys[i].usage.touch);
        key_columns[i * kKeyColumns + 2] = keys[i].usage.push_count;
      }
      EMBEDDING_RETURN_IF_ERROR(files[3].writer.Append(
          key_columns.data(), n * kKeyColumns * sizeof(int64_t)));
    }
    copied += n;
  }
  if (copied != rows) {
    return absl::InternalError(
        absl::StrCat("snapshot gave ", copied, " rows, promised ", rows));
  }
  const std::vector<uint8_t>& admission =
      snapshot->metadata().admission.counters;
  if (!admission.empty()) {
    EMBEDDING_ASSIGN_OR_RETURN(
        DataFileWriter file,
        StartFile(request, temporary, kAdmissionFile, NpyType::kUint8,
                  {static_cast<int64_t>(admission.size())}));
    EMBEDDING_RETURN_IF_ERROR(
        file.writer.Append(admission.data(), admission.size()));
    files.push_back(std::move(file));
  }
  checkpoint_v1::CheckpointMetadata metadata =
      MetadataOf(request, snapshot->metadata(), rows, state_width);
  WrittenCheckpoint written{.rows = rows,
                            .version = snapshot->metadata().version,
                            .epoch = snapshot->epoch()};
  // Every row is copied: end the snapshot, so that pushes stop saving
  // pre-images while the files are synced.
  snapshot.reset();

  EMBEDDING_RETURN_IF_ERROR(Cancelled(request));
  for (DataFileWriter& file : files) {
    EMBEDDING_RETURN_IF_ERROR(
        file.writer.Finish(file.name, metadata.add_files()));
  }
  const std::string framed = FrameMetadata(metadata);
  EMBEDDING_ASSIGN_OR_RETURN(File metadata_file,
                             File::Create(JoinPath(temporary, kMetadataFile)));
  EMBEDDING_RETURN_IF_ERROR(metadata_file.Write(framed));
  EMBEDDING_RETURN_IF_ERROR(metadata_file.SyncAndClose());
  for (const checkpoint_v1::DataFile& file : metadata.files()) {
    written.bytes += static_cast<int64_t>(file.size());
  }
  written.bytes += static_cast<int64_t>(framed.size());
  return written;
}

}  // namespace

absl::StatusOr<WrittenCheckpoint> WriteCheckpoint(
    const WriteRequest& request, std::unique_ptr<TableSnapshot> snapshot) {
  const std::string final_path =
      JoinPath(request.table_directory, request.name.ToString());
  const std::string temporary =
      JoinPath(request.table_directory,
               absl::StrCat(kTemporaryPrefix, request.name.ToString()));
  bool renamed = false;
  absl::StatusOr<WrittenCheckpoint> written =
      [&]() -> absl::StatusOr<WrittenCheckpoint> {
    EMBEDDING_RETURN_IF_ERROR(RemoveTree(temporary));
    EMBEDDING_RETURN_IF_ERROR(MakeDirectory(temporary).status());
    EMBEDDING_ASSIGN_OR_RETURN(
        WrittenCheckpoint result,
        WriteFiles(request, temporary, std::move(snapshot)));
    // The entries of the files must be durable before the rename publishes
    // them, and the rename before the save is acknowledged.
    EMBEDDING_RETURN_IF_ERROR(SyncDirectory(temporary));
    EMBEDDING_RETURN_IF_ERROR(Rename(temporary, final_path));
    renamed = true;
    EMBEDDING_RETURN_IF_ERROR(SyncDirectory(request.table_directory));
    result.path = final_path;
    return result;
  }();
  if (!written.ok()) {
    // Best effort: a leftover temporary is removed by the next start anyway.
    // A checkpoint renamed into place but not made durable is withdrawn, so
    // that what is on disk matches what the caller was told.
    RemoveTree(renamed ? final_path : temporary).IgnoreError();
  }
  return written;
}

}  // namespace embedding::internal
