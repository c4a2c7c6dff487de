// The row ids of a request, from either of its two wire forms: `indices`
// (repeated int64, a varint each) or `indices_le` (bytes, raw little-endian
// int64, 8 per index: what the Python client sends, since it needs no
// conversion index by index on either side).
//
//   std::vector<int64_t> scratch;
//   EMBEDDING_ASSIGN_OR_RETURN(
//       const absl::Span<const int64_t> indices,
//       RequestIndices(request.indices(), request.indices_le(), &scratch));
//
// Thread-compatible (no state).
#ifndef SERVER_SERVICE_REQUEST_INDICES_H_
#define SERVER_SERVICE_REQUEST_INDICES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/repeated_field.h"

namespace embedding {

// The indices the request carries: a view of `indices`, or of `indices_le`
// itself when its bytes are 8-aligned (the usual case: no copy), else of
// `scratch`, filled with a copy. Valid while the request and `scratch`
// live. INVALID_ARGUMENT when both forms are set, or when `indices_le` is
// not a multiple of 8 bytes. The caller checks the count against its limits.
absl::StatusOr<absl::Span<const int64_t>> RequestIndices(
    const google::protobuf::RepeatedField<int64_t>& indices,
    absl::string_view indices_le, std::vector<int64_t>* scratch);

}  // namespace embedding

#endif  // SERVER_SERVICE_REQUEST_INDICES_H_
