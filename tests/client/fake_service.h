// An in-process EmbeddingService that answers from canned values and records
// what it received, for testing the client side of the wire.
//
//   FakeService service;
//   service.lookup_response.mutable_embeddings()->add_shape(1);
//   service.fail_next["Lookup"] = {Unavailable(), Unavailable()};
//   FakeServer server(&service);
//   auto client = EmbeddingClient::Connect(server.address());
//
// Thread-compatible: set the canned values before the calls, read the
// recorded ones after them (calls are made one at a time).
#ifndef TESTS_CLIENT_FAKE_SERVICE_H_
#define TESTS_CLIENT_FAKE_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "embedding/v1/embedding_service.grpc.pb.h"

namespace embedding::testing {

inline grpc::Status Unavailable() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake: not serving yet");
}

class FakeService final : public v1::EmbeddingService::Service {
 public:
  // Every call fails with this status when it is not OK.
  grpc::Status status = grpc::Status::OK;
  // Per method name ("Lookup"): the answers of its next calls, before
  // `status` applies again.
  std::map<std::string, std::deque<grpc::Status>> fail_next;
  // Every call sleeps this long first.
  absl::Duration delay = absl::ZeroDuration();
  // The embedding_dim of the table GetTable describes.
  int64_t embedding_dim = 2;

  v1::LookupResponse lookup_response;
  v1::LookupBagResponse lookup_bag_response;
  v1::PushGradientsResponse push_response;
  std::vector<v1::ReadRowsResponse> read_rows_chunks;
  std::vector<v1::TableInfo> tables;
  v1::SaveCheckpointResponse save_checkpoint_response;

  // Calls received per method name, failed ones included.
  std::map<std::string, int> calls;
  // Every request received, in order, and the metadata of the last call.
  std::vector<v1::CreateTableRequest> create_requests;
  std::vector<v1::LookupRequest> lookup_requests;
  std::vector<v1::LookupBagRequest> lookup_bag_requests;
  std::vector<v1::PushGradientsRequest> push_requests;
  std::vector<v1::PushBagGradientsRequest> push_bag_requests;
  std::vector<v1::WriteRowsRequest> write_requests;
  std::vector<v1::ReadRowsRequest> read_rows_requests;
  std::vector<v1::SaveCheckpointRequest> save_checkpoint_requests;
  std::multimap<std::string, std::string> metadata;

  grpc::Status CreateTable(grpc::ServerContext* context,
                           const v1::CreateTableRequest* request,
                           v1::TableInfo* response) override {
    *response->mutable_spec() = request->spec();
    return Record(context, "CreateTable", *request, &create_requests);
  }
  grpc::Status GetTable(grpc::ServerContext* context,
                        const v1::GetTableRequest* request,
                        v1::TableInfo* response) override {
    response->mutable_spec()->set_name(request->name());
    response->mutable_spec()->set_embedding_dim(embedding_dim);
    return Begin(context, "GetTable");
  }
  grpc::Status ListTables(grpc::ServerContext* context,
                          const v1::ListTablesRequest*,
                          v1::ListTablesResponse* response) override {
    for (const v1::TableInfo& info : tables) *response->add_tables() = info;
    return Begin(context, "ListTables");
  }
  grpc::Status DeleteTable(grpc::ServerContext* context,
                           const v1::DeleteTableRequest*,
                           v1::DeleteTableResponse*) override {
    return Begin(context, "DeleteTable");
  }
  grpc::Status SetOptimizer(grpc::ServerContext* context,
                            const v1::SetOptimizerRequest* request,
                            v1::TableInfo* response) override {
    *response->mutable_spec()->mutable_optimizer() = request->optimizer();
    return Begin(context, "SetOptimizer");
  }
  grpc::Status Lookup(grpc::ServerContext* context,
                      const v1::LookupRequest* request,
                      v1::LookupResponse* response) override {
    *response = lookup_response;
    return Record(context, "Lookup", *request, &lookup_requests);
  }
  grpc::Status LookupBag(grpc::ServerContext* context,
                         const v1::LookupBagRequest* request,
                         v1::LookupBagResponse* response) override {
    *response = lookup_bag_response;
    return Record(context, "LookupBag", *request, &lookup_bag_requests);
  }
  grpc::Status PushGradients(grpc::ServerContext* context,
                             const v1::PushGradientsRequest* request,
                             v1::PushGradientsResponse* response) override {
    *response = push_response;
    return Record(context, "PushGradients", *request, &push_requests);
  }
  grpc::Status PushBagGradients(grpc::ServerContext* context,
                                const v1::PushBagGradientsRequest* request,
                                v1::PushGradientsResponse* response) override {
    *response = push_response;
    return Record(context, "PushBagGradients", *request, &push_bag_requests);
  }
  grpc::Status WriteRows(grpc::ServerContext* context,
                         const v1::WriteRowsRequest* request,
                         v1::WriteRowsResponse* response) override {
    response->set_rows_written(request->values().shape(0));
    response->set_version(static_cast<int64_t>(write_requests.size()) + 1);
    return Record(context, "WriteRows", *request, &write_requests);
  }
  grpc::Status ReadRows(
      grpc::ServerContext* context, const v1::ReadRowsRequest* request,
      grpc::ServerWriter<v1::ReadRowsResponse>* writer) override {
    // A failure comes after the replies, as a stream that breaks midway.
    for (const v1::ReadRowsResponse& chunk : read_rows_chunks) {
      writer->Write(chunk);
    }
    return Record(context, "ReadRows", *request, &read_rows_requests);
  }

  grpc::Status SaveCheckpoint(grpc::ServerContext* context,
                              const v1::SaveCheckpointRequest* request,
                              v1::SaveCheckpointResponse* response) override {
    *response = save_checkpoint_response;
    return Record(context, "SaveCheckpoint", *request,
                  &save_checkpoint_requests);
  }

 private:
  template <typename Request>
  grpc::Status Record(grpc::ServerContext* context, const char* method,
                      const Request& request, std::vector<Request>* recorded) {
    recorded->push_back(request);
    return Begin(context, method);
  }

  grpc::Status Begin(grpc::ServerContext* context, const char* method) {
    ++calls[method];
    metadata.clear();
    for (const auto& [key, value] : context->client_metadata()) {
      metadata.emplace(std::string(key.data(), key.size()),
                       std::string(value.data(), value.size()));
    }
    absl::SleepFor(delay);
    std::deque<grpc::Status>& failures = fail_next[method];
    if (failures.empty()) return status;
    grpc::Status failure = failures.front();
    failures.pop_front();
    return failure;
  }
};

// Serves `service` on a free loopback port until destroyed, in plaintext
// or with `credentials` (TLS).
class FakeServer {
 public:
  explicit FakeServer(FakeService* service,
                      std::shared_ptr<grpc::ServerCredentials> credentials =
                          grpc::InsecureServerCredentials()) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", std::move(credentials), &port_);
    builder.RegisterService(service);
    builder.SetMaxReceiveMessageSize(-1);
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
