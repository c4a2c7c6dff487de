#include "common/grpc_status.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

TEST(GrpcStatusTest, OkMapsToOkBothWays) {
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(GrpcStatusTest, EveryCodeAndItsMessageRoundTrip) {
  // The canonical codes run from CANCELLED (1) to UNAUTHENTICATED (16).
  for (int code = 1; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code),
                              absl::StrCat("failure ", code));
    const grpc::Status wire = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(wire.error_code()), code);
    EXPECT_EQ(wire.error_message(), status.message());
    EXPECT_EQ(FromGrpcStatus(wire), status);
  }
}

TEST(GrpcStatusTest, NamedCodesMatch) {
  EXPECT_EQ(FromGrpcStatus(
                grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too big")),
            absl::ResourceExhaustedError("too big"));
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError("x")).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace embedding
