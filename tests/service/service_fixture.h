// What the service tests share: a real server on a loopback port with a
// stub, the state of a table a rejected request must leave unchanged, and
// the check of a refusal's code and message.
//
//   class MyTest : public testing::ServiceFixture {
//     void SetUp() override {
//       ServerOptions options = LoopbackOptions();
//       ...
//       ASSERT_NO_FATAL_FAILURE(StartServer(options));
//     }
//   };
#ifndef TESTS_SERVICE_SERVICE_FIXTURE_H_
#define TESTS_SERVICE_SERVICE_FIXTURE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "embedding/v1/embedding_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/server.h"

namespace embedding::testing {

// A table's rows (all of them, as bytes), version and optimizer step.
struct TableState {
  std::string rows;
  int64_t version = 0;
  int64_t step = 0;
  bool operator==(const TableState&) const = default;
};

class ServiceFixture : public ::testing::Test {
 protected:
  // Options for a server on a free loopback port with a 1 MiB memory budget.
  static ServerOptions LoopbackOptions() {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.registry.memory_budget_bytes = 1 << 20;
    return options;
  }

  void StartServer(const ServerOptions& options) {
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::EmbeddingService::NewStub(channel_);
  }

  TableState ReadState(const std::string& table) {
    TableState state;
    v1::ReadRowsRequest request;
    request.set_table(table);
    grpc::ClientContext context;
    auto reader = stub_->ReadRows(&context, request);
    v1::ReadRowsResponse chunk;
    while (reader->Read(&chunk)) state.rows += chunk.values().data();
    EXPECT_TRUE(reader->Finish().ok());
    v1::GetTableRequest get;
    get.set_name(table);
    v1::TableInfo info;
    grpc::ClientContext info_context;
    EXPECT_TRUE(stub_->GetTable(&info_context, get, &info).ok());
    state.version = info.version();
    state.step = info.step();
    return state;
  }

  // Expects `status` to have `code` and a message containing `text`.
  static void ExpectError(const grpc::Status& status, grpc::StatusCode code,
                          const std::string& text) {
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    EXPECT_THAT(status.error_message(), ::testing::HasSubstr(text));
  }

  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EmbeddingService::Stub> stub_;
};

}  // namespace embedding::testing

#endif  // TESTS_SERVICE_SERVICE_FIXTURE_H_
