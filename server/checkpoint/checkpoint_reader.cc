#include "server/checkpoint/checkpoint_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/checked_math.h"
#include "common/shard_layout.h"
#include "common/status_macros.h"
#include "server/checkpoint/file_io.h"
#include "server/core/exactly_once.h"
#include "server/service/proto_convert.h"

namespace embedding::internal {
namespace {

absl::Status Refuse(absl::string_view file, absl::string_view problem) {
  return absl::DataLossError(absl::StrCat(file, ": ", problem));
}

// The same error, its message prefixed with the file.
absl::Status InFile(absl::string_view file, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(file, ": ", status.message()));
}

struct ExpectedFile {
  absl::string_view name;
  NpyType type;
  std::vector<int64_t> shape;
  std::string header;
  uint64_t size = 0;
};

// The data files a checkpoint of `rows` rows of a table of `spec` must have;
// nullopt when their size overflows (never for a spec that passed
// validation).
std::optional<std::vector<ExpectedFile>> ExpectedFiles(const TableSpec& spec,
                                                       int64_t rows,
                                                       int64_t state_width) {
  std::vector<ExpectedFile> files = {
      {kRowsFile, NpyType::kInt64, {rows}},
      {kWeightsFile, NpyType::kFloat32, {rows, spec.embedding_dim}},
      {kStateFile, NpyType::kFloat32, {rows, state_width}}};
  if (spec.dynamic.has_value()) {
    files.push_back({kKeysFile, NpyType::kInt64, {rows, kKeyColumns}});
    if (const int64_t counters = DynamicRows::AdmissionCounters(*spec.dynamic);
        counters > 0) {
      files.push_back({kAdmissionFile, NpyType::kUint8, {counters}});
    }
  }
  for (ExpectedFile& file : files) {
    file.header = NpyHeader(file.type, file.shape);
    std::optional<int64_t> bytes = NpyItemSize(file.type);
    for (int64_t extent : file.shape) {
      if (bytes.has_value()) bytes = CheckedMul(*bytes, extent);
    }
    if (bytes.has_value()) {
      bytes = CheckedAdd(*bytes, static_cast<int64_t>(file.header.size()));
    }
    if (!bytes.has_value()) return std::nullopt;
    file.size = static_cast<uint64_t>(*bytes);
  }
  return files;
}

// Checks the metadata's fields against the directory's name and each other.
absl::Status CheckMetadata(const std::string& file, absl::string_view table,
                           CheckpointName name, CheckpointHeader& header) {
  const checkpoint_v1::CheckpointMetadata& metadata = header.metadata;
  if (metadata.table() != table) {
    return Refuse(file, absl::StrCat("belongs to table \"", metadata.table(),
                                     "\", not \"", table, "\""));
  }
  const bool delta =
      metadata.kind() == checkpoint_v1::CheckpointMetadata::KIND_DELTA;
  if (metadata.sequence() != name.sequence || delta != name.delta ||
      (!delta &&
       metadata.kind() != checkpoint_v1::CheckpointMetadata::KIND_FULL)) {
    return Refuse(file,
                  absl::StrCat("describes checkpoint ", metadata.sequence(),
                               " of kind ", static_cast<int>(metadata.kind()),
                               ", not its directory ", name.ToString()));
  }
  if (delta ? (metadata.base_sequence() == 0 ||
               metadata.base_sequence() >= metadata.sequence())
            : metadata.base_sequence() != 0) {
    return Refuse(
        file,
        absl::StrCat("base checkpoint ", metadata.base_sequence(),
                     " is impossible for checkpoint ", metadata.sequence()));
  }
  header.base_sequence = metadata.base_sequence();

  absl::StatusOr<TableSpec> converted = FromProto(metadata.spec());
  if (!converted.ok()) {
    return Refuse(file,
                  absl::StrCat("bad spec: ", converted.status().message()));
  }
  TableSpec& spec = *converted;
  spec.shard_index = metadata.spec().shard_index();
  spec.shard_count = metadata.spec().shard_count();
  if (absl::Status valid = ValidateTableSpec(spec); !valid.ok()) {
    return Refuse(file, absl::StrCat("bad spec: ", valid.message()));
  }
  if (spec.name != table) {
    return Refuse(file, absl::StrCat("spec names table \"", spec.name, "\""));
  }
  const int64_t state_width =
      OptimizerStateWidth(spec.optimizer.kind, spec.embedding_dim);
  if (metadata.state_width() != state_width) {
    return Refuse(file, absl::StrCat("state width ", metadata.state_width(),
                                     ", expected ", state_width, " for ",
                                     InfoOf(spec.optimizer.kind).name));
  }
  // A dynamic table's full checkpoint holds the slots holding an id, at
  // most its capacity.
  const int64_t local_rows = LocalRowCount(spec);
  if (metadata.rows() < 0 || metadata.rows() > local_rows ||
      (!delta && !spec.dynamic.has_value() && metadata.rows() != local_rows)) {
    return Refuse(file, absl::StrCat(metadata.rows(), " rows; the shard holds ",
                                     local_rows));
  }
  const int64_t admission_stripes =
      spec.dynamic.has_value() ? DynamicRows::AdmissionStripes(*spec.dynamic)
                               : 0;
  if (metadata.admission_counts_size() != admission_stripes) {
    return Refuse(
        file, absl::StrCat(metadata.admission_counts_size(),
                           " admission counts, expected ", admission_stripes));
  }
  header.table.admission.counts.assign(metadata.admission_counts().begin(),
                                       metadata.admission_counts().end());
  if (metadata.version() < 0 || metadata.step() < 0) {
    return Refuse(file, absl::StrCat("negative version ", metadata.version(),
                                     " or step ", metadata.step()));
  }
  header.table.spec = std::move(spec);
  header.table.version = metadata.version();
  header.table.step = metadata.step();
  for (const checkpoint_v1::ClientWindow& window : metadata.exactly_once()) {
    header.table.exactly_once.push_back(
        {window.client_id(), std::vector<uint64_t>(window.sequences().begin(),
                                                   window.sequences().end())});
  }
  // What Finish will import must import.
  if (absl::Status windows =
          ExactlyOnceTracker().Import(header.table.exactly_once);
      !windows.ok()) {
    return Refuse(file, windows.message());
  }
  header.rows = metadata.rows();
  header.time = absl::FromUnixMicros(metadata.time_unix_micros());
  if (metadata.block_size() < kMinBlockSize ||
      metadata.block_size() > kMaxBlockSize) {
    return Refuse(file, absl::StrCat("block size ", metadata.block_size(),
                                     " is outside [", kMinBlockSize, ", ",
                                     kMaxBlockSize, "]"));
  }
  return absl::OkStatus();
}

// Checks the metadata's list of files and that each exists with its size.
absl::Status CheckFiles(const std::string& file,
                        const CheckpointHeader& header) {
  const checkpoint_v1::CheckpointMetadata& metadata = header.metadata;
  const std::optional<std::vector<ExpectedFile>> expected =
      ExpectedFiles(header.table.spec, metadata.rows(), metadata.state_width());
  if (!expected.has_value() ||
      metadata.files_size() != static_cast<int>(expected->size())) {
    return Refuse(
        file,
        absl::StrCat("lists ", metadata.files_size(), " data files, expected ",
                     expected.has_value() ? expected->size() : 3));
  }
  for (size_t i = 0; i < expected->size(); ++i) {
    const ExpectedFile& want = (*expected)[i];
    const checkpoint_v1::DataFile& listed = metadata.files(static_cast<int>(i));
    if (listed.name() != want.name || listed.size() != want.size) {
      return Refuse(
          file, absl::StrCat("data file ", i, " is \"", listed.name(), "\" of ",
                             listed.size(), " bytes, expected \"", want.name,
                             "\" of ", want.size));
    }
    const uint64_t blocks =
        (want.size + metadata.block_size() - 1) / metadata.block_size();
    if (static_cast<uint64_t>(listed.block_xxh3_size()) != blocks) {
      return Refuse(
          file, absl::StrCat(listed.block_xxh3_size(), " block checksums for ",
                             want.name, ", expected ", blocks));
    }
    const std::string path = JoinPath(header.path, want.name);
    struct stat info;
    if (stat(path.c_str(), &info) != 0) {
      return Refuse(path, absl::StrCat("missing: ", std::strerror(errno)));
    }
    if (!S_ISREG(info.st_mode) ||
        static_cast<uint64_t>(info.st_size) != want.size) {
      return Refuse(
          path, absl::StrCat("has ", info.st_size, " bytes, the metadata says ",
                             want.size, " (truncated or overwritten)"));
    }
  }
  return absl::OkStatus();
}

// Reads a data file sequentially, checking each block against its checksum
// before handing out any of its bytes.
class VerifiedReader {
 public:
  static absl::StatusOr<VerifiedReader> Open(
      const std::string& path, const checkpoint_v1::DataFile& listed,
      uint32_t block_size) {
    absl::StatusOr<File> file = File::OpenForReading(path);
    if (!file.ok()) return absl::DataLossError(file.status().message());
    EMBEDDING_ASSIGN_OR_RETURN(const int64_t size, file->Size());
    if (static_cast<uint64_t>(size) != listed.size()) {
      return Refuse(path,
                    absl::StrCat("has ", size, " bytes, the metadata says ",
                                 listed.size()));
    }
    return VerifiedReader(*std::move(file), listed, block_size);
  }

