// HealthService: grpc.health.v1.Health on the synchronous API.
//
// gRPC's built-in health service (EnableDefaultHealthCheckService) uses the
// callback API; in gRPC 1.51 merely registering it moves the server's polling
// onto callback threads and halved small-request throughput (BENCHMARKS.md).
// This one answers Check from the sync thread pool like every other RPC.
//
//   HealthService health;
//   builder.RegisterService(&health);
//   health.SetServing(false);  // On shutdown: Check and Watch report it.
//
// Thread-safe.
#ifndef SERVER_SERVICE_HEALTH_SERVICE_H_
#define SERVER_SERVICE_HEALTH_SERVICE_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace embedding {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  // SERVING or NOT_SERVING for the whole server (service name "") and for
  // "embedding.v1.EmbeddingService"; other names are NOT_FOUND.
  void SetServing(bool serving) ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;

  // Sends the status now and again on every change until the client cancels
  // or the server stops serving. Writes happen outside the lock, so a slow
  // watcher never delays SetServing (and so shutdown).
  grpc::Status Watch(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>*
                         writer) override;

 private:
  bool serving() const ABSL_LOCKS_EXCLUDED(mu_);
  // The status once it differs from `from`, or after `timeout`.
  bool AwaitChange(bool from, absl::Duration timeout) const
      ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;
  bool serving_ ABSL_GUARDED_BY(mu_) = true;
};

}  // namespace embedding

#endif  // SERVER_SERVICE_HEALTH_SERVICE_H_
