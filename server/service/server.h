// Server: an EmbeddingService listening on an address, with the standard
// health service (always open) and, on request, reflection beside it; its
// transport security (TLS, mutual TLS, or plaintext on loopback) and token
// roles (security/); optionally a Prometheus endpoint (metrics/); and the
// life of its checkpoints:
// with a checkpoint_dir it restores the tables found there before it serves,
// saves them every checkpoint_interval_s and once more on Shutdown. Its
// factory checks the options, so main.cc only maps flags to them.
//
//   absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
//   if (!server.ok()) return Exit(server.status());
//   Announce((*server)->port());  // Listening; maybe still restoring.
//   (*server)->ReloadAuthTokens();          // SIGHUP: re-read the tokens.
//   (*server)->Shutdown(absl::Seconds(10));  // Health goes NOT_SERVING first.
//
// Thread-safe.
#ifndef SERVER_SERVICE_SERVER_H_
#define SERVER_SERVICE_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/table_registry.h"
#include "server/metrics/metrics_endpoint.h"
#include "server/metrics/rpc_metrics.h"
#include "server/security/authenticator.h"
#include "server/security/transport_security.h"
#include "server/service/bounded_service.h"
#include "server/service/checkpointer.h"
#include "server/service/embedding_service_impl.h"
#include "server/service/health_service.h"
#include "server/service/inflight_memory.h"

namespace embedding {

// Each field's flag in main.cc has the field's name; Server::Start names the
// flag when it rejects a value.
struct ServerOptions {
  // host:port to listen on; port 0 picks a free port.
  // Default: "127.0.0.1:50051" (loopback only).
  std::string listen_address = "127.0.0.1:50051";
  // TLS / mutual TLS; off: plaintext, which needs a loopback
  // listen_address or allow_insecure. REQUIRES as documented there.
  TlsOptions tls;
  // Serve plaintext on a non-loopback address (logged as a warning).
  // Default: false.
  bool allow_insecure = false;
  // The token file (security/auth_tokens.h); empty: no authentication
  // (logged as a warning off loopback). Default: "". REQUIRES: empty or a
  // valid token file.
  std::string auth_tokens_file;
  // Register gRPC server reflection (it lists the services and messages to
  // anyone who can connect). Default: false.
  bool enable_reflection = false;
  // HOST:PORT of the Prometheus endpoint (plain HTTP, GET /metrics; port 0
  // picks a free one); empty: no metrics, and no per-call counting.
  // Default: "". REQUIRES: empty or HOST:PORT, HOST an IPv4 address or a
  // host name.
  std::string metrics_address;
  // Most threads running calls (a gRPC ResourceQuota). An open stream
  // holds one for its life, so there must be more than
  // service.max_open_streams: unary calls keep the rest. A call that finds
  // none free gets RESOURCE_EXHAUSTED from gRPC at once.
  // Default: 64. REQUIRES: > service.max_open_streams.
  int worker_threads = 64;
  // Most bytes the calls in flight may hold outside the tables: parsed
  // requests, responses, stream backlogs, push scratch (InflightMemory).
  // Default: 1 GiB (main.cc: 1/8 of physical memory). REQUIRES: > 0.
  int64_t max_inflight_bytes = int64_t{1} << 30;
  // Most calls open at once on one client connection (HTTP/2
  // MAX_CONCURRENT_STREAMS); more wait in the client.
  // Default: 128. REQUIRES: >= 1.
  int max_streams_per_connection = 128;
  // Memory budget and this server's shard; REQUIRES as documented there.
  RegistryOptions registry;
  // Request and message limits; REQUIRES as documented there.
  ServiceOptions service;
  // Where checkpoints go and where the tables are restored from at start;
  // empty: no checkpoints (SaveCheckpoint is FAILED_PRECONDITION).
  // Default: "". REQUIRES: empty or an existing directory.
  std::string checkpoint_dir;
  // Seconds between periodic incremental saves of every table; 0: none.
  // Default: 0. REQUIRES: finite, >= 0; > 0 only with checkpoint_dir.
  double checkpoint_interval_s = 0;
  // Complete full checkpoints kept per table. Default: 2. REQUIRES: >= 1.
  int checkpoint_keep = 2;
  // Incremental checkpoints between two full ones. Default: 8.
  // REQUIRES: >= 0 (0: every checkpoint is full).
  int full_checkpoint_every = 8;
};

class Server {
 public:
  // Checks `options`, then starts listening. With a checkpoint_dir, health
  // is NOT_SERVING and every EmbeddingService call UNAVAILABLE until a
  // background thread has restored the tables (see WaitUntilServing).
  // INVALID_ARGUMENT naming the flag of the first option outside its
  // REQUIRES; UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options);

