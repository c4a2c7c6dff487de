// MetricsEndpoint: the HTTP endpoint Prometheus scrapes (GET /metrics, the
// text exposition format), served by prometheus-cpp's Exposer on its own
// threads, away from the gRPC server's.
//
//   absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
//       MetricsEndpoint::Start("127.0.0.1:0");
//   (*endpoint)->Register(std::make_shared<TableMetrics>(&registry));
//   WritePortFile(path, (*endpoint)->port());
//
// Thread-compatible: register every collectable before the server takes
// calls; scrapes then run on the endpoint's own thread. Destroying it stops
// serving, so destroy it before what its collectables read.
#ifndef SERVER_METRICS_METRICS_ENDPOINT_H_
#define SERVER_METRICS_METRICS_ENDPOINT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"

namespace embedding {

class MetricsEndpoint {
 public:
  // Listens on `address` (HOST:PORT; HOST an IPv4 address or a name such as
  // localhost; port 0 picks a free one). INVALID_ARGUMENT naming
  // --metrics_address when it is not HOST:PORT; UNAVAILABLE naming it when
  // it cannot be bound (not an address of this machine, or the port is
  // taken).
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& address);

  // Serves `collectable`'s metrics on /metrics from now on; the endpoint
  // keeps it alive. Not concurrently with itself.
  void Register(std::shared_ptr<prometheus::Collectable> collectable);

  // The bound port.
  int port() const { return port_; }

 private:
  MetricsEndpoint(std::unique_ptr<prometheus::Exposer> exposer, int port)
      : exposer_(std::move(exposer)), port_(port) {}

  // Declared first so it is destroyed last: the exposer's threads stop
  // before the collectables go.
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  const int port_;
};

// INVALID_ARGUMENT naming --metrics_address unless `address` is HOST:PORT
// with a port in [0, 65535] (checked before anything listens).
absl::Status ValidateMetricsAddress(absl::string_view address);

}  // namespace embedding

#endif  // SERVER_METRICS_METRICS_ENDPOINT_H_
