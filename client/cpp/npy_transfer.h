// A table to and from a NumPy .npy file through an EmbeddingClient, both
// streamed: an export writes the header, then appends each ReadRows chunk
// as it arrives; an import reads the file one WriteRows chunk at a time.
// Neither holds more than one chunk in memory, whatever the table's size.
//
//   absl::StatusOr<NpyTransfer> out = ExportNpy(client, "users", "u.npy");
//   // numpy.load("u.npy") is float32 [num_embeddings, embedding_dim].
//   absl::StatusOr<NpyTransfer> in = ImportNpy(client, "users", "u.npy");
//
// Thread-safe as the client is; two calls on one file race as files do.
#ifndef CLIENT_CPP_NPY_TRANSFER_H_
#define CLIENT_CPP_NPY_TRANSFER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/sharded_client.h"

namespace embedding {

struct NpyTransfer {
  int64_t rows = 0;
  int64_t dim = 0;
  // Size of the .npy file, header included.
  int64_t file_bytes = 0;
  // ImportNpy: the table's version after the last chunk.
  int64_t version = 0;
};

// Writes every row of `table` to `path` as float32 [num_embeddings,
// embedding_dim] in C order (.npy format 1.0, as numpy.save writes it). The
// file is written under `path`.partial and renamed when complete. Rows read
// while pushes go on are each as of one update, not all as of one instant.
// Codes as ReadRowRange, plus FAILED_PRECONDITION for a table split over
// several servers (this one holds only some of its rows) and the OS error
// of a failed write, naming the file, and UNIMPLEMENTED for a dynamic table
// (its export needs the ids too, not done yet). Over a ShardedEmbeddingClient,
// the whole table of its cluster.
absl::StatusOr<NpyTransfer> ExportNpy(const EmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call = {});
absl::StatusOr<NpyTransfer> ExportNpy(const ShardedEmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call = {});

// Overwrites every row of the existing `table` with the .npy file at `path`
// (float32 [num_embeddings, embedding_dim], C order), one range write per
// bulk chunk; optimizer state is left as it is. INVALID_ARGUMENT naming the
// file when it is not such a file (not float32, not 2-D, Fortran order,
// truncated, trailing bytes) or its shape is not the table's, all checked
// before anything is written; the OS error when it cannot be read;
// UNIMPLEMENTED for a dynamic table (before anything is written); codes as
// WriteRowRange (a failure part way leaves the earlier chunks written).
absl::StatusOr<NpyTransfer> ImportNpy(const EmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call = {});
absl::StatusOr<NpyTransfer> ImportNpy(const ShardedEmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call = {});

}  // namespace embedding

#endif  // CLIENT_CPP_NPY_TRANSFER_H_
