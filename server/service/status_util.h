// The one place where engine statuses become gRPC statuses.
#ifndef SERVER_SERVICE_STATUS_UTIL_H_
#define SERVER_SERVICE_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace embedding {

// Same code (the numeric values of both enums are the canonical codes), same
// message.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace embedding

#endif  // SERVER_SERVICE_STATUS_UTIL_H_
