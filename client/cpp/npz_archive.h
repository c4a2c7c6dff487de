// The zip container of a NumPy .npz file, both ways, stored (not
// compressed) as numpy.savez writes it: an export writes its members (.npy
// files) through a sink; an import finds them in a file and checks them.
// Always ZIP64 (sizes and offsets in the extra fields), so members past
// 4 GiB need no other path; Python's zipfile and numpy.load read it.
// Member contents are checked against their CRC-32 (zlib's) when read.
//
//   ZipMember ids{"ids.npy", {header, bytes}};
//   EMBEDDING_RETURN_IF_ERROR(WriteStoredZip({ids, weights}, write));
//
//   absl::StatusOr<std::vector<ZipEntry>> entries =
//       ReadZipDirectory(read_at, file_size, "a.npz");
//
// Thread-safe (pure functions).
#ifndef CLIENT_CPP_NPZ_ARCHIVE_H_
#define CLIENT_CPP_NPZ_ARCHIVE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace embedding {

// A member to write: its name and its contents, the pieces concatenated.
struct ZipMember {
  std::string name;
  std::vector<absl::string_view> pieces;
};

// Writes `members` as a stored ZIP64 archive, in order, through `write`
// (whose first error is returned as it is).
absl::Status WriteStoredZip(
    absl::Span<const ZipMember> members,
    absl::FunctionRef<absl::Status(absl::string_view bytes)> write);

// A member of an archive read: where its contents are.
struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0: stored.
  uint32_t crc32 = 0;
  int64_t offset = 0;  // Of its contents in the file.
  int64_t size = 0;    // Of its contents as stored.
};

// Reads `bytes` bytes of the file at `offset` into `out`; an error (the
// OS's, or INVALID_ARGUMENT past the end) is returned as it is.
using ReadAt = absl::FunctionRef<absl::Status(int64_t offset, int64_t bytes,
                                              std::string* out)>;

// The members of the zip file of `file_size` bytes that `read_at` reads.
// INVALID_ARGUMENT naming `path` when it is not a zip file (no end of
// central directory record), or its directory or a member's local header
// is malformed or outside the file.
absl::StatusOr<std::vector<ZipEntry>> ReadZipDirectory(ReadAt read_at,
                                                       int64_t file_size,
                                                       absl::string_view path);

// CRC-32 of `bytes` continuing `crc` (0 to start), as zip stores it.
uint32_t ZipCrc32(uint32_t crc, absl::string_view bytes);

}  // namespace embedding

#endif  // CLIENT_CPP_NPZ_ARCHIVE_H_
