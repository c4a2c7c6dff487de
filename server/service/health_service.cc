#include "server/service/health_service.h"

#include <chrono>
#include <string>

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
  {
    std::lock_guard<std::mutex> lock(mu_);
    serving_ = serving;
  }
  changed_.notify_all();
}

grpc::Status HealthService::Check(
    grpc::ServerContext* context,
    const grpc::health::v1::HealthCheckRequest* request,
    HealthCheckResponse* response) {
  if (!IsKnownService(request->service())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service \"" + request->service() + "\"");
  }
  std::lock_guard<std::mutex> lock(mu_);
  response->set_status(StatusOf(serving_));
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
  std::unique_lock<std::mutex> lock(mu_);
  bool sent_serving = serving_;
  response.set_status(StatusOf(sent_serving));
  if (!writer->Write(response)) return grpc::Status::OK;
  // A watch holds one sync thread; it ends when the server stops serving.
  while (serving_ && !context->IsCancelled()) {
    changed_.wait_for(lock, std::chrono::seconds(1));
    if (serving_ != sent_serving) {
      sent_serving = serving_;
      response.set_status(StatusOf(sent_serving));
      if (!writer->Write(response)) break;
    }
  }
  return grpc::Status::OK;
}

}  // namespace embedding
