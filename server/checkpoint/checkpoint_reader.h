// Reads checkpoints written by checkpoint_writer.h, trusting nothing: the
// metadata's frame and checksum, every field against the directory's name
// and against the others, every data file's size, .npy header and block
// checksums, every row id (ascending, held by the shard) and value (finite)
// are checked, and every refusal names the file and what is wrong.
//
//   absl::StatusOr<CheckpointHeader> header =
//       ReadCheckpointHeader(table_dir, "users", {7, /*delta=*/false});
//   absl::StatusOr<int64_t> bytes = LoadCheckpointRows(*header, loader);
//
// Thread-compatible.
#ifndef SERVER_CHECKPOINT_CHECKPOINT_READER_H_
#define SERVER_CHECKPOINT_CHECKPOINT_READER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/checkpoint/checkpoint_format.h"
#include "server/core/table_loader.h"
#include "server/core/table_snapshot.h"

namespace embedding::internal {

// A checkpoint whose metadata was read and checked, and whose data files
// exist with the sizes it lists.
struct CheckpointHeader {
  std::string path;  // The checkpoint's directory.
  CheckpointName name;
  uint64_t base_sequence = 0;  // A delta's base.
  // The table at the cut; the spec holds the shard it was saved from.
  TableMetadata table;
  int64_t rows = 0;
  absl::Time time;
  int64_t metadata_bytes = 0;
  checkpoint_v1::CheckpointMetadata metadata;  // For the files' checksums.
};

// Reads and checks the metadata of checkpoint `name` of `table`, in the
// table's directory `table_directory`. DATA_LOSS (corrupt, truncated,
// missing or foreign files) or FAILED_PRECONDITION (a newer format
// version), naming the file and the problem.
absl::StatusOr<CheckpointHeader> ReadCheckpointHeader(
    const std::string& table_directory, absl::string_view table,
    CheckpointName name);

// Reads the rows of a checkpoint into `loader` (built from a spec equal to
// the header's but for the optimizer's hyper-parameters), checking each
// block before its bytes are used. Returns the bytes read. DATA_LOSS naming
// the file and the problem; rows already put stay put, so on failure the
// loader is to be discarded.
absl::StatusOr<int64_t> LoadCheckpointRows(const CheckpointHeader& header,
                                           TableLoader& loader);

}  // namespace embedding::internal

#endif  // SERVER_CHECKPOINT_CHECKPOINT_READER_H_