  // Shuts down at once (in-flight calls are cancelled, no final checkpoint)
  // unless Shutdown was called.
  ~Server();

  // The bound port (useful with port 0).
  int port() const { return port_; }
  // The bound port of the metrics endpoint; 0 without metrics_address.
  int metrics_port() const {
    return metrics_endpoint_ != nullptr ? metrics_endpoint_->port() : 0;
  }

  // Who is let in; its failure counters are for metrics.
  const Authenticator& authenticator() const { return *authenticator_; }

  // Re-reads the token file (SIGHUP). On error the old tokens stay and the
  // error is returned (INVALID_ARGUMENT naming the file and line).
  absl::Status ReloadAuthTokens() { return authenticator_->Reload(); }

  // Blocks until the restore is over and health reports SERVING (at once
  // without a checkpoint_dir), or `timeout` passes, or Shutdown begins.
  // Returns whether the server is serving.
  bool WaitUntilServing(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // Marks health NOT_SERVING, stops accepting calls and lets in-flight calls
  // finish, then, with a checkpoint_dir, saves every table in full. All of
  // it gets `grace`: when it runs out, calls still running are cancelled
  // and saves still running stop cleanly (their checkpoint is not made
  // visible; the previous one stays) and are logged as abandoned. During
  // the restore it waits for the restore to end (the manager cannot cancel
  // one) and saves nothing, since nothing changed. A second call does
  // nothing.
  void Shutdown(absl::Duration grace) ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until Shutdown completes.
  void Wait();

 private:
  Server(const ServerOptions& options, std::unique_ptr<TableRegistry> registry,
         std::unique_ptr<Checkpointer> checkpointer,
         std::unique_ptr<Authenticator> authenticator);

  // The checkpoint thread: restores the tables, then marks the server
  // serving, then saves every table every `interval` (never when zero)
  // until Shutdown.
  void RunCheckpoints(absl::Duration interval) ABSL_LOCKS_EXCLUDED(mu_);
  bool RestoredOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return restored_ || stopping_;
  }
  // Shutdown's work; `final_checkpoint` is false from the destructor.
  void Stop(absl::Duration grace, bool final_checkpoint)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Starts the metrics endpoint on options.metrics_address with every
  // collectable, and has `builder` count each call in rpc_metrics_.
  // UNAVAILABLE naming --metrics_address when it cannot listen.
  absl::Status StartMetrics(const ServerOptions& options,
                            grpc::ServerBuilder& builder);
  // Saves every table in full, unless `deadline` (when `grace` is over)
  // passes first; logs the outcome.
  void FinalCheckpoint(absl::Time deadline, absl::Duration grace);

  const std::unique_ptr<TableRegistry> registry_;
  // Null without a checkpoint_dir.
  const std::unique_ptr<Checkpointer> checkpointer_;
  const std::unique_ptr<Authenticator> authenticator_;
  InflightMemory inflight_;
  EmbeddingServiceImpl service_;
  // What gRPC calls: parses into service_'s typed methods.
  BoundedService bounded_service_;
  HealthService health_;
  // Null without metrics_address. server_'s interceptor counts into
  // rpc_metrics_, so it outlives server_; the endpoint reads everything
  // above, so it stops first.
  std::shared_ptr<RpcMetrics> rpc_metrics_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  int port_ = 0;

  absl::Mutex mu_;
  // The restore is over (or there was none).
  bool restored_ ABSL_GUARDED_BY(mu_) = false;
  // Shutdown has begun: the checkpoint thread ends after its current save.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Joined by Stop (only one Stop gets past stopping_).
  std::thread checkpoint_thread_;
};

}  // namespace embedding

#endif  // SERVER_SERVICE_SERVER_H_
