// The on-disk format of checkpoints (docs/checkpoint_format.md): names of
// directories and files, the framing of the metadata file and the .npy
// headers of the data files. Pure functions, no I/O.
//
//   std::string meta = FrameMetadata(metadata);
//   absl::StatusOr<v1::CheckpointMetadata> read = UnframeMetadata(meta);
//   std::string header = NpyHeader(NpyType::kFloat32, {rows, dim});
//
// Thread-safe.
#ifndef SERVER_CHECKPOINT_CHECKPOINT_FORMAT_H_
#define SERVER_CHECKPOINT_CHECKPOINT_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "embedding/checkpoint/v1/checkpoint.pb.h"

namespace embedding::internal {

namespace checkpoint_v1 = ::embedding::checkpoint::v1;

// The metadata file: magic, format version, reserved (0), payload length,
// XXH3-64 of bytes [8, 24) and the payload, then the payload: a serialized
// CheckpointMetadata. Integers little-endian.
inline constexpr absl::string_view kMetadataMagic = "EMBDCKPT";
// Version 2 is written for dynamic tables (keys.npy, admission.npy), version
// 1 for the others, so that servers that read only version 1 still read
// them; both are read.
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kDynamicFormatVersion = 2;
inline constexpr int64_t kMetadataHeaderBytes = 32;
// Larger metadata than this is refused unread (its size is mostly the
// exactly-once windows: 4096 sequences per client).
inline constexpr int64_t kMaxMetadataBytes = int64_t{256} << 20;

inline constexpr absl::string_view kMetadataFile = "checkpoint.meta";
inline constexpr absl::string_view kRowsFile = "rows.npy";
inline constexpr absl::string_view kWeightsFile = "weights.npy";
inline constexpr absl::string_view kStateFile = "state.npy";
// Dynamic tables: rows.npy holds slots; keys.npy the id, last-push touch and
// push count of each; admission.npy the admission sketch.
inline constexpr absl::string_view kKeysFile = "keys.npy";
inline constexpr absl::string_view kAdmissionFile = "admission.npy";
// keys.npy's columns: id, touch, push count.
inline constexpr int64_t kKeyColumns = 3;

// Bytes per checksummed block written; a reader accepts any block size in
// [kMinBlockSize, kMaxBlockSize].
inline constexpr uint32_t kBlockSize = uint32_t{1} << 20;
inline constexpr uint32_t kMinBlockSize = 4096;
inline constexpr uint32_t kMaxBlockSize = uint32_t{64} << 20;

// Checkpoints of a table: "<sequence, 8 digits or more>.full" or ".delta".
struct CheckpointName {
  uint64_t sequence = 0;  // >= 1.
  bool delta = false;

  std::string ToString() const;
  // nullopt for anything else (temporary directories included).
  static std::optional<CheckpointName> Parse(absl::string_view name);
};

// Entries in a table's directory that begin with this are temporary: a save
// in progress or a deletion, removed when found by the next start.
inline constexpr absl::string_view kTemporaryPrefix = ".tmp-";

// A table's directory under the checkpoint directory: its name, with a
// leading '.' written as "%2E" so that tables "." and ".." stay inside
// ('%' cannot occur in a table name).
std::string TableDirectoryName(absl::string_view table);
// The table of a directory name; nullopt when it is none (including names
// that start with '.').
std::optional<std::string> TableOfDirectory(absl::string_view directory);

// The metadata file's bytes for `metadata`.
std::string FrameMetadata(const checkpoint_v1::CheckpointMetadata& metadata);
// The metadata in a metadata file's bytes. DATA_LOSS says what is wrong
// (magic, size, checksum, parse) and FAILED_PRECONDITION names a format
// version this code does not read.
absl::StatusOr<checkpoint_v1::CheckpointMetadata> UnframeMetadata(
    absl::string_view file);

enum class NpyType { kInt64, kFloat32, kUint8 };

int64_t NpyItemSize(NpyType type);
// "int64", "float32", "uint8".
const char* NpyTypeName(NpyType type);

// A .npy (format 1.0) header for a C-order little-endian array of `shape`,
// padded so that the data begins at a multiple of 64 bytes.
std::string NpyHeader(NpyType type, const std::vector<int64_t>& shape);

// XXH3-64 with seed 0.
uint64_t Checksum(absl::string_view data);

}  // namespace embedding::internal

#endif  // SERVER_CHECKPOINT_CHECKPOINT_FORMAT_H_
