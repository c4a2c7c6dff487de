// POSIX file operations for checkpoints. Each failure is a status naming the
// operation, the path and the OS error, with the code SaveCheckpoint
// promises (see IoError).
//
//   absl::StatusOr<File> file = File::Create(path);
//   absl::Status written = file->Write(bytes);
//   absl::Status synced = file->SyncAndClose();
//
// Thread-compatible.
#ifndef SERVER_CHECKPOINT_FILE_IO_H_
#define SERVER_CHECKPOINT_FILE_IO_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace embedding::internal {

// "<operation> <path>: <strerror> (<ENAME>)" with RESOURCE_EXHAUSTED for a
// full disk or quota (ENOSPC, EDQUOT, EFBIG), FAILED_PRECONDITION for a path
// that is missing or not writable (ENOENT, ENOTDIR, EACCES, EPERM, EROFS),
// UNAVAILABLE for any other error (EIO, ...).
absl::Status IoError(int error, absl::string_view operation,
                     absl::string_view path);

// An open file descriptor; closed (without syncing) when destroyed.
class File {
 public:
  // A new file for writing; fails if it exists.
  static absl::StatusOr<File> Create(std::string path);
  // An existing regular file (FAILED_PRECONDITION for anything else).
  static absl::StatusOr<File> OpenForReading(std::string path);

  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  ~File();

  const std::string& path() const { return path_; }

  // Writes all of `data` (retrying short writes and EINTR).
  absl::Status Write(absl::string_view data);
  // Reads up to `size` bytes, fewer only at the end of the file.
  absl::StatusOr<size_t> Read(char* out, size_t size);
  absl::StatusOr<int64_t> Size() const;
  // fsync, then close: the data is on disk when this succeeds.
  absl::Status SyncAndClose();

 private:
  File(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  int fd_ = -1;
  std::string path_;
};

// mkdir with mode 0755. Returns whether it created it: false when `path`
// already is a directory.
absl::StatusOr<bool> MakeDirectory(const std::string& path);
// fsync of a directory, making the entries created or renamed in it durable.
absl::Status SyncDirectory(const std::string& path);
absl::Status Rename(const std::string& from, const std::string& to);
// Removes `path` and, if it is a directory, everything in it (symbolic links
// are removed, not followed). A missing path is not an error.
absl::Status RemoveTree(const std::string& path);
// The names in a directory, without "." and "..", unsorted.
absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& path);
bool IsDirectory(const std::string& path);
// Reads a whole file of at most `max_size` bytes; FAILED_PRECONDITION names
// a larger one.
absl::StatusOr<std::string> ReadFile(const std::string& path, int64_t max_size);

std::string JoinPath(absl::string_view directory, absl::string_view name);

}  // namespace embedding::internal

#endif  // SERVER_CHECKPOINT_FILE_IO_H_
