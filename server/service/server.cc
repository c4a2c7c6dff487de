#include "server/service/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/resource_quota.h>

#include <chrono>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

constexpr int64_t kMinMessageBytes = int64_t{1} << 20;
// gRPC takes message limits as int.
constexpr int64_t kMaxMessageBytes = int64_t{1} << 31;

// INVALID_ARGUMENT naming the flag (main.cc: one flag per field, same name)
// of the first option outside its REQUIRES.
absl::Status ValidateOptions(const ServerOptions& options) {
  const RegistryOptions& registry = options.registry;
  const ServiceOptions& service = options.service;
  if (options.worker_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--worker_threads must be >= 0 (0 lets gRPC decide), got ",
                     options.worker_threads));
  }
  if (registry.memory_budget_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--memory_budget_bytes must be >= 0, got ",
                     registry.memory_budget_bytes));
  }
  if (registry.shard_count < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--shard_count must be >= 1, got ", registry.shard_count));
  }
  if (registry.shard_index < 0 ||
      registry.shard_index >= registry.shard_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--shard_index must be in [0, --shard_count = ", registry.shard_count,
        "), got ", registry.shard_index));
  }
  if (service.max_indices_per_request <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_indices_per_request must be > 0, got ",
                     service.max_indices_per_request));
  }
  if (service.max_message_bytes < kMinMessageBytes ||
      service.max_message_bytes >= kMaxMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_message_bytes must be in [1 MiB, 2 GiB) = [", kMinMessageBytes,
        ", ", kMaxMessageBytes, "), got ", service.max_message_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

Server::Server(const ServerOptions& options)
    : registry_(options.registry), service_(&registry_, options.service) {}

Server::~Server() {
  if (server_ != nullptr) Shutdown(absl::ZeroDuration());
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const ServerOptions& options) {
  EMBEDDING_RETURN_IF_ERROR(ValidateOptions(options));
  std::unique_ptr<Server> server(new Server(options));
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address,
                           grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(&server->service_);
  builder.RegisterService(&server->health_);
  // In range: ValidateOptions checked it is below 2 GiB.
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
