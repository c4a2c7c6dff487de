#include "server/service/request_indices.h"

#include <bit>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace embedding {

// As FloatView's rows: the wire's little-endian bytes are the host's values.
static_assert(std::endian::native == std::endian::little,
              "indices_le is read in place: little-endian hosts only");

absl::StatusOr<absl::Span<const int64_t>> RequestIndices(
    const google::protobuf::RepeatedField<int64_t>& indices,
    absl::string_view indices_le, std::vector<int64_t>* scratch) {
  if (indices_le.empty()) {
    return absl::MakeConstSpan(indices.data(), indices.size());
  }
  if (!indices.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "set indices or indices_le, not both (got ", indices.size(),
        " indices and ", indices_le.size(), " bytes of indices_le)"));
  }
  if (indices_le.size() % sizeof(int64_t) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("indices_le has ", indices_le.size(),
                     " bytes, not a multiple of 8 (one little-endian int64 "
                     "per index)"));
  }
  const size_t count = indices_le.size() / sizeof(int64_t);
  // Protobuf's strings are heap blocks (16-aligned) or, for one index, the
  // string's own 8-aligned buffer: the copy below is a fallback.
  if (reinterpret_cast<uintptr_t>(indices_le.data()) % alignof(int64_t) == 0) {
    return absl::MakeConstSpan(
        reinterpret_cast<const int64_t*>(indices_le.data()), count);
  }
  scratch->resize(count);
  std::memcpy(scratch->data(), indices_le.data(), indices_le.size());
  return absl::MakeConstSpan(*scratch);
}

}  // namespace embedding
