#include "server/service/server.h"

#include <grpcpp/resource_quota.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "server/metrics/checkpoint_metrics.h"
#include "server/metrics/rpc_metrics_interceptor.h"
#include "server/metrics/server_metrics.h"
#include "server/metrics/table_metrics.h"
#include "server/security/reflection_option.h"
#include "spdlog/spdlog.h"

namespace embedding {
namespace {

constexpr int64_t kMinMessageBytes = int64_t{1} << 20;
// At shutdown, how long no call may arrive before the connections close.
constexpr absl::Duration kArrivalPause = absl::Milliseconds(250);
// gRPC takes message limits as int.
constexpr int64_t kMaxMessageBytes = int64_t{1} << 31;

absl::Status ValidateCheckpointOptions(const ServerOptions& options) {
  const double interval = options.checkpoint_interval_s;
  if (!std::isfinite(interval) || interval < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--checkpoint_interval_s must be a finite number >= 0 (0: no "
        "periodic checkpoints), got ",
        interval));
  }
  if (options.checkpoint_keep < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--checkpoint_keep must be >= 1, got ", options.checkpoint_keep));
  }
  if (options.full_checkpoint_every < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--full_checkpoint_every must be >= 0 (0: every "
                     "checkpoint is full), got ",
                     options.full_checkpoint_every));
  }
  if (options.checkpoint_dir.empty()) {
    if (interval > 0) {
      return absl::InvalidArgumentError(
          "--checkpoint_interval_s needs --checkpoint_dir");
    }
    return absl::OkStatus();
  }
  std::error_code error;
  if (!std::filesystem::is_directory(options.checkpoint_dir, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--checkpoint_dir=", options.checkpoint_dir,
                     " is not an existing directory",
                     error && error != std::errc::no_such_file_or_directory
                         ? absl::StrCat(" (", error.message(), ")")
                         : ""));
  }
  return absl::OkStatus();
}

// INVALID_ARGUMENT naming the flag (main.cc: one flag per field, same name)
// of the first option outside its REQUIRES.
absl::Status ValidateOptions(const ServerOptions& options) {
  const RegistryOptions& registry = options.registry;
  const ServiceOptions& service = options.service;
  if (service.max_open_streams < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_open_streams must be >= 1, got ", service.max_open_streams));
  }
  if (options.worker_threads <= service.max_open_streams) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--worker_threads must be > --max_open_streams = ",
        service.max_open_streams,
        " (open streams hold a thread each; unary calls need the rest), got ",
        options.worker_threads));
  }
  if (service.stream_idle_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--stream_idle_timeout_s must be > 0, got ",
                     absl::ToDoubleSeconds(service.stream_idle_timeout)));
  }
  if (options.max_inflight_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_inflight_bytes must be > 0, got ", options.max_inflight_bytes));
  }
  if (options.max_streams_per_connection < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_streams_per_connection must be >= 1, got ",
                     options.max_streams_per_connection));
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
  if (!options.metrics_address.empty()) {
    EMBEDDING_RETURN_IF_ERROR(ValidateMetricsAddress(options.metrics_address));
  }
  return ValidateCheckpointOptions(options);
}

// Keepalive in both directions and the per-connection stream limit (README,
// "Connections"). gRPC's default ping policy ends a connection whose client
// pings more often than every 5 minutes with "too_many_pings", which other
// gRPC clients (grpc-js, grpc-go) with keepalive on meet after seconds.
void SetConnectionOptions(const ServerOptions& options,
                          grpc::ServerBuilder& builder) {
  // Client pings: allowed every second (half that before a strike, for
  // timer jitter), with or without calls open.
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Server pings: a peer silent for a minute is pinged, and its connection
  // (and calls) closed if it does not answer within 20 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             options.max_streams_per_connection);
}

absl::StatusOr<std::unique_ptr<Checkpointer>> CreateCheckpointer(
    const ServerOptions& options, TableRegistry* registry) {
  absl::StatusOr<std::unique_ptr<Checkpointer>> checkpointer =
      Checkpointer::Create({.directory = options.checkpoint_dir,
                            .keep = options.checkpoint_keep,
                            .full_every = options.full_checkpoint_every},
                           registry);
  if (!checkpointer.ok()) {
    // Still the flag's fault: main exits with a usage error.
    return absl::InvalidArgumentError(
        absl::StrCat("--checkpoint_dir=", options.checkpoint_dir, ": ",
                     checkpointer.status().message()));
  }
  return checkpointer;
}

// The security configuration at info (never a secret), and what is open to
// the network as warnings.
void LogSecurity(const ServerOptions& options,
                 const Authenticator& authenticator) {
  spdlog::info("transport {}; authentication {}; reflection {}",
               TransportSummary(options.tls), authenticator.Summary(),
               options.enable_reflection ? "on" : "off");
  if (IsLoopbackAddress(options.listen_address)) return;
  if (!options.tls.enabled()) {
    spdlog::warn(
        "serving PLAINTEXT on non-loopback address {} (--allow_insecure): "
        "anyone on the network can read and change what is sent",
        options.listen_address);
  }
  if (!authenticator.enabled()) {
    spdlog::warn(
        "no --auth_tokens_file: every client that reaches {} may read, "
        "write and delete every table",
        options.listen_address);
  }
}

}  // namespace