  absl::Status Read(void* out, size_t size) {
    char* dst = static_cast<char*>(out);
    while (size > 0) {
      if (position_ == block_.size()) EMBEDDING_RETURN_IF_ERROR(NextBlock());
      const size_t take = std::min(size, block_.size() - position_);
      std::memcpy(dst, block_.data() + position_, take);
      position_ += take;
      dst += take;
      size -= take;
    }
    return absl::OkStatus();
  }

 private:
  VerifiedReader(File file, const checkpoint_v1::DataFile& listed,
                 uint32_t block_size)
      : file_(std::move(file)), listed_(listed), block_size_(block_size) {}

  absl::Status NextBlock() {
    const uint64_t offset = uint64_t{block_size_} * next_block_;
    if (offset >= listed_.size()) {
      return Refuse(file_.path(), "read past the end of the data");
    }
    block_.resize(std::min<uint64_t>(block_size_, listed_.size() - offset));
    EMBEDDING_ASSIGN_OR_RETURN(const size_t got,
                               file_.Read(block_.data(), block_.size()));
    if (got != block_.size()) {
      return Refuse(file_.path(),
                    absl::StrCat("ends at byte ", offset + got,
                                 " while being read (truncated meanwhile)"));
    }
    const uint64_t actual = Checksum(block_);
    const uint64_t expected = listed_.block_xxh3(next_block_);
    if (actual != expected) {
      return Refuse(
          file_.path(),
          absl::StrCat("block ", next_block_, " (bytes ", offset, " to ",
                       offset + block_.size(), ") fails its checksum: XXH3 ",
                       absl::Hex(actual), ", expected ", absl::Hex(expected)));
    }
    ++next_block_;
    position_ = 0;
    return absl::OkStatus();
  }

