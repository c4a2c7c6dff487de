// The one place where absl::Status and grpc::Status convert, both ways: the
// server replies with ToGrpcStatus, clients return FromGrpcStatus. Codes keep
// their numeric value (both enums are the canonical codes); messages pass
// unchanged.
//
//   return ToGrpcStatus(DoLookup(request, response));
//   absl::Status status = FromGrpcStatus(stub->Lookup(&context, r, &out));
//
// Thread-safe: pure functions.
#ifndef COMMON_GRPC_STATUS_H_
#define COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace embedding {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace embedding

#endif  // COMMON_GRPC_STATUS_H_
