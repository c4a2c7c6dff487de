#include "client/cpp/npy_transfer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cpp/dynamic_table.h"
#include "client/cpp/npy_format.h"
#include "client/cpp/npz_archive.h"
#include "common/quote.h"
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

// FAILED_PRECONDITION for a dynamic table: a .npy file has no ids.
absl::Status NpyNeedsDense(const v1::TableSpec& spec) {
  if (!spec.has_dynamic()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "table ", QuoteForMessage(spec.name()),
      " is dynamic: a .npy file holds rows [0, num_embeddings), and a "
      "dynamic table has none; use a .npz file, which carries the ids"));
}

// FAILED_PRECONDITION when `info` is of one shard of a dense table split
// over several servers: a cluster's merged info holds every row.
absl::Status CheckWholeTable(const v1::TableInfo& info,
                             absl::string_view table) {
  const v1::TableSpec& spec = info.spec();
  if (spec.has_dynamic() || info.local_rows() >= spec.num_embeddings()) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("table ", table, " is split over ", spec.shard_count(),
                   " servers and this one holds shard ", spec.shard_index(),
                   " only; an export needs the whole table"));
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
  EMBEDDING_RETURN_IF_ERROR(NpyNeedsDense(spec));
  EMBEDDING_RETURN_IF_ERROR(CheckWholeTable(info, table));
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
  EMBEDDING_RETURN_IF_ERROR(NpyNeedsDense(info.spec()));
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

absl::string_view BytesOf(const void* data, size_t bytes) {
  return absl::string_view(static_cast<const char*>(data), bytes);
}

template <typename Client>
absl::StatusOr<NpyTransfer> ExportIds(const Client& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call) {
  EMBEDDING_ASSIGN_OR_RETURN(const v1::TableInfo info,
                             client.GetTable(table, call));
  EMBEDDING_RETURN_IF_ERROR(CheckWholeTable(info, table));
  // A dense table's range [0, end) with its ids, a dynamic one's held rows.
  EMBEDDING_ASSIGN_OR_RETURN(const ReadRowsResult rows,
                             info.spec().has_dynamic()
                                 ? ReadHeldRows(client, table, call)
                                 : client.ReadRowRange(table, 0, 0, call));
  const int64_t count = static_cast<int64_t>(rows.indices.size());
  const int64_t dim = info.spec().embedding_dim();
  if (static_cast<int64_t>(rows.values.data.size()) != count * dim) {
    return absl::InternalError(
        absl::StrCat("server sent ", rows.values.data.size(), " values for ",
                     count, " rows of dim ", dim, " of table ", table));
  }
  const std::string ids_header = NpyIdsHeader(count);
  const std::string weights_header = NpyHeader(count, dim);
  const ZipMember members[] = {
      {.name = "ids.npy",
       .pieces = {ids_header,
                  BytesOf(rows.indices.data(), count * sizeof(int64_t))}},
      {.name = "weights.npy",
       .pieces = {weights_header,
                  BytesOf(rows.values.data.data(),
                          rows.values.data.size() * sizeof(float))}}};
  EMBEDDING_ASSIGN_OR_RETURN(std::unique_ptr<OutputFile> out,
                             OutputFile::Create(path));
  EMBEDDING_RETURN_IF_ERROR(
      WriteStoredZip(members, [&](absl::string_view bytes) {
        return out->Write(bytes.data(), bytes.size());
      }));
  const int64_t bytes = out->bytes();
  EMBEDDING_RETURN_IF_ERROR(out->Commit());
  return NpyTransfer{.rows = count, .dim = dim, .file_bytes = bytes};
}

// A .npz file opened for reading, its members found.
class NpzInput {
 public:
  static absl::StatusOr<NpzInput> Open(const std::string& path) {
    NpzInput input(path);
    input.file_.reset(std::fopen(path.c_str(), "rb"));
    if (input.file_ == nullptr) return OsError("cannot open", path);
    struct stat status;
    if (fstat(fileno(input.file_.get()), &status) != 0) {
      return OsError("cannot read", path);
    }
    input.size_ = status.st_size;
    EMBEDDING_ASSIGN_OR_RETURN(
        input.entries_,
        ReadZipDirectory(
            [&input](int64_t offset, int64_t bytes, std::string* out) {
              return input.ReadAt(offset, bytes, out);
            },
            input.size_, path));
    return input;
  }

  int64_t size() const { return size_; }