  File file_;
  const checkpoint_v1::DataFile& listed_;
  const uint32_t block_size_;
  std::string block_;
  size_t position_ = 0;
  int next_block_ = 0;
};

}  // namespace

absl::StatusOr<CheckpointHeader> ReadCheckpointHeader(
    const std::string& table_directory, absl::string_view table,
    CheckpointName name) {
  CheckpointHeader header;
  header.path = JoinPath(table_directory, name.ToString());
  header.name = name;
  const std::string file = JoinPath(header.path, kMetadataFile);
  absl::StatusOr<std::string> bytes = ReadFile(file, kMaxMetadataBytes);
  if (!bytes.ok()) return absl::DataLossError(bytes.status().message());
  header.metadata_bytes = static_cast<int64_t>(bytes->size());
  absl::StatusOr<checkpoint_v1::CheckpointMetadata> metadata =
      UnframeMetadata(*bytes);
  if (!metadata.ok()) return InFile(file, metadata.status());
  header.metadata = *std::move(metadata);
  EMBEDDING_RETURN_IF_ERROR(CheckMetadata(file, table, name, header));
  EMBEDDING_RETURN_IF_ERROR(CheckFiles(file, header));
  return header;
}

absl::StatusOr<int64_t> LoadCheckpointRows(const CheckpointHeader& header,
                                           TableLoader& loader) {
  const checkpoint_v1::CheckpointMetadata& metadata = header.metadata;
  const int64_t rows = header.rows;
  const int64_t dim = header.table.spec.embedding_dim;
  const int64_t state_width = metadata.state_width();
  if (loader.dim() != dim || loader.state_width() != state_width) {
    return absl::InvalidArgumentError(
        absl::StrCat(header.path, ": rows of ", dim, " + ", state_width,
                     " floats do not fit the table's ", loader.dim(), " + ",
                     loader.state_width()));
  }
  const TableSpec& spec = header.table.spec;
  const bool dynamic = spec.dynamic.has_value();
  const std::vector<ExpectedFile> expected =
      *ExpectedFiles(spec, rows, state_width);
  std::vector<VerifiedReader> readers;
  for (size_t i = 0; i < expected.size(); ++i) {
    const std::string path = JoinPath(header.path, expected[i].name);
    EMBEDDING_ASSIGN_OR_RETURN(
        VerifiedReader reader,
        VerifiedReader::Open(path, metadata.files(static_cast<int>(i)),
                             metadata.block_size()));
    std::string npy_header(expected[i].header.size(), '\0');
    EMBEDDING_RETURN_IF_ERROR(
        reader.Read(npy_header.data(), npy_header.size()));
    if (npy_header != expected[i].header) {
      return Refuse(path,
                    absl::StrCat("the .npy header is not the one of a ",
                                 NpyTypeName(expected[i].type), " array of ",
                                 expected[i].shape[0], " rows"));
    }
    readers.push_back(std::move(reader));
  }

  const int64_t chunk = std::max<int64_t>(
      1, metadata.block_size() / ((dim + state_width) * sizeof(float) + 8));
  std::vector<int64_t> ids(chunk);
  std::vector<float> weights(chunk * dim), state(chunk * state_width);
  std::vector<int64_t> key_columns(dynamic ? chunk * kKeyColumns : 0);
  std::vector<DynamicKey> keys(dynamic ? chunk : 0);
  int64_t previous = -1;
  for (int64_t done = 0; done < rows;) {
    const int64_t n = std::min(chunk, rows - done);
    EMBEDDING_RETURN_IF_ERROR(readers[0].Read(ids.data(), n * sizeof(int64_t)));
    EMBEDDING_RETURN_IF_ERROR(
        readers[1].Read(weights.data(), n * dim * sizeof(float)));
    EMBEDDING_RETURN_IF_ERROR(
        readers[2].Read(state.data(), n * state_width * sizeof(float)));
    const auto row_ids = absl::MakeConstSpan(ids.data(), n);
    const auto row_weights = absl::MakeConstSpan(weights.data(), n * dim);
    const auto row_state = absl::MakeConstSpan(state.data(), n * state_width);
    absl::Status put;
    if (dynamic) {
      EMBEDDING_RETURN_IF_ERROR(readers[3].Read(
          key_columns.data(), n * kKeyColumns * sizeof(int64_t)));
      for (int64_t i = 0; i < n; ++i) {
        const int64_t* key = &key_columns[i * kKeyColumns];
        if (key[2] < 0 || key[2] > UINT32_MAX) {
          return Refuse(JoinPath(header.path, kKeysFile),
                        absl::StrCat("push count ", key[2], " at position ",
                                     done + i, " is outside [0, 2^32)"));
        }
        keys[i] = {.id = key[0],
                   .usage = {.touch = static_cast<uint64_t>(key[1]),
                             .push_count = static_cast<uint32_t>(key[2])}};
      }
      // PutDynamic checks each slot and id is the shard's and each value
      // finite.
      put = loader.PutDynamic(row_ids, absl::MakeConstSpan(keys.data(), n),
                              row_weights, row_state);
    } else {
      // Put checks each id is one of the shard's rows and each value finite.
      put = loader.Put(row_ids, row_weights, row_state);
    }
    if (!put.ok()) return Refuse(header.path, put.message());
    // Ascending ids are never repeated: a full checkpoint of as many ids as
    // the shard has rows holds each row once.
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] <= previous) {
        return Refuse(JoinPath(header.path, kRowsFile),
                      absl::StrCat("row id ", ids[i], " at position ", done + i,
                                   " does not ascend (after ", previous, ")"));
      }
      previous = ids[i];
    }
    done += n;
  }
  if (expected.size() > 4) {  // The admission sketch.
    DynamicRows::Admission admission{
        .counters = std::vector<uint8_t>(expected[4].shape[0]),
        .counts = header.table.admission.counts};
    EMBEDDING_RETURN_IF_ERROR(
        readers[4].Read(admission.counters.data(), admission.counters.size()));
    loader.PutAdmission(std::move(admission));
  }
  int64_t bytes = header.metadata_bytes;
  for (const ExpectedFile& file : expected) bytes += file.size;
  return bytes;
}

}  // namespace embedding::internal
