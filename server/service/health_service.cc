#include "server/service/health_service.h"

#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/time/clock.h"

namespace embedding {
namespace {

using grpc::health::v1::HealthCheckResponse;

bool IsKnownService(const std::string& name) {
  return name.empty() || name == "embedding.v1.EmbeddingService";
}

HealthCheckResponse::ServingStatus StatusOf(bool serving) {
  return serving ? HealthCheckResponse::SERVING
                 : HealthCheckResponse::NOT_SERVING;
}

}  // namespace

void HealthService::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);
  if (state_.stopped) return;
  state_.serving = serving;
  changed_.SignalAll();
}

void HealthService::Stop() {
  absl::MutexLock lock(&mu_);
  state_ = {.serving = false, .stopped = true};
  changed_.SignalAll();
}

void HealthService::WaitForWatchers(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (watchers_ > 0) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) return;  // Timed out.
  }
}

HealthService::State HealthService::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

HealthService::State HealthService::AwaitChange(bool from,
                                                absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + timeout;
  while (state_.serving == from && !state_.stopped) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) break;  // Timed out.
  }
  return state_;
}

grpc::Status HealthService::Check(
    grpc::ServerContext* context,
    const grpc::health::v1::HealthCheckRequest* request,
    HealthCheckResponse* response) {
  if (!IsKnownService(request->service())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service \"" + request->service() + "\"");
  }
  response->set_status(StatusOf(state().serving));
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(
    grpc::ServerContext* context,
    const grpc::health::v1::HealthCheckRequest* request,
    grpc::ServerWriter<HealthCheckResponse>* writer) {
  HealthCheckResponse response;
  if (!IsKnownService(request->service())) {
    response.set_status(HealthCheckResponse::SERVICE_UNKNOWN);
    writer->Write(response);
    return grpc::Status::OK;
  }
  {
    absl::MutexLock lock(&mu_);
    ++watchers_;
  }
  // Counted until it returns, for WaitForWatchers.
  const absl::Cleanup done = [this] {
    absl::MutexLock lock(&mu_);
    --watchers_;
    changed_.SignalAll();
  };
  State state = this->state();
  bool sent = state.serving;
  response.set_status(StatusOf(sent));
  if (!writer->Write(response)) return grpc::Status::OK;
  // A watch holds one sync thread; it ends when the server stops (a watch
  // begun while checkpoints are restored sees NOT_SERVING turn SERVING).
  // The sync API has no cancellation callback, hence the one-second wake-ups.
  while (!state.stopped && !context->IsCancelled()) {
    state = AwaitChange(sent, absl::Seconds(1));
    if (state.serving != sent) {
      sent = state.serving;
      response.set_status(StatusOf(sent));
      if (!writer->Write(response)) break;
    }
  }
  return grpc::Status::OK;
}

}  // namespace embedding
