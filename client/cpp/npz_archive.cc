#include "client/cpp/npz_archive.h"

#include <zlib.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

// Record signatures (APPNOTE.TXT 4.3).
constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kEndOfDirectory = 0x06054b50;
constexpr uint32_t kZip64EndOfDirectory = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr uint16_t kZip64ExtraId = 0x0001;
// Version 4.5: ZIP64.
constexpr uint16_t kZip64Version = 45;
// 1980-01-01 00:00, the earliest DOS date (numpy.savez writes the time of
// the save; a fixed one makes exports reproducible).
constexpr uint16_t kDosDate = (1 << 5) | 1;
constexpr uint32_t kMax32 = 0xffffffff;
constexpr uint16_t kMax16 = 0xffff;

constexpr int64_t kLocalHeaderBytes = 30;
constexpr int64_t kCentralHeaderBytes = 46;
constexpr int64_t kEndOfDirectoryBytes = 22;
constexpr int64_t kZip64EndOfDirectoryBytes = 56;
constexpr int64_t kZip64LocatorBytes = 20;
// A zip comment is at most this long: the end record is this close to the
// end of the file.
constexpr int64_t kMaxCommentBytes = 0xffff;
// A bigger central directory is not of a .npz file.
constexpr int64_t kMaxDirectoryBytes = 16 << 20;

void Put16(std::string& out, uint16_t value) {
  for (int i = 0; i < 2; ++i) out.push_back(static_cast<char>(value >> 8 * i));
}
void Put32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(value >> 8 * i));
}
void Put64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(value >> 8 * i));
}

uint64_t Get(absl::string_view bytes, size_t at, int width) {
  uint64_t value = 0;
  for (int i = width; i-- > 0;) {
    value = value << 8 | static_cast<unsigned char>(bytes[at + i]);
  }
  return value;
}

absl::Status Invalid(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// A member's header fields shared by its local and central headers: from
// "version needed" to the name's length.
void PutCommonFields(std::string& out, uint32_t crc, size_t name_bytes,
                     uint16_t extra_bytes) {
  Put16(out, kZip64Version);  // Version needed to extract.
  Put16(out, 0);              // Flags.
  Put16(out, 0);              // Method: stored.
  Put16(out, 0);              // Time.
  Put16(out, kDosDate);
  Put32(out, crc);
  Put32(out, kMax32);  // Sizes: in the ZIP64 extra field.
  Put32(out, kMax32);
  Put16(out, static_cast<uint16_t>(name_bytes));
  Put16(out, extra_bytes);
}

}  // namespace

uint32_t ZipCrc32(uint32_t crc, absl::string_view bytes) {
  // zlib takes at most UINT_MAX bytes at once.
  while (!bytes.empty()) {
    const size_t n =
        std::min<size_t>(bytes.size(), std::numeric_limits<uInt>::max());
    crc = static_cast<uint32_t>(
        crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()),
              static_cast<uInt>(n)));
    bytes.remove_prefix(n);
  }
  return crc;
}

absl::Status WriteStoredZip(
    absl::Span<const ZipMember> members,
    absl::FunctionRef<absl::Status(absl::string_view bytes)> write) {
  std::string directory;
  uint64_t offset = 0;
  for (const ZipMember& member : members) {
    uint64_t size = 0;
    uint32_t crc = 0;
    for (absl::string_view piece : member.pieces) {
      size += piece.size();
      crc = ZipCrc32(crc, piece);
    }
    std::string local;
    Put32(local, kLocalHeader);
    PutCommonFields(local, crc, member.name.size(), 20);
    local += member.name;
    Put16(local, kZip64ExtraId);
    Put16(local, 16);
    Put64(local, size);  // Uncompressed, then compressed: the same.
    Put64(local, size);
    EMBEDDING_RETURN_IF_ERROR(write(local));
    for (absl::string_view piece : member.pieces) {
      EMBEDDING_RETURN_IF_ERROR(write(piece));
    }
    Put32(directory, kCentralHeader);
    Put16(directory, kZip64Version);  // Version made by.
    PutCommonFields(directory, crc, member.name.size(), 28);
    Put16(directory, 0);       // Comment length.
    Put16(directory, 0);       // Disk number.
    Put16(directory, 0);       // Internal attributes.
    Put32(directory, 0);       // External attributes.
    Put32(directory, kMax32);  // Offset: in the extra field.
    directory += member.name;
    Put16(directory, kZip64ExtraId);
    Put16(directory, 24);
    Put64(directory, size);
    Put64(directory, size);
    Put64(directory, offset);
    offset += local.size() + size;
  }
  std::string end;
  Put32(end, kZip64EndOfDirectory);
  Put64(end, kZip64EndOfDirectoryBytes - 12);  // The rest of the record.
  Put16(end, kZip64Version);
  Put16(end, kZip64Version);
  Put32(end, 0);  // This disk, the directory's disk.
  Put32(end, 0);
  Put64(end, members.size());  // Entries on this disk, in all.
  Put64(end, members.size());
  Put64(end, directory.size());
  Put64(end, offset);
  Put32(end, kZip64Locator);
  Put32(end, 0);
  Put64(end, offset + directory.size());  // Of the ZIP64 end record.
  Put32(end, 1);                          // Disks.
  Put32(end, kEndOfDirectory);
  Put16(end, 0);
  Put16(end, 0);
  Put16(end, kMax16);  // Counts, size and offset: in the ZIP64 record.
  Put16(end, kMax16);
  Put32(end, kMax32);
  Put32(end, kMax32);
  Put16(end, 0);  // Comment length.
  EMBEDDING_RETURN_IF_ERROR(write(directory));
  return write(end);
}