Server::Server(const ServerOptions& options,
               std::unique_ptr<TableRegistry> registry,
               std::unique_ptr<Checkpointer> checkpointer,
               std::unique_ptr<Authenticator> authenticator)
    : registry_(std::move(registry)),
      checkpointer_(std::move(checkpointer)),
      authenticator_(std::move(authenticator)),
      inflight_(options.max_inflight_bytes),
      service_(registry_.get(), options.service, checkpointer_.get(),
               &inflight_),
      bounded_service_(&service_, &inflight_, authenticator_.get()) {}

Server::~Server() {
  if (server_ != nullptr) {
    Stop(absl::ZeroDuration(), /*final_checkpoint=*/false);
  }
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const ServerOptions& options) {
  EMBEDDING_RETURN_IF_ERROR(ValidateOptions(options));
  EMBEDDING_ASSIGN_OR_RETURN(
      const std::shared_ptr<grpc::ServerCredentials> credentials,
      ServerCredentialsFor(options.tls, options.listen_address,
                           options.allow_insecure));
  absl::StatusOr<std::unique_ptr<Authenticator>> authenticator =
      Authenticator::Create(options.auth_tokens_file);
  if (!authenticator.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_tokens_file: ", authenticator.status().message()));
  }
  auto registry = std::make_unique<TableRegistry>(options.registry);
  std::unique_ptr<Checkpointer> checkpointer;
  if (!options.checkpoint_dir.empty()) {
    EMBEDDING_ASSIGN_OR_RETURN(checkpointer,
                               CreateCheckpointer(options, registry.get()));
  }
  std::unique_ptr<Server> server(new Server(options, std::move(registry),
                                            std::move(checkpointer),
                                            *std::move(authenticator)));
  if (server->checkpointer_ != nullptr) {
    // Listening before the restore lets probes see NOT_SERVING (rather than
    // nothing) while a large restore runs.
    server->health_.SetServing(false);
    server->service_.SetRestoring(true);
  } else {
    absl::MutexLock lock(&server->mu_);
    server->restored_ = true;
  }
  grpc::ServerBuilder builder;
  // Linking grpc++_reflection turns reflection on for every server; this
  // option removes it unless enable_reflection.
  builder.SetOption(ReflectionOption(options.enable_reflection));
  builder.AddListeningPort(options.listen_address, credentials, &server->port_);
  builder.RegisterService(&server->bounded_service_);
  builder.RegisterService(&server->health_);
  // In range: ValidateOptions checked it is below 2 GiB.
  const int max_bytes = static_cast<int>(options.service.max_message_bytes);
  builder.SetMaxReceiveMessageSize(max_bytes);
  builder.SetMaxSendMessageSize(max_bytes);
  grpc::ResourceQuota quota("embedding_server");
  quota.SetMaxThreads(options.worker_threads);
  builder.SetResourceQuota(quota);
  SetConnectionOptions(options, builder);
  // Before gRPC listens: a metrics port that cannot be had stops the start.
  if (!options.metrics_address.empty()) {
    EMBEDDING_RETURN_IF_ERROR(server->StartMetrics(options, builder));
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address));
  }
  LogSecurity(options, server->authenticator());
  if (server->checkpointer_ != nullptr) {
    server->checkpoint_thread_ =
        std::thread(&Server::RunCheckpoints, server.get(),
                    absl::Seconds(options.checkpoint_interval_s));
  }
  return server;
}

