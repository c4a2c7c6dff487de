#include "client/cpp/npy_transfer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/cpp/dynamic_table.h"
#include "client/cpp/npy_format.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

absl::Status OsError(absl::string_view what, absl::string_view path) {
  return absl::ErrnoToStatus(errno, absl::StrCat(what, " ", path));
}

// A file written under a temporary name, renamed to its own by Commit and
// removed if it never is, so a failed export leaves nothing behind (and an
// older file of that name stays as it was).
class OutputFile {
 public:
  static absl::StatusOr<std::unique_ptr<OutputFile>> Create(
      const std::string& path) {
    const std::string temp = absl::StrCat(path, ".partial");
    FILE* file = std::fopen(temp.c_str(), "wb");
    if (file == nullptr) return OsError("cannot create", temp);
    return std::unique_ptr<OutputFile>(new OutputFile(path, temp, file));
  }

  ~OutputFile() {
    if (file_ != nullptr) std::fclose(file_);
    if (!committed_) std::remove(temp_.c_str());
  }

  absl::Status Write(const void* data, size_t bytes) {
    if (std::fwrite(data, 1, bytes, file_) != bytes) {
      return OsError("cannot write", temp_);
    }
    bytes_ += bytes;
    return absl::OkStatus();
  }

  absl::Status Commit() {
    FILE* file = file_;
    file_ = nullptr;
    if (std::fclose(file) != 0) return OsError("cannot write", temp_);
    if (std::rename(temp_.c_str(), path_.c_str()) != 0) {
      return OsError(absl::StrCat("cannot rename ", temp_, " to"), path_);
    }
    committed_ = true;
    return absl::OkStatus();
  }

  int64_t bytes() const { return bytes_; }

 private:
  OutputFile(std::string path, std::string temp, FILE* file)
      : path_(std::move(path)), temp_(std::move(temp)), file_(file) {}

  const std::string path_;
  const std::string temp_;
  FILE* file_;
  bool committed_ = false;
  int64_t bytes_ = 0;
};

struct FileCloser {
  void operator()(FILE* file) const { std::fclose(file); }
};
using InputFile = std::unique_ptr<FILE, FileCloser>;

// Opens `path` and checks it is a .npy float32 C-order matrix whose size
// matches its header. INVALID_ARGUMENT naming the file otherwise.
absl::StatusOr<NpyMatrix> OpenNpy(const std::string& path, InputFile* file) {
  file->reset(std::fopen(path.c_str(), "rb"));
  if (*file == nullptr) return OsError("cannot open", path);
  struct stat status;
  if (fstat(fileno(file->get()), &status) != 0) {
    return OsError("cannot read", path);
  }
  std::string prefix(std::min<int64_t>(status.st_size, kMaxNpyHeaderBytes + 16),
                     '\0');
  if (std::fread(prefix.data(), 1, prefix.size(), file->get()) !=
      prefix.size()) {
    return OsError("cannot read", path);
  }
  EMBEDDING_ASSIGN_OR_RETURN(const NpyMatrix matrix,
                             ParseNpyHeader(prefix, path));
  const int64_t data_bytes = status.st_size - matrix.data_offset;
  if (data_bytes != matrix.data_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", data_bytes < matrix.data_bytes ? "truncated: " : "",
        "its header says (", matrix.rows, ", ", matrix.cols, ") float32, ",
        matrix.data_bytes, " bytes of data, but ", data_bytes,
        " bytes follow the header"));
  }
  if (fseeko(file->get(), matrix.data_offset, SEEK_SET) != 0) {
    return OsError("cannot read", path);
  }
  return matrix;
}

