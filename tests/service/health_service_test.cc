// grpc.health.v1.Health as the server drives it: NOT_SERVING while
// checkpoints are restored, SERVING after, and for good once stopped; a
// watch begun during the restore sees it end, and every watch ends on Stop.
#include "server/service/health_service.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

class HealthServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&health_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = Health::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override { server_->Shutdown(); }

  HealthCheckResponse::ServingStatus Check() {
    grpc::ClientContext context;
    HealthCheckResponse response;
    EXPECT_TRUE(stub_->Check(&context, HealthCheckRequest(), &response).ok());
    return response.status();
  }

  HealthService health_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(HealthServiceTest, WatchSeesTheRestoreEndAndEndsOnStop) {
  health_.SetServing(false);
  EXPECT_EQ(Check(), HealthCheckResponse::NOT_SERVING);
  grpc::ClientContext context;
  auto watch = stub_->Watch(&context, HealthCheckRequest());
  HealthCheckResponse response;
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);

  health_.SetServing(true);
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check(), HealthCheckResponse::SERVING);

  health_.Stop();
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(watch->Read(&response));  // The watch is over.
  EXPECT_TRUE(watch->Finish().ok());
}

TEST_F(HealthServiceTest, StoppedStaysNotServing) {
  health_.Stop();
  health_.SetServing(true);
  EXPECT_EQ(Check(), HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthServiceTest, UnknownServiceIsNotFound) {
  grpc::ClientContext context;
  HealthCheckRequest request;
  request.set_service("other.Service");
  HealthCheckResponse response;
  const grpc::Status status = stub_->Check(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "unknown service \"other.Service\"");
}

}  // namespace
}  // namespace embedding
