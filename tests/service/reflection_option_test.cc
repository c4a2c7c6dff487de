#include "server/security/reflection_option.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/service/health_service.h"

namespace embedding {
namespace {

// The status of a list_services request (ServerReflectionRequest field 7,
// "") to a real server built with ReflectionOption(enabled). The method is
// a bidi stream; one request and a half-close look the same as a unary
// call on the wire, and the server answers it with one message.
grpc::StatusCode ListServicesCode(bool enabled) {
  // A server needs some synchronous method besides reflection's.
  HealthService health;
  grpc::ServerBuilder builder;
  builder.RegisterService(&health);
  builder.SetOption(ReflectionOption(enabled));
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  EXPECT_NE(server, nullptr);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  const grpc::internal::RpcMethod method(
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      grpc::internal::RpcMethod::NORMAL_RPC);
  const std::string request("\x3a\x00", 2);
  grpc::Slice slice(request);
  grpc::ByteBuffer sent(&slice, 1);
  grpc::ByteBuffer received;
  grpc::ClientContext context;
  const grpc::Status status =
      grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
          channel.get(), method, &context, sent, &received);
  health.Stop();
  server->Shutdown();
  return status.error_code();
}

TEST(ReflectionOptionTest, OffRemovesTheLinkedInReflectionService) {
  EXPECT_EQ(ListServicesCode(false), grpc::StatusCode::UNIMPLEMENTED);
}

TEST(ReflectionOptionTest, OnServesReflection) {
  EXPECT_EQ(ListServicesCode(true), grpc::StatusCode::OK);
  // Registering it for the process does not turn it on where it is off.
  EXPECT_EQ(ListServicesCode(false), grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace embedding