absl::Status Server::StartMetrics(const ServerOptions& options,
                                  grpc::ServerBuilder& builder) {
  std::vector<std::string> services = {
      std::string(v1::EmbeddingService::service_full_name()),
      std::string(grpc::health::v1::Health::service_full_name())};
  if (options.enable_reflection) {
    services.push_back("grpc.reflection.v1alpha.ServerReflection");
  }
  EMBEDDING_ASSIGN_OR_RETURN(std::vector<RpcMethod> methods,
                             MethodsOfServices(services));
  rpc_metrics_ = std::make_shared<RpcMetrics>(std::move(methods));
  EMBEDDING_ASSIGN_OR_RETURN(metrics_endpoint_,
                             MetricsEndpoint::Start(options.metrics_address));
  CountCalls(rpc_metrics_.get(), builder);

  metrics_endpoint_->Register(rpc_metrics_);
  metrics_endpoint_->Register(std::make_shared<TableMetrics>(registry_.get()));
  ServerMetricSources sources = {
      .calls_in_flight = [this] { return service_.calls_in_flight(); },
      .open_streams = [this] { return int64_t{service_.open_streams()}; },
      .inflight_bytes = [this] { return inflight_.used(); },
      .inflight_limit_bytes = inflight_.limit()};
  if (authenticator_->enabled()) {
    const Authenticator* auth = authenticator_.get();
    sources.auth_failures = {
        .missing_token =
            [auth] { return auth->failures(AuthFailure::kMissingToken); },
        .unknown_token =
            [auth] { return auth->failures(AuthFailure::kUnknownToken); },
        .permission_denied =
            [auth] { return auth->failures(AuthFailure::kPermissionDenied); }};
  }
  metrics_endpoint_->Register(ServerMetrics(std::move(sources)));
  if (checkpointer_ != nullptr) {
    const Checkpointer* checkpointer = checkpointer_.get();
    metrics_endpoint_->Register(std::make_shared<CheckpointMetrics>(
        registry_.get(),
        [checkpointer](
            const std::string& table) -> std::optional<CheckpointTimes> {
          const std::optional<CheckpointRecord> last =
              checkpointer->LastCheckpoint(table);
          if (!last.has_value()) return std::nullopt;
          return CheckpointTimes{
              .began = last->time,
              .last_save = checkpointer->LastSaveDuration(table)};
        }));
  }
  spdlog::info(
      "metrics on http://{}:{}/metrics",
      options.metrics_address.substr(0, options.metrics_address.rfind(':')),
      metrics_endpoint_->port());
  return absl::OkStatus();
}

bool Server::WaitUntilServing(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(this, &Server::RestoredOrStopping),
                       timeout);
  return restored_ && !stopping_;
}

void Server::RunCheckpoints(absl::Duration interval) {
  checkpointer_->RestoreAll();
  {
    absl::MutexLock lock(&mu_);
    restored_ = true;
    if (stopping_) return;  // Shutdown keeps the service unavailable.
    service_.SetRestoring(false);
    health_.SetServing(true);
  }
  spdlog::info("serving");
  if (interval == absl::ZeroDuration()) return;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval);
      if (stopping_) return;
    }
    // Each failure is logged; the server serves on, and the next period
    // tries again.
    checkpointer_->SaveAll(SaveKind::kIncremental, "periodic").IgnoreError();
  }
}

void Server::Shutdown(absl::Duration grace) {
  Stop(grace, /*final_checkpoint=*/true);
}

void Server::Stop(absl::Duration grace, bool final_checkpoint) {
  const absl::Time deadline = absl::Now() + grace;
  bool restored = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    restored = restored_;
  }
  health_.Stop();
  // The grace period covers the drain and the final checkpoint. When it
  // runs out, every save still running (a SaveCheckpoint call, a periodic
  // save, the final one) stops cleanly, so neither outlives it by more than
  // one block of writing.
  absl::Notification stopped;
  std::thread watchdog;
  if (checkpointer_ != nullptr) {
    watchdog = std::thread([this, deadline, &stopped] {
      if (!stopped.WaitForNotificationWithDeadline(deadline)) {
        checkpointer_->CancelSaves();
      }
    });
  }
  // Our own drain rather than gRPC's Shutdown, which also waits (up to its
  // deadline) for idle client connections to close.
  if (const int64_t running = service_.Drain(deadline); running > 0) {
    spdlog::warn("{} calls still running when the grace period ran out",
                 running);
  }
  // A restore cannot be cancelled: a shutdown during one waits for it.
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
  if (final_checkpoint && checkpointer_ != nullptr) {
    if (restored) {
      FinalCheckpoint(deadline, grace);
    } else {
      // No call was served, so the checkpoints on disk are still current.
      spdlog::info(
          "no final checkpoint: shutdown began before the restore ended");
    }
  }
  stopped.Notify();
  if (watchdog.joinable()) watchdog.join();
  health_.WaitForWatchers(deadline);
  // Calls still arriving would be cancelled by gRPC below (their clients
  // would see CANCELLED and could not tell they did not run): give them a
  // moment to come in and be refused with UNAVAILABLE.
  service_.AwaitQuiet(kArrivalPause, deadline);
  // Drained (or out of time): cancel what is left, close the connections.
  server_->Shutdown(std::chrono::system_clock::now());
}

void Server::FinalCheckpoint(absl::Time deadline, absl::Duration grace) {
  // The drain may have used up the grace period before the watchdog ran:
  // then no save starts at all.
  if (absl::Now() >= deadline) checkpointer_->CancelSaves();
  spdlog::info("final checkpoint of every table to {}",
               checkpointer_->directory());
  const absl::Status status =
      checkpointer_->SaveAll(SaveKind::kFull, "shutdown");
  if (absl::IsCancelled(status)) {
    spdlog::error(
        "final checkpoint abandoned: the shutdown grace period ({} s) ran "
        "out; tables it did not save keep their previous checkpoint",
        absl::ToDoubleSeconds(grace));
  } else if (!status.ok()) {
    spdlog::error("final checkpoint incomplete: {}", status.ToString());
  }
}

void Server::Wait() { server_->Wait(); }

}  // namespace embedding
