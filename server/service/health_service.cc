#include "server/service/health_service.h"

#include <string>

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
  serving_ = serving;
  changed_.SignalAll();
}

bool HealthService::serving() const {
  absl::MutexLock lock(&mu_);
  return serving_;
}

bool HealthService::AwaitChange(bool from, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + timeout;
  while (serving_ == from) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) break;  // Timed out.
  }
  return serving_;
}

grpc::Status HealthService::Check(
    grpc::ServerContext* context,
    const grpc::health::v1::HealthCheckRequest* request,
    HealthCheckResponse* response) {
  if (!IsKnownService(request->service())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service \"" + request->service() + "\"");
  }
  response->set_status(StatusOf(serving()));
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
  bool sent = serving();
  response.set_status(StatusOf(sent));
  if (!writer->Write(response)) return grpc::Status::OK;
  // A watch holds one sync thread; it ends when the server stops serving.
  // The sync API has no cancellation callback, hence the one-second wake-ups.
  while (sent && !context->IsCancelled()) {
    const bool now = AwaitChange(sent, absl::Seconds(1));
    if (now != sent) {
      sent = now;
      response.set_status(StatusOf(sent));
      if (!writer->Write(response)) break;
    }
  }
  return grpc::Status::OK;
}

}  // namespace embedding
