// The interceptor on a real in-process server (BoundedService's raw-bytes
// methods and the health service) with a real stub: every call, message and
// status code lands on its method's counters.
#include "server/metrics/rpc_metrics_interceptor.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "embedding/v1/embedding_service.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/core/table_registry.h"
#include "server/metrics/rpc_metrics.h"
#include "server/service/bounded_service.h"
#include "server/service/embedding_service_impl.h"
#include "server/service/health_service.h"
#include "server/service/inflight_memory.h"
#include "tests/metrics/metric_testing.h"

namespace embedding {
namespace {

constexpr char kService[] = "embedding.v1.EmbeddingService";
constexpr char kHealth[] = "grpc.health.v1.Health";
constexpr int kDim = 4;

class RpcMetricsInterceptorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::vector<RpcMethod>> methods =
        MethodsOfServices({kService, kHealth});
    ASSERT_TRUE(methods.ok()) << methods.status();
    metrics_ = std::make_unique<RpcMetrics>(*std::move(methods));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&bounded_);
    builder.RegisterService(&health_);
    CountCalls(metrics_.get(), builder);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::EmbeddingService::NewStub(channel_);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  double Handled(const std::string& method, const std::string& type,
                 const std::string& code,
                 const std::string& service = kService) {
    return ValueOf(metrics_->Collect(), "grpc_server_handled_total",
                   {{"grpc_service", service},
                    {"grpc_method", method},
                    {"grpc_type", type},
                    {"grpc_code", code}});
  }

  double Count(const std::string& name, const std::string& method,
               const std::string& type) {
    return ValueOf(metrics_->Collect(), name,
                   {{"grpc_service", kService},
                    {"grpc_method", method},
                    {"grpc_type", type}});
  }

  grpc::Status CreateTable(const std::string& name, int64_t rows) {
    v1::CreateTableRequest request;
    request.mutable_spec()->set_name(name);
    request.mutable_spec()->set_num_embeddings(rows);
    request.mutable_spec()->set_embedding_dim(kDim);
    v1::TableInfo info;
    grpc::ClientContext context;
    return stub_->CreateTable(&context, request, &info);
  }

  v1::LookupRequest LookupOf(std::vector<int64_t> indices) {
    v1::LookupRequest request;
    request.set_table("t");
    request.mutable_indices()->Add(indices.begin(), indices.end());
    return request;
  }

  TableRegistry registry_{RegistryOptions{}};
  InflightMemory memory_{int64_t{1} << 30};
  EmbeddingServiceImpl impl_{&registry_, ServiceOptions{}, nullptr, &memory_};
  BoundedService bounded_{&impl_, &memory_};
  HealthService health_;
  std::unique_ptr<RpcMetrics> metrics_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EmbeddingService::Stub> stub_;
};

TEST_F(RpcMetricsInterceptorTest, UnaryCallsCountByStatusCode) {
  ASSERT_TRUE(CreateTable("t", 10).ok());
  EXPECT_EQ(CreateTable("t", 10).error_code(), grpc::ALREADY_EXISTS);
  EXPECT_EQ(CreateTable("", 10).error_code(), grpc::INVALID_ARGUMENT);
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    v1::LookupResponse response;
    ASSERT_TRUE(stub_->Lookup(&context, LookupOf({1, 2}), &response).ok());
  }
  {
    grpc::ClientContext context;
    v1::LookupResponse response;
    EXPECT_EQ(stub_->Lookup(&context, LookupOf({10}), &response).error_code(),
              grpc::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext context;
    v1::GetTableRequest request;
    request.set_name("missing");
    v1::TableInfo info;
    EXPECT_EQ(stub_->GetTable(&context, request, &info).error_code(),
              grpc::NOT_FOUND);
  }

  EXPECT_EQ(Handled("CreateTable", "unary", "OK"), 1);
  EXPECT_EQ(Handled("CreateTable", "unary", "ALREADY_EXISTS"), 1);
  EXPECT_EQ(Handled("CreateTable", "unary", "INVALID_ARGUMENT"), 1);
  EXPECT_EQ(Handled("Lookup", "unary", "OK"), 3);
  EXPECT_EQ(Handled("Lookup", "unary", "INVALID_ARGUMENT"), 1);
  EXPECT_EQ(Handled("GetTable", "unary", "NOT_FOUND"), 1);
  EXPECT_EQ(Count("grpc_server_started_total", "Lookup", "unary"), 4);
  EXPECT_EQ(Count("grpc_server_msg_received_total", "Lookup", "unary"), 4);
  // A failed unary call sends no message.
  EXPECT_EQ(Count("grpc_server_msg_sent_total", "Lookup", "unary"), 3);
  const auto seconds =
      FindSample(metrics_->Collect(), "grpc_server_handling_seconds",
                 {{"grpc_service", kService},
                  {"grpc_method", "Lookup"},
                  {"grpc_type", "unary"}});
  ASSERT_TRUE(seconds.has_value());
  EXPECT_EQ(seconds->histogram.sample_count, 4u);
  EXPECT_GT(seconds->histogram.sample_sum, 0);
}

TEST_F(RpcMetricsInterceptorTest, StreamsCountEachMessage) {
  ASSERT_TRUE(CreateTable("t", 10).ok());
  {
    grpc::ClientContext context;
    auto stream = stub_->LookupStream(&context);
    v1::LookupResponse response;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(stream->Write(LookupOf({i})));
      ASSERT_TRUE(stream->Read(&response));
    }
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
  }
  {
    grpc::ClientContext context;
    v1::ReadRowsRequest request;
    request.set_table("t");
    request.set_rows_per_message(3);
    auto reader = stub_->ReadRows(&context, request);
    v1::ReadRowsResponse chunk;
    int chunks = 0;
    while (reader->Read(&chunk)) ++chunks;
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(chunks, 4);  // 10 rows, 3 per message.
  }
  EXPECT_EQ(
      Count("grpc_server_msg_received_total", "LookupStream", "bidi_stream"),
      5);
  EXPECT_EQ(Count("grpc_server_msg_sent_total", "LookupStream", "bidi_stream"),
            5);
  EXPECT_EQ(Handled("LookupStream", "bidi_stream", "OK"), 1);
  EXPECT_EQ(
      Count("grpc_server_msg_received_total", "ReadRows", "server_stream"), 1);
  EXPECT_EQ(Count("grpc_server_msg_sent_total", "ReadRows", "server_stream"),
            4);
  EXPECT_EQ(Handled("ReadRows", "server_stream", "OK"), 1);
}

TEST_F(RpcMetricsInterceptorTest, RefusedCallsCountWithTheirCode) {
  impl_.SetRestoring(true);
  grpc::ClientContext context;
  v1::ListTablesRequest request;
  v1::ListTablesResponse response;
  EXPECT_EQ(stub_->ListTables(&context, request, &response).error_code(),
            grpc::UNAVAILABLE);
  EXPECT_EQ(Handled("ListTables", "unary", "UNAVAILABLE"), 1);
}

TEST_F(RpcMetricsInterceptorTest, HealthChecksAreCounted) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(health->Check(&context, request, &response).ok());
  EXPECT_EQ(Handled("Check", "unary", "OK", kHealth), 1);
}

}  // namespace
}  // namespace embedding
