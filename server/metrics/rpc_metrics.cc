#include "server/metrics/rpc_metrics.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "server/metrics/metric_families.h"

namespace embedding {
namespace {

constexpr int kUnknownCode = 2;

RpcType TypeOf(const google::protobuf::MethodDescriptor& method) {
  if (method.client_streaming()) {
    return method.server_streaming() ? RpcType::kBidiStream
                                     : RpcType::kClientStream;
  }
  return method.server_streaming() ? RpcType::kServerStream : RpcType::kUnary;
}

std::string PathOf(const RpcMethod& method) {
  return absl::StrCat("/", method.service, "/", method.name);
}

}  // namespace

const char* RpcTypeLabel(RpcType type) {
  switch (type) {
    case RpcType::kUnary:
      return "unary";
    case RpcType::kClientStream:
      return "client_stream";
    case RpcType::kServerStream:
      return "server_stream";
    case RpcType::kBidiStream:
      return "bidi_stream";
  }
  return "unary";
}

absl::StatusOr<std::vector<RpcMethod>> MethodsOfServices(
    absl::Span<const std::string> services) {
  std::vector<RpcMethod> methods;
  for (const std::string& name : services) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
            name);
    if (service == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "service ", name, " has no descriptor linked into the binary"));
    }
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor& method = *service->method(i);
      methods.push_back(
          {.service = name, .name = method.name(), .type = TypeOf(method)});
    }
  }
  return methods;
}

std::vector<double> HandlingSecondsBounds() {
  return {0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
          0.005,    0.01,    0.025,  0.05,    0.1,    0.25,  0.5,
          1,        2.5,     5,      10,      30,     60};
}

RpcMetrics::PerMethod::PerMethod(RpcMethod method)
    : method(std::move(method)), handling_seconds(HandlingSecondsBounds()) {}

RpcMetrics::RpcMetrics(std::vector<RpcMethod> methods) {
  for (RpcMethod& method : methods) {
    index_.emplace(PathOf(method), static_cast<int>(per_method_.size()));
    per_method_.push_back(std::make_unique<PerMethod>(std::move(method)));
  }
  for (int code = 0; code < kStatusCodes; ++code) {
    code_names_[code] =
        absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  }
}

int RpcMetrics::Find(absl::string_view path) const {
  const auto it = index_.find(path);
  return it == index_.end() ? -1 : it->second;
}

void RpcMetrics::Handled(int method, int code, double seconds) {
  PerMethod& counts = *per_method_[method];
  Add(counts.handled[code >= 0 && code < kStatusCodes ? code : kUnknownCode]);
  counts.handling_seconds.Observe(seconds);
}

std::vector<prometheus::MetricFamily> RpcMetrics::Collect() const {
  prometheus::MetricFamily started =
      CounterFamily("grpc_server_started_total",
                    "Total number of RPCs started on the server.");
  prometheus::MetricFamily handled = CounterFamily(
      "grpc_server_handled_total",
      "Total number of RPCs completed on the server, regardless of success "
      "or failure.");
  prometheus::MetricFamily received = CounterFamily(
      "grpc_server_msg_received_total",
      "Total number of RPC stream messages received on the server.");
  prometheus::MetricFamily sent =
      CounterFamily("grpc_server_msg_sent_total",
                    "Total number of gRPC stream messages sent by the server.");
  prometheus::MetricFamily seconds = HistogramFamily(
      "grpc_server_handling_seconds",
      "Histogram of response latency (seconds) of gRPC that had been "
      "application-level handled by the server.");
  const auto load = [](const std::atomic<uint64_t>& counter) {
    return static_cast<double>(counter.load(std::memory_order_relaxed));
  };
  for (const std::unique_ptr<PerMethod>& counts : per_method_) {
    const MetricLabels labels = {
        {"grpc_method", counts->method.name},
        {"grpc_service", counts->method.service},
        {"grpc_type", RpcTypeLabel(counts->method.type)}};
    AddSample(started, labels, load(counts->started));
    AddSample(received, labels, load(counts->received));
    AddSample(sent, labels, load(counts->sent));
    for (int code = 0; code < kStatusCodes; ++code) {
      MetricLabels with_code = labels;
      with_code.push_back({"grpc_code", code_names_[code]});
      AddSample(handled, std::move(with_code), load(counts->handled[code]));
    }
    AddSample(seconds, labels, counts->handling_seconds.Collect());
  }
  std::vector<prometheus::MetricFamily> families;
  families.push_back(std::move(started));
  families.push_back(std::move(handled));
  families.push_back(std::move(received));
  families.push_back(std::move(sent));
  families.push_back(std::move(seconds));
  return families;
}

}  // namespace embedding
