// EmbeddingServiceImpl: the gRPC adapter over a TableRegistry. It validates
// requests that only the wire can get wrong (sizes, dtypes, shapes), converts
// protos to engine calls, and maps statuses once (common/grpc_status.h). It
// holds no row data itself.
//
//   TableRegistry registry(registry_options);
//   EmbeddingServiceImpl service(&registry, ServiceOptions{}, checkpointer);
//   service.SetRestoring(true);   // UNAVAILABLE until the tables are back
//   builder.RegisterService(&service);
//   service.Drain(deadline);      // Shutdown: refuse calls, await running.
//
// Thread-safe. Handlers use the synchronous API (measured faster than the
// callback API on gRPC 1.51, see BENCHMARKS.md) and never block on locks held
// across I/O.
#ifndef SERVER_SERVICE_EMBEDDING_SERVICE_IMPL_H_
#define SERVER_SERVICE_EMBEDDING_SERVICE_IMPL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "embedding/v1/embedding_service.grpc.pb.h"
#include "server/core/table_registry.h"
#include "server/service/call_gate.h"
#include "server/service/checkpointer.h"

namespace embedding {

// Checked by Server::Start (server.h).
struct ServiceOptions {
  // Most indices one request may carry (RESOURCE_EXHAUSTED beyond).
  // Default: 4M. REQUIRES: > 0.
  int64_t max_indices_per_request = int64_t{1} << 22;
  // Largest message sent or received (RESOURCE_EXHAUSTED for a response
  // that would not fit).
  // Default: 64 MiB. REQUIRES: in [1 MiB, 2 GiB) (gRPC takes an int).
  int64_t max_message_bytes = int64_t{64} << 20;
};

class EmbeddingServiceImpl final : public v1::EmbeddingService::Service {
 public:
  // `registry` and `checkpointer` must outlive the service; `checkpointer`
  // is null when the server has no --checkpoint_dir.
  EmbeddingServiceImpl(TableRegistry* registry, const ServiceOptions& options,
                       Checkpointer* checkpointer = nullptr);

  // While true, every call fails with UNAVAILABLE ("restoring checkpoints"):
  // a table created or written before the restore ends would collide with
  // the restored one. Default: false.
  void SetRestoring(bool restoring) { gate_.SetRestoring(restoring); }

  // Refuses every call from now on (UNAVAILABLE), ends open LookupStreams,
  // and waits until the calls under way have ended or `deadline` passes.
  // Returns the number of calls still running.
  int64_t Drain(absl::Time deadline) { return gate_.Drain(deadline); }

  grpc::Status CreateTable(grpc::ServerContext* context,
                           const v1::CreateTableRequest* request,
                           v1::TableInfo* response) override;
  grpc::Status GetTable(grpc::ServerContext* context,
                        const v1::GetTableRequest* request,
                        v1::TableInfo* response) override;
  grpc::Status ListTables(grpc::ServerContext* context,
                          const v1::ListTablesRequest* request,
                          v1::ListTablesResponse* response) override;
  grpc::Status DeleteTable(grpc::ServerContext* context,
                           const v1::DeleteTableRequest* request,
                           v1::DeleteTableResponse* response) override;
  grpc::Status Lookup(grpc::ServerContext* context,
                      const v1::LookupRequest* request,
                      v1::LookupResponse* response) override;
  grpc::Status LookupStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::LookupResponse, v1::LookupRequest>* stream)
      override;
  grpc::Status LookupBag(grpc::ServerContext* context,
                         const v1::LookupBagRequest* request,
                         v1::LookupBagResponse* response) override;
  grpc::Status PushGradients(grpc::ServerContext* context,
                             const v1::PushGradientsRequest* request,
                             v1::PushGradientsResponse* response) override;
  grpc::Status PushBagGradients(grpc::ServerContext* context,
                                const v1::PushBagGradientsRequest* request,
                                v1::PushGradientsResponse* response) override;
  grpc::Status WriteRows(grpc::ServerContext* context,
                         const v1::WriteRowsRequest* request,
                         v1::WriteRowsResponse* response) override;
  grpc::Status ReadRows(
      grpc::ServerContext* context, const v1::ReadRowsRequest* request,
      grpc::ServerWriter<v1::ReadRowsResponse>* writer) override;
  grpc::Status SetOptimizer(grpc::ServerContext* context,
                            const v1::SetOptimizerRequest* request,
                            v1::TableInfo* response) override;
  grpc::Status SaveCheckpoint(grpc::ServerContext* context,
                              const v1::SaveCheckpointRequest* request,
                              v1::SaveCheckpointResponse* response) override;

 private:
  // Runs `handler` (returning absl::Status) if the gate lets the call in,
  // and converts its status for the wire.
  template <typename Handler>
  grpc::Status Handle(const char* method, const Handler& handler);

  void SetTableInfo(const TableStats& stats, v1::TableInfo* info) const;
  absl::Status DoGetTable(const v1::GetTableRequest& request,
                          v1::TableInfo* response);
  absl::Status DoListTables(v1::ListTablesResponse* response);
  absl::Status DoCreateTable(const v1::CreateTableRequest& request,
                             v1::TableInfo* response);
  absl::Status DoLookup(const v1::LookupRequest& request,
                        v1::LookupResponse* response);
  absl::Status DoLookupStream(
      grpc::ServerReaderWriter<v1::LookupResponse, v1::LookupRequest>* stream);
  absl::Status DoLookupBag(const v1::LookupBagRequest& request,
                           v1::LookupBagResponse* response);
  absl::Status DoPushGradients(const v1::PushGradientsRequest& request,
                               v1::PushGradientsResponse* response);
  absl::Status DoPushBagGradients(const v1::PushBagGradientsRequest& request,
                                  v1::PushGradientsResponse* response);
  absl::Status DoWriteRows(const v1::WriteRowsRequest& request,
                           v1::WriteRowsResponse* response);
  absl::Status DoReadRows(const v1::ReadRowsRequest& request,
                          grpc::ServerWriter<v1::ReadRowsResponse>* writer);
  absl::Status DoSetOptimizer(const v1::SetOptimizerRequest& request,
                              v1::TableInfo* response);
  absl::Status DoSaveCheckpoint(const v1::SaveCheckpointRequest& request,
                                v1::SaveCheckpointResponse* response);

  // RESOURCE_EXHAUSTED past max_indices_per_request; INVALID_ARGUMENT if
  // `count` is zero and `allow_empty` is false.
  absl::Status CheckIndexCount(int64_t count, bool allow_empty) const;
  // RESOURCE_EXHAUSTED when a response of `bytes` would pass the limit.
  absl::Status CheckResponseBytes(int64_t rows, int64_t row_bytes) const;

  TableRegistry* const registry_;
  const ServiceOptions options_;
  Checkpointer* const checkpointer_;
  CallGate gate_;
};

}  // namespace embedding

#endif  // SERVER_SERVICE_EMBEDDING_SERVICE_IMPL_H_
