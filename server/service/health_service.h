// HealthService: grpc.health.v1.Health on the synchronous API.
//
// gRPC's built-in health service (EnableDefaultHealthCheckService) uses the
// callback API; in gRPC 1.51 merely registering it moves the server's polling
// onto callback threads and halved small-request throughput (BENCHMARKS.md).
// This one answers Check from the sync thread pool like every other RPC.
//
//   HealthService health;
//   health.SetServing(false);  // While checkpoints are restored.
//   builder.RegisterService(&health);
//   health.SetServing(true);
//   health.Stop();             // On shutdown: NOT_SERVING, watches end.
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
  // "embedding.v1.EmbeddingService"; other names are NOT_FOUND. No effect
  // after Stop.
  void SetServing(bool serving) ABSL_LOCKS_EXCLUDED(mu_);

  // NOT_SERVING for good; every Watch ends, so shutdown need not wait for
  // watchers.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // After Stop: waits until every Watch has sent its last status and
  // returned, or until `deadline`, so the server does not close connections
  // under a watcher's final NOT_SERVING.
  void WaitForWatchers(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status Check(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;

  // Sends the status now and again on every change until the client cancels
  // or Stop. Writes happen outside the lock, so a slow watcher never delays
  // SetServing (and so shutdown).
  grpc::Status Watch(grpc::ServerContext* context,
                     const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>*
                         writer) override;

 private:
  struct State {
    bool serving = true;
    bool stopped = false;
  };

  State state() const ABSL_LOCKS_EXCLUDED(mu_);
  // The state once its serving status differs from `from` or it is stopped,
  // or after `timeout`.
  State AwaitChange(bool from, absl::Duration timeout) const
      ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;
  State state_ ABSL_GUARDED_BY(mu_);
  int watchers_ ABSL_GUARDED_BY(mu_) = 0;  // Watch calls running.
};

}  // namespace embedding

#endif  // SERVER_SERVICE_HEALTH_SERVICE_H_
