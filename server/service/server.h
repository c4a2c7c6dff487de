// Server: an EmbeddingService listening on an address, with the standard
// health and reflection services beside it.
//
//   absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
//   std::cout << (*server)->port();
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

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port. Default: loopback only.
  std::string listen_address = "127.0.0.1:50051";
  // Threads the gRPC callback executor may use; 0 = gRPC's default.
  int worker_threads = 0;
  RegistryOptions registry;
  ServiceOptions service;
};

class Server {
 public:
  // Starts listening. UNAVAILABLE when the address cannot be bound.
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
  Server(const ServerOptions& options);

  TableRegistry registry_;
  EmbeddingServiceImpl service_;
  HealthService health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace embedding

#endif  // SERVER_SERVICE_SERVER_H_
