// An in-process EmbeddingService that answers from canned values and records
// what it received, for testing the client side of the wire.
//
//   FakeService service;
//   service.lookup_response.mutable_embeddings()->add_shape(1);
//   FakeServer server(&service);
//   auto client = EmbeddingClient::Connect(server.address());
//
// Thread-compatible: set the canned values before the calls, read the
// recorded ones after them.
#ifndef TESTS_CLIENT_FAKE_SERVICE_H_
#define TESTS_CLIENT_FAKE_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "embedding/v1/embedding_service.grpc.pb.h"

namespace embedding::testing {

class FakeService final : public v1::EmbeddingService::Service {
 public:
  // Every call fails with this status when it is not OK.
  grpc::Status status = grpc::Status::OK;
  // Every call sleeps this long first.
  absl::Duration delay = absl::ZeroDuration();

  v1::LookupResponse lookup_response;
  v1::LookupBagResponse lookup_bag_response;
  v1::PushGradientsResponse push_response;
  std::vector<v1::ReadRowsResponse> read_rows_chunks;
  std::vector<v1::TableInfo> tables;

  // The last requests received and the metadata of the last call.
  v1::CreateTableRequest create_request;
  v1::LookupRequest lookup_request;
  v1::LookupBagRequest lookup_bag_request;
  v1::PushGradientsRequest push_request;
  v1::PushBagGradientsRequest push_bag_request;
  v1::WriteRowsRequest write_request;
  v1::ReadRowsRequest read_rows_request;
  std::multimap<std::string, std::string> metadata;

  grpc::Status CreateTable(grpc::ServerContext* context,
                           const v1::CreateTableRequest* request,
                           v1::TableInfo* response) override {
    create_request = *request;
    *response->mutable_spec() = request->spec();
    return Begin(context);
  }
  grpc::Status GetTable(grpc::ServerContext* context,
                        const v1::GetTableRequest* request,
                        v1::TableInfo* response) override {
    response->mutable_spec()->set_name(request->name());
    return Begin(context);
  }
  grpc::Status ListTables(grpc::ServerContext* context,
                          const v1::ListTablesRequest*,
                          v1::ListTablesResponse* response) override {
    for (const v1::TableInfo& info : tables) *response->add_tables() = info;
    return Begin(context);
  }
  grpc::Status DeleteTable(grpc::ServerContext* context,
                           const v1::DeleteTableRequest*,
                           v1::DeleteTableResponse*) override {
    return Begin(context);
  }
  grpc::Status SetOptimizer(grpc::ServerContext* context,
                            const v1::SetOptimizerRequest* request,
                            v1::TableInfo* response) override {
    *response->mutable_spec()->mutable_optimizer() = request->optimizer();
    return Begin(context);
  }
  grpc::Status Lookup(grpc::ServerContext* context,
                      const v1::LookupRequest* request,
                      v1::LookupResponse* response) override {
    return Answer(context, *request, &lookup_request, lookup_response,
                  response);
  }
  grpc::Status LookupBag(grpc::ServerContext* context,
                         const v1::LookupBagRequest* request,
                         v1::LookupBagResponse* response) override {
    return Answer(context, *request, &lookup_bag_request, lookup_bag_response,
                  response);
  }
  grpc::Status PushGradients(grpc::ServerContext* context,
                             const v1::PushGradientsRequest* request,
                             v1::PushGradientsResponse* response) override {
    return Answer(context, *request, &push_request, push_response, response);
  }
  grpc::Status PushBagGradients(grpc::ServerContext* context,
                                const v1::PushBagGradientsRequest* request,
                                v1::PushGradientsResponse* response) override {
    return Answer(context, *request, &push_bag_request, push_response,
                  response);
  }
  grpc::Status WriteRows(grpc::ServerContext* context,
                         const v1::WriteRowsRequest* request,
                         v1::WriteRowsResponse* response) override {
    write_request = *request;
    response->set_rows_written(request->values().shape(0));
    return Begin(context);
  }
  grpc::Status ReadRows(
      grpc::ServerContext* context, const v1::ReadRowsRequest* request,
      grpc::ServerWriter<v1::ReadRowsResponse>* writer) override {
    read_rows_request = *request;
    for (const v1::ReadRowsResponse& chunk : read_rows_chunks) {
      writer->Write(chunk);
    }
    return Begin(context);
  }

 private:
  // Records `request`, answers `canned`.
  template <typename Request, typename Response>
  grpc::Status Answer(grpc::ServerContext* context, const Request& request,
                      Request* recorded, const Response& canned,
                      Response* response) {
    *recorded = request;
    *response = canned;
    return Begin(context);
  }

  grpc::Status Begin(grpc::ServerContext* context) {
    metadata.clear();
    for (const auto& [key, value] : context->client_metadata()) {
      metadata.emplace(std::string(key.data(), key.size()),
                       std::string(value.data(), value.size()));
    }
    absl::SleepFor(delay);
    return status;
  }
};

// Serves `service` on a free loopback port until destroyed.
class FakeServer {
 public:
  explicit FakeServer(FakeService* service) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(service);
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() { server_->Shutdown(); }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace embedding::testing

#endif  // TESTS_CLIENT_FAKE_SERVICE_H_
