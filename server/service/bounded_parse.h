// Bounded request parsing: what parsing a request will allocate is
// reserved from the in-flight account before a byte of it is allocated.
// gRPC's own parsing comes before any handler code, and protobuf turns 64
// MiB of one-byte varints into 512 MiB of int64 (more while the array
// grows), so a size check after parsing comes too late.
//
//   v1::LookupRequest request;
//   EMBEDDING_ASSIGN_OR_RETURN(InflightBytes held,
//                              ParseBounded(raw, &request, &memory));
//   ... use `request` while `held` lives ...
//
// Thread-safe (no shared state besides the account).
#ifndef SERVER_SERVICE_BOUNDED_PARSE_H_
#define SERVER_SERVICE_BOUNDED_PARSE_H_

#include <grpcpp/support/byte_buffer.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "server/service/inflight_memory.h"

namespace embedding {

// An upper bound of the bytes that parsing `raw` as `type` allocates
// (arrays at their largest while they grow, strings, sub-messages, unknown
// fields), found by one pass over the wire format that allocates nothing.
// INVALID_ARGUMENT "malformed ..." when the bytes are not a valid `type`
// at the wire level.
absl::StatusOr<int64_t> ParsedBytesBound(
    const grpc::ByteBuffer& raw, const google::protobuf::Descriptor& type);

// Reserves the raw message's size plus ParsedBytesBound from `memory`, then
// parses `raw` into `message`, then gives back what parsing did not use.
// The result holds the message's bytes (and the raw buffer's, which the
// caller still holds) until it is destroyed. RESOURCE_EXHAUSTED from the
// account; INVALID_ARGUMENT "malformed <type>" when the bytes do not parse.
// `memory` null: no account (tests).
absl::StatusOr<InflightBytes> ParseBounded(const grpc::ByteBuffer& raw,
                                           google::protobuf::Message* message,
                                           InflightMemory* memory);

}  // namespace embedding

#endif  // SERVER_SERVICE_BOUNDED_PARSE_H_
