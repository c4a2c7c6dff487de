#include "server/checkpoint/checkpoint_format.h"

#include <xxhash.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "server/core/table_spec.h"

namespace embedding::internal {
namespace {

constexpr absl::string_view kFullSuffix = ".full";
constexpr absl::string_view kDeltaSuffix = ".delta";
constexpr absl::string_view kEscapedDot = "%2E";

void PutLittleEndian(uint64_t value, int bytes, char* out) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>(value >> (8 * i));
}

uint64_t GetLittleEndian(const char* in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) {
    value |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  }
  return value;
}

// XXH3-64 of the header's version, reserved and length fields, then the
// payload: a corrupt length or version is caught like a corrupt payload.
uint64_t FrameChecksum(const char* header_fields, absl::string_view payload) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, header_fields, 16);
  XXH3_64bits_update(state, payload.data(), payload.size());
  const uint64_t checksum = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return checksum;
}

}  // namespace

std::string CheckpointName::ToString() const {
  std::string digits = absl::StrCat(sequence);
  if (digits.size() < 8) digits.insert(0, 8 - digits.size(), '0');
  return absl::StrCat(digits, delta ? kDeltaSuffix : kFullSuffix);
}

std::optional<CheckpointName> CheckpointName::Parse(absl::string_view name) {
  CheckpointName result;
  if (absl::ConsumeSuffix(&name, kFullSuffix)) {
    result.delta = false;
  } else if (absl::ConsumeSuffix(&name, kDeltaSuffix)) {
    result.delta = true;
  } else {
    return std::nullopt;
  }
  if (name.empty() || name.size() > 20) return std::nullopt;
  for (char c : name) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return std::nullopt;
    }
  }
  if (!absl::SimpleAtoi(name, &result.sequence) || result.sequence == 0) {
    return std::nullopt;
  }
  // One spelling per sequence, so that two names never mean one checkpoint.
  if (result.ToString() !=
      absl::StrCat(name, result.delta ? kDeltaSuffix : kFullSuffix)) {
    return std::nullopt;
  }
  return result;
}

std::string TableDirectoryName(absl::string_view table) {
  if (absl::StartsWith(table, ".")) {
    return absl::StrCat(kEscapedDot, table.substr(1));
  }
  return std::string(table);
}

std::optional<std::string> TableOfDirectory(absl::string_view directory) {
  std::string table;
  if (absl::StartsWith(directory, kEscapedDot)) {
    table = absl::StrCat(".", directory.substr(kEscapedDot.size()));
  } else if (absl::StartsWith(directory, ".")) {
    return std::nullopt;
  } else {
    table = std::string(directory);
  }
  // The name rules are the spec's; the rest of a spec does not matter here.
  TableSpec spec;
  spec.name = table;
  spec.num_embeddings = 1;
  spec.embedding_dim = 1;
  if (!ValidateTableSpec(spec).ok()) return std::nullopt;
  return table;
}

std::string FrameMetadata(const checkpoint_v1::CheckpointMetadata& metadata) {
  const std::string payload = metadata.SerializeAsString();
  std::string file(kMetadataHeaderBytes, '\0');
  std::memcpy(file.data(), kMetadataMagic.data(), kMetadataMagic.size());
  PutLittleEndian(
      metadata.spec().has_dynamic() ? kDynamicFormatVersion : kFormatVersion, 4,
      &file[8]);
  PutLittleEndian(0, 4, &file[12]);
  PutLittleEndian(payload.size(), 8, &file[16]);
  PutLittleEndian(FrameChecksum(&file[8], payload), 8, &file[24]);
  file += payload;
  return file;
}

absl::StatusOr<checkpoint_v1::CheckpointMetadata> UnframeMetadata(
    absl::string_view file) {
  if (file.size() < static_cast<size_t>(kMetadataHeaderBytes)) {
    return absl::DataLossError(
        absl::StrCat("truncated: ", file.size(), " bytes, less than the ",
                     kMetadataHeaderBytes, "-byte header"));
  }
  if (file.substr(0, kMetadataMagic.size()) != kMetadataMagic) {
    return absl::DataLossError(absl::StrCat(
        "wrong magic \"", absl::CHexEscape(file.substr(0, 8)),
        "\", expected \"", kMetadataMagic, "\": not a checkpoint"));
  }
  const uint64_t version = GetLittleEndian(&file[8], 4);
  if (version != kFormatVersion && version != kDynamicFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "format version ", version, "; this server reads versions ",
        kFormatVersion, " and ", kDynamicFormatVersion,
        version > kDynamicFormatVersion ? " (written by a newer one)" : ""));
  }
  const uint64_t reserved = GetLittleEndian(&file[12], 4);
  const uint64_t length = GetLittleEndian(&file[16], 8);
  const absl::string_view payload = file.substr(kMetadataHeaderBytes);
  if (length != payload.size()) {
    return absl::DataLossError(absl::StrCat(
        "header says ", length, " bytes of metadata follow, the file has ",
        payload.size(), " (truncated or corrupt)"));
  }
  const uint64_t expected = GetLittleEndian(&file[24], 8);
  const uint64_t actual = FrameChecksum(&file[8], payload);
  if (actual != expected) {
    return absl::DataLossError(absl::StrCat("checksum mismatch: XXH3 ",
                                            absl::Hex(actual), ", header says ",
                                            absl::Hex(expected)));
  }
  if (reserved != 0) {
    return absl::DataLossError(
        absl::StrCat("reserved header field is ", reserved, ", expected 0"));
  }
  checkpoint_v1::CheckpointMetadata metadata;
  if (!metadata.ParseFromArray(payload.data(),
                               static_cast<int>(payload.size()))) {
    return absl::DataLossError("metadata cannot be parsed");
  }
  return metadata;
}

int64_t NpyItemSize(NpyType type) {
  switch (type) {
    case NpyType::kInt64:
      return 8;
    case NpyType::kFloat32:
      return 4;
    case NpyType::kUint8:
      return 1;
  }
  return 0;
}

const char* NpyTypeName(NpyType type) {
  switch (type) {
    case NpyType::kInt64:
      return "int64";
    case NpyType::kFloat32:
      return "float32";
    case NpyType::kUint8:
      return "uint8";
  }
  return "";
}

std::string NpyHeader(NpyType type, const std::vector<int64_t>& shape) {
  const std::string dims = shape.size() == 1 ? absl::StrCat(shape[0], ",")
                                             : absl::StrJoin(shape, ", ");
  const char* descr = type == NpyType::kInt64     ? "<i8"
                      : type == NpyType::kFloat32 ? "<f4"
                                                  : "|u1";
  std::string dict =
      absl::StrCat("{'descr': '", descr,
                   "', 'fortran_order': False, 'shape': (", dims, "), }");
  // Magic (6) + version (2) + length (2) + dict + padding + '\n'.
  constexpr size_t kPrefix = 10;
  const size_t unpadded = kPrefix + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');
  std::string header("\x93NUMPY\x01\x00", 8);
  header.push_back(static_cast<char>(dict.size() & 0xff));
  header.push_back(static_cast<char>(dict.size() >> 8));
  return header + dict;
}

uint64_t Checksum(absl::string_view data) {
  return XXH3_64bits(data.data(), data.size());
}

}  // namespace embedding::internal