// One server's client or a cluster's: the same methods.
template <typename Client>
absl::StatusOr<NpyTransfer> Export(const Client& client,
                                   absl::string_view table,
                                   const std::string& path,
                                   const CallOptions& call) {
  EMBEDDING_ASSIGN_OR_RETURN(const v1::TableInfo info,
                             client.GetTable(table, call));
  const v1::TableSpec& spec = info.spec();
  EMBEDDING_RETURN_IF_ERROR(DenseOnly(spec, "export the rows"));
  // A cluster's merged info holds every row; one shard's does not.
  if (info.local_rows() < spec.num_embeddings()) {
    return absl::FailedPreconditionError(
        absl::StrCat("table ", table, " is split over ", spec.shard_count(),
                     " servers and this one holds shard ", spec.shard_index(),
                     " only; an export needs the whole table"));
  }
  const int64_t rows = spec.num_embeddings();
  const int64_t dim = spec.embedding_dim();
  EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<OutputFile> out,
                             OutputFile::Create(path));
  const std::string header = NpyHeader(rows, dim);
  EMBEDDING_RETURN_IF_ERROR(out->Write(header.data(), header.size()));
  int64_t next_row = 0;
  EMBEDDING_RETURN_IF_ERROR(client.ReadRowRangeInChunks(
      table, 0, rows,
      [&](const ReadRowsResult& chunk) -> absl::Status {
        // Rows go to the file by position: they must come in order.
        const int64_t count = chunk.indices.size();
        if (chunk.indices.front() != next_row ||
            chunk.indices.back() != next_row + count - 1) {
          return absl::InternalError(absl::StrCat(
              "server sent rows [", chunk.indices.front(), ", ",
              chunk.indices.back(), "] where row ", next_row, " was due"));
        }
        next_row += count;
        return out->Write(chunk.values.data.data(),
                          chunk.values.data.size() * sizeof(float));
      },
      call));
  if (next_row != rows) {
    return absl::InternalError(absl::StrCat("server sent ", next_row, " of ",
                                            rows, " rows of table ", table));
  }
  const int64_t bytes = out->bytes();
  EMBEDDING_RETURN_IF_ERROR(out->Commit());
  return NpyTransfer{.rows = rows, .dim = dim, .file_bytes = bytes};
}

template <typename Client>
absl::StatusOr<NpyTransfer> Import(const Client& client,
                                   absl::string_view table,
                                   const std::string& path,
                                   const CallOptions& call) {
  InputFile file;
  EMBEDDING_ASSIGN_OR_RETURN(const NpyMatrix matrix, OpenNpy(path, &file));
  EMBEDDING_ASSIGN_OR_RETURN(const v1::TableInfo info,
                             client.GetTable(table, call));
  EMBEDDING_RETURN_IF_ERROR(DenseOnly(info.spec(), "import the rows"));
  const int64_t rows = info.spec().num_embeddings();
  const int64_t dim = info.spec().embedding_dim();
  if (matrix.rows != rows || matrix.cols != dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": shape (", matrix.rows, ", ", matrix.cols,
        ") does not match table ", table, " [", rows, ", ", dim, "]"));
  }
  NpyTransfer result{.rows = rows,
                     .dim = dim,
                     .file_bytes = matrix.data_offset + matrix.data_bytes};
  const int64_t step = client.BulkRows(dim, /*with_indices=*/false);
  std::vector<float> chunk;
  for (int64_t start = 0; start < rows; start += step) {
    const int64_t count = std::min(step, rows - start);
    chunk.resize(count * dim);
    if (std::fread(chunk.data(), sizeof(float), chunk.size(), file.get()) !=
        chunk.size()) {
      // Checked against the size up front: the file changed under us.
      return std::ferror(file.get()) ? OsError("cannot read", path)
                                     : absl::InvalidArgumentError(absl::StrCat(
                                           path, ": truncated while read"));
    }
    EMBEDDING_ASSIGN_OR_RETURN(
        const WriteResult written,
        client.WriteRowRange(table, start, dim, chunk, call));
    result.version = written.version;
  }
  return result;
}

}  // namespace

absl::StatusOr<NpyTransfer> ExportNpy(const EmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call) {
  return Export(client, table, path, call);
}

absl::StatusOr<NpyTransfer> ExportNpy(const ShardedEmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call) {
  return Export(client, table, path, call);
}

absl::StatusOr<NpyTransfer> ImportNpy(const EmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call) {
  return Import(client, table, path, call);
}

absl::StatusOr<NpyTransfer> ImportNpy(const ShardedEmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call) {
  return Import(client, table, path, call);
}

}  // namespace embedding
