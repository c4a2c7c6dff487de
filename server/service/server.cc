#include "server/service/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/resource_quota.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace embedding {

Server::Server(const ServerOptions& options)
    : registry_(options.registry), service_(&registry_, options.service) {}

Server::~Server() {
  if (server_ != nullptr) Shutdown(absl::ZeroDuration());
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const ServerOptions& options) {
  std::unique_ptr<Server> server(new Server(options));
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address,
                           grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(&server->service_);
  builder.RegisterService(&server->health_);
  const int max_bytes = static_cast<int>(options.service.max_message_bytes);
  builder.SetMaxReceiveMessageSize(max_bytes);
  builder.SetMaxSendMessageSize(max_bytes);
  if (options.worker_threads > 0) {
    grpc::ResourceQuota quota("embedding_server");
    quota.SetMaxThreads(options.worker_threads);
    builder.SetResourceQuota(quota);
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address));
  }
  return server;
}

void Server::Shutdown(absl::Duration grace) {
  health_.SetServing(false);
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoNanoseconds(grace));
}

void Server::Wait() { server_->Wait(); }

}  // namespace embedding
