// A table to and from a NumPy .npy file through an EmbeddingClient, both
// streamed: an export writes the header, then appends each ReadRows chunk
// as it arrives; an import reads the file one WriteRows chunk at a time.
// Neither holds more than one chunk in memory, whatever the table's size.
// And the rows a table holds, with their ids, to and from a .npz file (a
// dynamic table's, or any table's): `ids` int64 [n] and `weights` float32
// [n, embedding_dim], stored as numpy.savez stores them (npz_archive.h).
//
//   absl::StatusOr<NpyTransfer> out = ExportNpy(client, "users", "u.npy");
//   // numpy.load("u.npy") is float32 [num_embeddings, embedding_dim].
//   absl::StatusOr<NpyTransfer> in = ImportNpy(client, "users", "u.npy");
//   ExportNpz(client, "clicks", "c.npz");  // numpy.load("c.npz")["ids"]
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
// several servers (this one holds only some of its rows) or a dynamic
// table (its rows have ids: ExportNpz), and the OS error of a failed
// write, naming the file. Over a ShardedEmbeddingClient, the whole table
// of its cluster.
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
// FAILED_PRECONDITION for a dynamic table (before anything is written:
// ImportNpz); codes as
// WriteRowRange (a failure part way leaves the earlier chunks written).
absl::StatusOr<NpyTransfer> ImportNpy(const EmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call = {});
absl::StatusOr<NpyTransfer> ImportNpy(const ShardedEmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call = {});

// Writes the rows `table` holds and their ids to the .npz file `path`:
// ids.npy int64 [n] and weights.npy float32 [n, embedding_dim]. A dynamic
// table's rows are those it holds (ReadHeldRows), in no particular order;
// a dense table's are rows [0, num_embeddings). Read whole into memory
// (a dynamic table's are at most its capacity), then written under
// `path`.partial and renamed. Codes as ReadHeldRows and ReadRowRange, plus
// FAILED_PRECONDITION for a table split over several servers (this one
// holds only some of its rows) and the OS error of a failed write. Over a
// ShardedEmbeddingClient, the rows of every shard.
absl::StatusOr<NpyTransfer> ExportNpz(const EmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call = {});
absl::StatusOr<NpyTransfer> ExportNpz(const ShardedEmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call = {});

// Writes the rows of the .npz file `path` (as ExportNpz writes it, or
// numpy.savez(path, ids=..., weights=...)) to the existing `table` at their
// ids, one WriteRows per bulk chunk: a dynamic table admits the ids it
// does not hold (evicting by its policy, never a row of the same chunk),
// with fresh optimizer state; a held row keeps its state. INVALID_ARGUMENT
// naming the file when it is not such a file (not a zip, a compressed or
// missing member, other dtypes or shapes, a CRC mismatch) or its dim is not
// the table's, all checked before anything is written; the OS error when
// it cannot be read; codes as WriteRows (RESOURCE_EXHAUSTED when a chunk
// has more ids of one stripe than it holds; a failure part way leaves the
// earlier chunks written).
absl::StatusOr<NpyTransfer> ImportNpz(const EmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call = {});
absl::StatusOr<NpyTransfer> ImportNpz(const ShardedEmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call = {});

}  // namespace embedding

#endif  // CLIENT_CPP_NPY_TRANSFER_H_
