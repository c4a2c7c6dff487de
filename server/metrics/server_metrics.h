// The server's own gauges and counters beside the tables', read from the
// objects that keep them when /metrics is scraped:
//
//   embedding_inflight_requests        calls under way
//   embedding_open_streams             LookupStream and ReadRows calls open
//   embedding_inflight_bytes           bytes reserved by calls in flight
//   embedding_inflight_limit_bytes     --max_inflight_bytes
//   embedding_auth_failures_total{reason="missing_token"|"unknown_token"|
//                                 "permission_denied"}   (with auth only)
//
//   exposer.RegisterCollectable(ServerMetrics({
//       .calls_in_flight = [&] { return service.calls_in_flight(); }, ...}));
//
// Thread-safe when the sources are.
#ifndef SERVER_METRICS_SERVER_METRICS_H_
#define SERVER_METRICS_SERVER_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "server/metrics/callback_metrics.h"

namespace embedding {

// Calls refused by authentication, by reason.
struct AuthFailureSources {
  std::function<int64_t()> missing_token;
  std::function<int64_t()> unknown_token;
  std::function<int64_t()> permission_denied;
};

struct ServerMetricSources {
  std::function<int64_t()> calls_in_flight;
  std::function<int64_t()> open_streams;
  std::function<int64_t()> inflight_bytes;
  int64_t inflight_limit_bytes = 0;
  // Null members (a server without auth): no embedding_auth_failures_total.
  AuthFailureSources auth_failures;
};

// REQUIRES: the functions of `sources` other than auth_failures' are set.
std::shared_ptr<CallbackMetrics> ServerMetrics(ServerMetricSources sources);

}  // namespace embedding

#endif  // SERVER_METRICS_SERVER_METRICS_H_