absl::StatusOr<std::vector<ZipEntry>> ReadZipDirectory(ReadAt read_at,
                                                       int64_t file_size,
                                                       absl::string_view path) {
  const int64_t tail_bytes =
      std::min(file_size, kEndOfDirectoryBytes + kMaxCommentBytes);
  std::string tail;
  EMBEDDING_RETURN_IF_ERROR(read_at(file_size - tail_bytes, tail_bytes, &tail));
  int64_t end = -1;  // Of the end record, in `tail`.
  for (int64_t at = tail_bytes - kEndOfDirectoryBytes; at >= 0; --at) {
    if (Get(tail, at, 4) == kEndOfDirectory) {
      end = at;
      break;
    }
  }
  if (end < 0) {
    return Invalid(path,
                   "not a .npz file (no zip end of central directory record)");
  }
  uint64_t entries = Get(tail, end + 10, 2);
  uint64_t directory_bytes = Get(tail, end + 12, 4);
  uint64_t directory_offset = Get(tail, end + 16, 4);
  if (entries == kMax16 || directory_bytes == kMax32 ||
      directory_offset == kMax32) {
    const int64_t locator = file_size - tail_bytes + end - kZip64LocatorBytes;
    std::string bytes;
    if (locator < 0) return Invalid(path, "truncated ZIP64 end record");
    EMBEDDING_RETURN_IF_ERROR(read_at(locator, kZip64LocatorBytes, &bytes));
    const uint64_t record = Get(bytes, 8, 8);
    if (Get(bytes, 0, 4) != kZip64Locator ||
        file_size < kZip64EndOfDirectoryBytes ||
        record > static_cast<uint64_t>(file_size - kZip64EndOfDirectoryBytes)) {
      return Invalid(path, "malformed ZIP64 end of central directory locator");
    }
    EMBEDDING_RETURN_IF_ERROR(read_at(static_cast<int64_t>(record),
                                      kZip64EndOfDirectoryBytes, &bytes));
    if (Get(bytes, 0, 4) != kZip64EndOfDirectory) {
      return Invalid(path, "malformed ZIP64 end of central directory record");
    }
    entries = Get(bytes, 32, 8);
    directory_bytes = Get(bytes, 40, 8);
    directory_offset = Get(bytes, 48, 8);
  }
  if (directory_bytes > static_cast<uint64_t>(kMaxDirectoryBytes) ||
      directory_offset > static_cast<uint64_t>(file_size) ||
      directory_bytes > file_size - directory_offset) {
    return Invalid(path, absl::StrCat("zip central directory of ",
                                      directory_bytes, " bytes at ",
                                      directory_offset, " is not in the file"));
  }
  std::string directory;
  EMBEDDING_RETURN_IF_ERROR(read_at(static_cast<int64_t>(directory_offset),
                                    static_cast<int64_t>(directory_bytes),
                                    &directory));
  std::vector<ZipEntry> result;
  size_t at = 0;
  for (uint64_t k = 0; k < entries; ++k) {
    const auto malformed = [&] {
      return Invalid(path, absl::StrCat("malformed zip directory entry ", k));
    };
    if (directory.size() - at < kCentralHeaderBytes ||
        Get(directory, at, 4) != kCentralHeader) {
      return malformed();
    }
    const size_t name_bytes = Get(directory, at + 28, 2);
    const size_t extra_bytes = Get(directory, at + 30, 2);
    const size_t comment_bytes = Get(directory, at + 32, 2);
    const size_t next =
        at + kCentralHeaderBytes + name_bytes + extra_bytes + comment_bytes;
    if (next > directory.size()) return malformed();
    ZipEntry entry{
        .name = directory.substr(at + kCentralHeaderBytes, name_bytes),
        .method = static_cast<uint16_t>(Get(directory, at + 10, 2)),
        .crc32 = static_cast<uint32_t>(Get(directory, at + 16, 4))};
    uint64_t size = Get(directory, at + 20, 4);
    uint64_t uncompressed = Get(directory, at + 24, 4);
    uint64_t local = Get(directory, at + 42, 4);
    // The ZIP64 field holds, in order, the values that are 0xffffffff.
    const absl::string_view extra = absl::string_view(directory).substr(
        at + kCentralHeaderBytes + name_bytes, extra_bytes);
    for (size_t e = 0; e + 4 <= extra.size();) {
      const uint64_t id = Get(extra, e, 2);
      const size_t field_bytes = Get(extra, e + 2, 2);
      if (e + 4 + field_bytes > extra.size()) return malformed();
      if (id == kZip64ExtraId) {
        size_t f = e + 4;
        for (uint64_t* value : {&uncompressed, &size, &local}) {
          if (*value != kMax32) continue;
          if (f + 8 > e + 4 + field_bytes) return malformed();
          *value = Get(extra, f, 8);
          f += 8;
        }
      }
      e += 4 + field_bytes;
    }
    std::string header;
    if (file_size < kLocalHeaderBytes ||
        local > static_cast<uint64_t>(file_size - kLocalHeaderBytes)) {
      return malformed();
    }
    EMBEDDING_RETURN_IF_ERROR(
        read_at(static_cast<int64_t>(local), kLocalHeaderBytes, &header));
    if (Get(header, 0, 4) != kLocalHeader) return malformed();
    const uint64_t offset =
        local + kLocalHeaderBytes + Get(header, 26, 2) + Get(header, 28, 2);
    if (offset > static_cast<uint64_t>(file_size) ||
        size > file_size - offset) {
      return Invalid(path, absl::StrCat("zip member ", entry.name,
                                        " runs past the end of the file"));
    }
    entry.offset = static_cast<int64_t>(offset);
    entry.size = static_cast<int64_t>(size);
    result.push_back(std::move(entry));
    at = next;
  }
  return result;
}

}  // namespace embedding
