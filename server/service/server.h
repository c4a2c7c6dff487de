// Server: an EmbeddingService listening on an address, with the standard
// health and reflection services beside it. Its factory checks the options,
// so main.cc only maps flags to them.
//
//   absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
//   if (!server.ok()) return Exit(server.status());
//   Announce((*server)->port());
//   (*server)->Shutdown(absl::Seconds(10));  // Health goes NOT_SERVING first.
//
// Thread-safe.
#ifndef SERVER_SERVICE_SERVER_H_
#define SERVER_SERVICE_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/core/table_registry.h"
#include "server/service/embedding_service_impl.h"
#include "server/service/health_service.h"

namespace embedding {

// Each field's flag in main.cc has the field's name; Server::Start names the
// flag when it rejects a value.
struct ServerOptions {
  // host:port to listen on; port 0 picks a free port.
  // Default: "127.0.0.1:50051" (loopback only).
  std::string listen_address = "127.0.0.1:50051";
  // Most threads the synchronous server's pool may run (a gRPC
  // ResourceQuota); 0 lets gRPC decide.
  // Default: 0. REQUIRES: >= 0.
  int worker_threads = 0;
  // Memory budget and this server's shard; REQUIRES as documented there.
  RegistryOptions registry;
  // Request and message limits; REQUIRES as documented there.
  ServiceOptions service;
};

class Server {
 public:
  // Checks `options`, then starts listening. INVALID_ARGUMENT naming the
  // flag of the first option outside its REQUIRES; UNAVAILABLE when the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options);

  ~Server();

  // The bound port (useful with port 0).
  int port() const { return port_; }

  // Marks health NOT_SERVING, stops accepting calls and lets in-flight calls
  // finish for up to `grace`, then cancels the rest.
  void Shutdown(absl::Duration grace);

  // Blocks until Shutdown completes.
  void Wait();

 private:
  explicit Server(const ServerOptions& options);

  TableRegistry registry_;
  EmbeddingServiceImpl service_;
  HealthService health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace embedding

#endif  // SERVER_SERVICE_SERVER_H_
