// BoundedService: how the server registers EmbeddingServiceImpl with gRPC.
// It takes every request as raw bytes and parses it itself (ParseBounded),
// so that parsing memory is reserved from the in-flight account first, and
// a malformed message is INVALID_ARGUMENT (inside a LookupStream too, where
// gRPC's own parsing would just end the stream with OK). A unary response
// keeps its bytes reserved until gRPC has sent it.
//
// Before anything is parsed or reserved, the Authenticator decides whether
// the caller's role may run the method (method_roles.h): a refused call
// costs no memory and reads no request. Each failed call is logged at
// debug with its method, code, peer and table (the table only once the
// request is parsed; never payloads or credentials).
//
//   EmbeddingServiceImpl impl(&registry, options, checkpointer, &memory);
//   BoundedService service(&impl, &memory, &authenticator);
//   builder.RegisterService(&service);   // Not `impl` itself.
//
// Same wire contract as the generated embedding.v1.EmbeddingService (the
// method paths come from its descriptor; a test checks that every method of
// the descriptor is registered). Thread-safe.
#ifndef SERVER_SERVICE_BOUNDED_SERVICE_H_
#define SERVER_SERVICE_BOUNDED_SERVICE_H_

#include <grpcpp/impl/service_type.h>

#include <deque>
#include <string>
#include <vector>

#include "server/security/authenticator.h"
#include "server/service/embedding_service_impl.h"
#include "server/service/inflight_memory.h"

namespace embedding {

class BoundedService final : public grpc::Service {
 public:
  // All must outlive the service. `memory` null: no account (tests);
  // `authenticator` null: every call is let in.
  BoundedService(EmbeddingServiceImpl* impl, InflightMemory* memory,
                 const Authenticator* authenticator = nullptr);

  // The full names ("/embedding.v1.EmbeddingService/Lookup") of the methods
  // registered, in registration order.
  const std::vector<std::string>& method_paths() const { return paths_; }

 private:
  template <typename Request, typename Response>
  void AddUnary(const char* name,
                grpc::Status (EmbeddingServiceImpl::*method)(
                    grpc::ServerContext*, const Request*, Response*));
  template <typename Request, typename Response>
  void AddServerStreaming(const char* name,
                          grpc::Status (EmbeddingServiceImpl::*method)(
                              grpc::ServerContext*, const Request*,
                              grpc::ServerWriter<Response>*));
  void AddLookupStream();
  // The path of method `name`, kept alive for gRPC (which keeps a pointer).
  const char* Path(const char* name);

  EmbeddingServiceImpl* const impl_;
  InflightMemory* const memory_;
  const Authenticator* const authenticator_;
  std::vector<std::string> paths_;
  std::deque<std::string> path_storage_;  // Stable addresses.
};

}  // namespace embedding

#endif  // SERVER_SERVICE_BOUNDED_SERVICE_H_
