#include "server/checkpoint/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace embedding::internal {
namespace {

absl::StatusCode CodeOf(int error) {
  switch (error) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::StatusCode::kResourceExhausted;
    case ENOENT:
    case ENOTDIR:
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kUnavailable;
  }
}

}  // namespace

absl::Status IoError(int error, absl::string_view operation,
                     absl::string_view path) {
  const char* name = strerrorname_np(error);
  return absl::Status(
      CodeOf(error),
      absl::StrCat(operation, " ", path, ": ", std::strerror(error), " (",
                   name != nullptr ? name : absl::StrCat("errno ", error),
                   ")"));
}

absl::StatusOr<File> File::Create(std::string path) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return IoError(errno, "create", path);
  return File(fd, std::move(path));
}

absl::StatusOr<File> File::OpenForReading(std::string path) {
  // Non-blocking, so that a FIFO in place of a file cannot hang the open.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return IoError(errno, "open", path);
  File file(fd, std::move(path));
  struct stat info;
  if (fstat(fd, &info) != 0) return IoError(errno, "stat", file.path_);
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("open ", file.path_, ": not a regular file"));
  }
  return file;
}

File::File(File&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

File::~File() {
  if (fd_ >= 0) close(fd_);
}

absl::Status File::Write(absl::string_view data) {
  while (!data.empty()) {
    const ssize_t written = write(fd_, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return IoError(errno, "write", path_);
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> File::Read(char* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t got = read(fd_, out + done, size - done);
    if (got < 0) {
      if (errno == EINTR) continue;
      return IoError(errno, "read", path_);
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

absl::StatusOr<int64_t> File::Size() const {
  struct stat info;
  if (fstat(fd_, &info) != 0) return IoError(errno, "stat", path_);
  return static_cast<int64_t>(info.st_size);
}

absl::Status File::SyncAndClose() {
  if (fsync(fd_) != 0) return IoError(errno, "fsync", path_);
  const int fd = std::exchange(fd_, -1);
  // After a successful fsync a close error (NFS) still means lost data.
  if (close(fd) != 0) return IoError(errno, "close", path_);
  return absl::OkStatus();
}

absl::StatusOr<bool> MakeDirectory(const std::string& path) {
  if (mkdir(path.c_str(), 0755) == 0) return true;
  const int error = errno;
  if (error == EEXIST && IsDirectory(path)) return false;
  return IoError(error == EEXIST ? ENOTDIR : error, "mkdir", path);
}

absl::Status SyncDirectory(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError(errno, "open directory", path);
  const int synced = fsync(fd);
  const int error = errno;
  close(fd);
  if (synced != 0) return IoError(error, "fsync directory", path);
  return absl::OkStatus();
}

absl::Status Rename(const std::string& from, const std::string& to) {
  if (rename(from.c_str(), to.c_str()) != 0) {
    return IoError(errno, "rename", absl::StrCat(from, " to ", to));
  }
  return absl::OkStatus();
}

absl::Status RemoveTree(const std::string& path) {
  struct stat info;
  if (lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return IoError(errno, "stat", path);
  }
  if (S_ISDIR(info.st_mode)) {
    absl::StatusOr<std::vector<std::string>> names = ListDirectory(path);
    if (!names.ok()) return names.status();
    for (const std::string& name : *names) {
      if (absl::Status removed = RemoveTree(JoinPath(path, name));
          !removed.ok()) {
        return removed;
      }
    }
    if (rmdir(path.c_str()) != 0 && errno != ENOENT) {
      return IoError(errno, "rmdir", path);
    }
    return absl::OkStatus();
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return IoError(errno, "unlink", path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDirectory(
    const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return IoError(errno, "list", path);
  std::vector<std::string> names;
  while (true) {
    errno = 0;
    const dirent* entry = readdir(dir);
    if (entry == nullptr) break;
    const absl::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  const int error = errno;
  closedir(dir);
  if (error != 0) return IoError(error, "list", path);
  return names;
}

bool IsDirectory(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     int64_t max_size) {
  absl::StatusOr<File> file = File::OpenForReading(path);
  if (!file.ok()) return file.status();
  absl::StatusOr<int64_t> size = file->Size();
  if (!size.ok()) return size.status();
  if (*size > max_size) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": ", *size, " bytes, more than the ", max_size, " expected"));
  }
  std::string data(static_cast<size_t>(*size), '\0');
  absl::StatusOr<size_t> got = file->Read(data.data(), data.size());
  if (!got.ok()) return got.status();
  data.resize(*got);
  return data;
}

std::string JoinPath(absl::string_view directory, absl::string_view name) {
  if (!directory.empty() && directory.back() == '/') {
    return absl::StrCat(directory, name);
  }
  return absl::StrCat(directory, "/", name);
}

}  // namespace embedding::internal
