// The newest checkpoint chain of a table in a checkpoint directory (its
// newest full checkpoint and the deltas extending it, as a server's restore
// finds them), read strictly: a refused checkpoint is an error naming it,
// never a reason to fall back to an older one, so that offline tools see
// exactly the newest state or nothing.
//
//   absl::StatusOr<CheckpointChain> chain = ReadNewestChain(dir, "users");
//   absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
//       LoadChain(*chain, &bytes_read);
//
// Thread-compatible.
#ifndef SERVER_TOOLS_CHECKPOINT_CHAIN_H_
#define SERVER_TOOLS_CHECKPOINT_CHAIN_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/checkpoint/checkpoint_reader.h"
#include "server/core/embedding_table.h"
#include "server/core/table_snapshot.h"

namespace embedding {

struct CheckpointChain {
  // The full checkpoint, then its deltas in order; never empty.
  std::vector<internal::CheckpointHeader> headers;

  // The table at the chain's last cut (spec, version, step, windows).
  const TableMetadata& table() const { return headers.back().table; }
  // Where the chain's last checkpoint is, for messages.
  const std::string& path() const { return headers.back().path; }
};

// The tables that have a directory in the checkpoint directory `directory`,
// sorted. FAILED_PRECONDITION when it cannot be read.
absl::StatusOr<std::vector<std::string>> ListCheckpointTables(
    const std::string& directory);

// The newest chain of `table` in `directory` (headers read and checked, data
// files not yet). NOT_FOUND when the table has no full checkpoint there;
// DATA_LOSS or FAILED_PRECONDITION from the reader, naming the checkpoint.
absl::StatusOr<CheckpointChain> ReadNewestChain(const std::string& directory,
                                                const std::string& table);

// The table the chain holds (its shard), every block verified. Adds the
// bytes read to `bytes_read`. DATA_LOSS naming the file and the problem.
absl::StatusOr<std::unique_ptr<EmbeddingTable>> LoadChain(
    const CheckpointChain& chain, int64_t* bytes_read);

}  // namespace embedding

#endif  // SERVER_TOOLS_CHECKPOINT_CHAIN_H_
