// Writes one checkpoint of one table from a TableSnapshot: the .npy data
// files and the metadata into a temporary directory beside the checkpoint,
// each fsynced, then renamed into place and the table's directory fsynced,
// so that the checkpoint appears complete or not at all.
//
//   absl::StatusOr<WrittenCheckpoint> written = WriteCheckpoint(
//       {.table_directory = dir, .name = {7, /*delta=*/false}, ...},
//       *std::move(snapshot));
//
// Thread-compatible: one writer per table directory at a time.
#ifndef SERVER_CHECKPOINT_CHECKPOINT_WRITER_H_
#define SERVER_CHECKPOINT_CHECKPOINT_WRITER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/checkpoint/checkpoint_format.h"
#include "server/core/table_snapshot.h"

namespace embedding::internal {

struct WriteRequest {
  // The table's directory; it exists.
  std::string table_directory;
  CheckpointName name;
  // A delta's base checkpoint (the one it applies on top of).
  uint64_t base_sequence = 0;
  absl::Time time;  // When the save began.
  // Polled between blocks; true stops the write (CANCELLED).
  const std::atomic<bool>* cancelled = nullptr;
  uint32_t block_size = kBlockSize;
};

struct WrittenCheckpoint {
  std::string path;
  int64_t bytes = 0;  // Data and metadata.
  int64_t rows = 0;
  int64_t version = 0;
  uint32_t epoch = 0;  // The snapshot's.
};

// Writes `snapshot` (ending it as soon as its rows are copied) as checkpoint
// `request.name`. On any failure the temporary directory is removed and
// nothing else changed: the I/O error naming the file and the OS error
// (codes as IoError), CANCELLED, or FAILED_PRECONDITION for a row holding a
// non-finite value (a checkpoint of it could not be restored).
absl::StatusOr<WrittenCheckpoint> WriteCheckpoint(
    const WriteRequest& request, std::unique_ptr<TableSnapshot> snapshot);

}  // namespace embedding::internal

#endif  // SERVER_CHECKPOINT_CHECKPOINT_WRITER_H_