  // The stored member `name`. INVALID_ARGUMENT naming the file when there
  // is none, or it is compressed.
  absl::StatusOr<ZipEntry> Member(absl::string_view name) const {
    std::vector<std::string> names;
    for (const ZipEntry& entry : entries_) {
      if (entry.name != name) {
        names.push_back(entry.name);
        continue;
      }
      if (entry.method != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            path_, ": ", name, " is compressed (zip method ", entry.method,
            "); save it with numpy.savez, not numpy.savez_compressed"));
      }
      return entry;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": no ", name, " (it holds ", absl::StrJoin(names, ", "),
        "); expected ids.npy int64 [n] and weights.npy float32 [n, dim]"));
  }

  absl::Status ReadAt(int64_t offset, int64_t bytes, std::string* out) const {
    out->resize(bytes < 0 ? 0 : bytes);
    return ReadAt(offset, bytes, out->data());
  }

  // Reads `bytes` at `offset` into `out`. pread may return less than asked
  // (at most 2 GiB per call on Linux), so it is called until all is read.
  absl::Status ReadAt(int64_t offset, int64_t bytes, char* out) const {
    if (offset < 0 || bytes < 0 || offset > size_ || bytes > size_ - offset) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": truncated (", bytes, " bytes at ", offset,
                       " are past its ", size_, " bytes)"));
    }
    for (int64_t done = 0; done < bytes;) {
      const ssize_t got =
          pread(fileno(file_.get()), out + done, bytes - done, offset + done);
      if (got < 0) return OsError("cannot read", path_);
      // Checked against the size up front: the file changed under us.
      if (got == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path_, ": truncated while read"));
      }
      done += got;
    }
    return absl::OkStatus();
  }

  // INVALID_ARGUMENT unless `entry`'s contents have its CRC-32; read a
  // chunk at a time.
  absl::Status CheckCrc(const ZipEntry& entry) const {
    constexpr int64_t kChunk = 1 << 20;
    uint32_t crc = 0;
    std::string chunk;
    for (int64_t done = 0; done < entry.size; done += kChunk) {
      EMBEDDING_RETURN_IF_ERROR(ReadAt(
          entry.offset + done, std::min(kChunk, entry.size - done), &chunk));
      crc = ZipCrc32(crc, chunk);
    }
    if (crc == entry.crc32) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": ", entry.name, " is corrupt (its CRC-32 does not match)"));
  }

  // The header of a member holding a .npy array, parsed by `parse`, its
  // size checked against the member's.
  absl::StatusOr<NpyMatrix> NpyOf(
      const ZipEntry& entry,
      absl::StatusOr<NpyMatrix> (*parse)(absl::string_view,
                                         absl::string_view)) const {
    std::string prefix;
    EMBEDDING_RETURN_IF_ERROR(ReadAt(
        entry.offset, std::min(entry.size, kMaxNpyHeaderBytes + 16), &prefix));
    const std::string where = absl::StrCat(path_, " (", entry.name, ")");
    EMBEDDING_ASSIGN_OR_RETURN(const NpyMatrix matrix, parse(prefix, where));
    if (entry.size - matrix.data_offset != matrix.data_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": its header says ", matrix.data_bytes,
                       " bytes of data, but ", entry.size - matrix.data_offset,
                       " bytes follow it"));
    }
    return matrix;
  }

 private:
  explicit NpzInput(std::string path) : path_(std::move(path)) {}

  std::string path_;
  InputFile file_;
  int64_t size_ = 0;
  std::vector<ZipEntry> entries_;
};

template <typename Client>
absl::StatusOr<NpyTransfer> ImportIds(const Client& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call) {
  EMBEDDING_ASSIGN_OR_RETURN(const NpzInput input, NpzInput::Open(path));
  EMBEDDING_ASSIGN_OR_RETURN(const ZipEntry ids_entry, input.Member("ids.npy"));
  EMBEDDING_ASSIGN_OR_RETURN(const ZipEntry weights_entry,
                             input.Member("weights.npy"));
  EMBEDDING_ASSIGN_OR_RETURN(const NpyMatrix ids_array,
                             input.NpyOf(ids_entry, ParseNpyIdsHeader));
  EMBEDDING_ASSIGN_OR_RETURN(const NpyMatrix weights,
                             input.NpyOf(weights_entry, ParseNpyHeader));
  if (ids_array.rows != weights.rows) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", ids_array.rows,
                                                   " ids for ", weights.rows,
                                                   " rows of weights"));
  }
  EMBEDDING_ASSIGN_OR_RETURN(const v1::TableInfo info,
                             client.GetTable(table, call));
  const int64_t dim = info.spec().embedding_dim();
  if (weights.cols != dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": weights have ", weights.cols, " columns; table ",
                     table, " has embedding_dim ", dim));
  }
  // Everything checked before the first write.
  EMBEDDING_RETURN_IF_ERROR(input.CheckCrc(ids_entry));
  EMBEDDING_RETURN_IF_ERROR(input.CheckCrc(weights_entry));
  std::vector<int64_t> ids(ids_array.rows);
  EMBEDDING_RETURN_IF_ERROR(
      input.ReadAt(ids_entry.offset + ids_array.data_offset,
                   ids_array.data_bytes, reinterpret_cast<char*>(ids.data())));
  if (info.spec().has_dynamic()) {
    EMBEDDING_RETURN_IF_ERROR(CheckDynamicIds(ids));
  }
  NpyTransfer result{
      .rows = weights.rows, .dim = dim, .file_bytes = input.size()};
  const int64_t step = client.BulkRows(dim, /*with_indices=*/true);
  std::vector<float> values;
  for (int64_t start = 0; start < weights.rows; start += step) {
    const int64_t count = std::min(step, weights.rows - start);
    values.resize(count * dim);
    EMBEDDING_RETURN_IF_ERROR(
        input.ReadAt(weights_entry.offset + weights.data_offset +
                         start * dim * int64_t{sizeof(float)},
                     count * dim * int64_t{sizeof(float)},
                     reinterpret_cast<char*>(values.data())));
    EMBEDDING_ASSIGN_OR_RETURN(
        const WriteResult written,
        client.WriteRows(table, absl::MakeConstSpan(ids).subspan(start, count),
                         values, call));
    result.version = written.version;
  }
  return result;
}

}  // namespace

absl::StatusOr<NpyTransfer> ExportNpz(const EmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call) {
  return ExportIds(client, table, path, call);
}

absl::StatusOr<NpyTransfer> ExportNpz(const ShardedEmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call) {
  return ExportIds(client, table, path, call);
}

absl::StatusOr<NpyTransfer> ImportNpz(const EmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call) {
  return ImportIds(client, table, path, call);
}

absl::StatusOr<NpyTransfer> ImportNpz(const ShardedEmbeddingClient& client,
                                      absl::string_view table,
                                      const std::string& path,
                                      const CallOptions& call) {
  return ImportIds(client, table, path, call);
}

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
