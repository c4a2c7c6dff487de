// bare_server: the naive transport ceiling the Embedding Service is measured
// against. Same proto, same response bytes for the same Lookup, but a plain
// float array, no validation, no locking, and gRPC's synchronous API, as a
// first implementation would be written. Benchmark use only: an index out of
// range reads out of bounds.
//
//   bare_server --listen_address=127.0.0.1:0 --port_file=/tmp/bare.port
//
// CreateTable fills the rows with the service's initializer (a function of
// seed, row and column), so both servers hold the same bytes; GetTable
// answers for the table created last; every other RPC is UNIMPLEMENTED.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/process.h"
#include "embedding/v1/embedding_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/core/initializer.h"
#include "server/core/table_spec.h"

ABSL_FLAG(std::string, listen_address, "127.0.0.1:0",
          "host:port to listen on (port 0 picks a free one).");
ABSL_FLAG(std::string, port_file, "",
          "If set, the bound port is written to this file once serving.");

namespace embedding {
namespace {

namespace v1 = ::embedding::v1;

struct BareTable {
  v1::TableSpec spec;
  std::vector<float> rows;
};

class BareService final : public v1::EmbeddingService::Service {
 public:
  grpc::Status CreateTable(grpc::ServerContext* context,
                           const v1::CreateTableRequest* request,
                           v1::TableInfo* response) override {
    auto table = std::make_unique<BareTable>();
    table->spec = request->spec();
    const int64_t rows = table->spec.num_embeddings();
    const int64_t dim = table->spec.embedding_dim();
    table->rows.resize(rows * dim);
    for (int64_t row = 0; row < rows; ++row) {
      FillRow(InitializerSpec{}, table->spec.seed(), row, dim,
              &table->rows[row * dim]);
    }
    *response->mutable_spec() = table->spec;
    response->set_local_rows(rows);
    std::lock_guard<std::mutex> lock(mu_);
    // Tables are kept until exit: a Lookup may still read an older one.
    current_.store(table.get(), std::memory_order_release);
    tables_.push_back(std::move(table));
    return grpc::Status::OK;
  }

  grpc::Status GetTable(grpc::ServerContext* context,
                        const v1::GetTableRequest* request,
                        v1::TableInfo* response) override {
    const BareTable* table = current_.load(std::memory_order_acquire);
    if (table == nullptr || table->spec.name() != request->name()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such table");
    }
    *response->mutable_spec() = table->spec;
    response->set_local_rows(table->spec.num_embeddings());
    return grpc::Status::OK;
  }

  grpc::Status Lookup(grpc::ServerContext* context,
                      const v1::LookupRequest* request,
                      v1::LookupResponse* response) override {
    const BareTable* table = current_.load(std::memory_order_acquire);
    if (table == nullptr) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no table");
    }
    const int64_t dim = table->spec.embedding_dim();
    const size_t row_bytes = dim * sizeof(float);
    v1::Tensor* out = response->mutable_embeddings();
    out->set_dtype(v1::DTYPE_FLOAT32);
    out->add_shape(request->indices_size());
    out->add_shape(dim);
    std::string* data = out->mutable_data();
    data->resize(request->indices_size() * row_bytes);
    char* dst = data->data();
    for (int64_t index : request->indices()) {
      std::memcpy(dst, &table->rows[index * dim], row_bytes);
      dst += row_bytes;
    }
    return grpc::Status::OK;
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<BareTable>> tables_;
  // Published with release after the rows are filled; Lookup reads it with
  // acquire, so it sees the rows without taking mu_.
  std::atomic<const BareTable*> current_{nullptr};
};

}  // namespace
}  // namespace embedding

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "A naive gRPC embedding server, for benchmarks only.\n"
      "usage: bare_server --listen_address=127.0.0.1:0 --port_file=FILE");
  absl::ParseCommandLine(argc, argv);
  // As embedding_server does, so the anchor's allocator is the same.
  embedding::KeepLargeBuffersOnHeap();
  const embedding::ShutdownSignals signals = embedding::BlockShutdownSignals();

  embedding::BareService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen_address),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "bare_server: cannot listen on "
              << absl::GetFlag(FLAGS_listen_address) << "\n";
    return 1;
  }
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty() && !embedding::WritePortFile(port_file, port)) {
    std::cerr << "bare_server: cannot write " << port_file << "\n";
    return 1;
  }
  embedding::WaitForShutdownSignal(signals);
  server->Shutdown(std::chrono::system_clock::now());
  return 0;
}
