// RpcMetrics: the RPC metrics gRPC servers usually export (the names of
// go-grpc-prometheus, so existing dashboards work), kept in atomics created
// at startup for every method and status code, so counting a call takes no
// lock and allocates nothing:
//
//   grpc_server_started_total{grpc_type,grpc_service,grpc_method}
//   grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
//   grpc_server_msg_received_total / grpc_server_msg_sent_total{...}
//   grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}
//   (histogram)
//
// grpc_type is unary, client_stream, server_stream or bidi_stream;
// grpc_code the canonical name ("OK", "INVALID_ARGUMENT", ...).
//
//   absl::StatusOr<std::vector<RpcMethod>> methods =
//       MethodsOfServices({"embedding.v1.EmbeddingService"});
//   auto metrics = std::make_shared<RpcMetrics>(*methods);
//   const int method = metrics->Find("/embedding.v1.EmbeddingService/Lookup");
//   metrics->Started(method);
//   metrics->Handled(method, /*code=*/0, /*seconds=*/0.002);
//   exposer.RegisterCollectable(metrics);  // Collect() at scrape time.
//
// Thread-safe. The method table is immutable after construction; every
// count is a relaxed atomic (counts publish nothing).
#ifndef SERVER_METRICS_RPC_METRICS_H_
#define SERVER_METRICS_RPC_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/metrics/atomic_histogram.h"

namespace embedding {

enum class RpcType { kUnary, kClientStream, kServerStream, kBidiStream };

// grpc_type's value: "unary", "client_stream", "server_stream",
// "bidi_stream".
const char* RpcTypeLabel(RpcType type);

struct RpcMethod {
  std::string service;  // "embedding.v1.EmbeddingService"
  std::string name;     // "Lookup"
  RpcType type = RpcType::kUnary;
};

// The methods of the services named (full protobuf names), from the
// generated descriptors linked into the binary. NOT_FOUND naming a service
// whose descriptor is not linked in.
absl::StatusOr<std::vector<RpcMethod>> MethodsOfServices(
    absl::Span<const std::string> services);

// The upper bounds (seconds) of grpc_server_handling_seconds: from 25 us
// (a small lookup, timed from its parsed request to its status) to a
// minute (a long stream).
std::vector<double> HandlingSecondsBounds();

class RpcMetrics final : public prometheus::Collectable {
 public:
  // The canonical status codes, 0 (OK) to 16 (UNAUTHENTICATED).
  static constexpr int kStatusCodes = 17;

  explicit RpcMetrics(std::vector<RpcMethod> methods);

  // The index of the method at `path` ("/package.Service/Method"), or -1.
  int Find(absl::string_view path) const;

  // Counts for method `method` (an index from Find). `code` outside
  // [0, kStatusCodes) counts as UNKNOWN.
  void Started(int method) { Add(per_method_[method]->started); }
  void Received(int method) { Add(per_method_[method]->received); }
  void Sent(int method) { Add(per_method_[method]->sent); }
  void Handled(int method, int code, double seconds);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct PerMethod {
    explicit PerMethod(RpcMethod method);
    const RpcMethod method;
    std::atomic<uint64_t> started{0};
    std::atomic<uint64_t> received{0};
    std::atomic<uint64_t> sent{0};
    std::array<std::atomic<uint64_t>, kStatusCodes> handled{};
    AtomicHistogram handling_seconds;
  };

  static void Add(std::atomic<uint64_t>& counter) {
    counter.fetch_add(1, std::memory_order_relaxed);
  }

  std::vector<std::unique_ptr<PerMethod>> per_method_;
  absl::flat_hash_map<std::string, int> index_;  // Path -> method.
  std::array<std::string, kStatusCodes> code_names_;
};

}  // namespace embedding

#endif  // SERVER_METRICS_RPC_METRICS_H_
