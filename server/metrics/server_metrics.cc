#include "server/metrics/server_metrics.h"

#include <utility>

namespace embedding {
namespace {

void AddAuthFailures(AuthFailureSources sources, CallbackMetrics& metrics) {
  const auto add = [&metrics](const char* reason,
                              std::function<int64_t()> read) {
    if (read == nullptr) return;
    metrics.Add(CounterFamily("embedding_auth_failures_total",
                              "Calls refused by authentication, by reason: "
                              "no token (UNAUTHENTICATED), an unknown token "
                              "(UNAUTHENTICATED), a role too low "
                              "(PERMISSION_DENIED)."),
                {{"reason", reason}}, std::move(read));
  };
  add("missing_token", std::move(sources.missing_token));
  add("unknown_token", std::move(sources.unknown_token));
  add("permission_denied", std::move(sources.permission_denied));
}

}  // namespace

std::shared_ptr<CallbackMetrics> ServerMetrics(ServerMetricSources sources) {
  auto metrics = std::make_shared<CallbackMetrics>();
  metrics->Add(GaugeFamily("embedding_inflight_requests",
                           "Calls of embedding.v1.EmbeddingService under way."),
               {}, std::move(sources.calls_in_flight));
  metrics->Add(GaugeFamily("embedding_open_streams",
                           "LookupStream and ReadRows calls open (at most "
                           "--max_open_streams)."),
               {}, std::move(sources.open_streams));
  metrics->Add(GaugeFamily("embedding_inflight_bytes",
                           "Bytes reserved by calls in flight: parsed "
                           "requests, responses, stream backlogs, push "
                           "scratch."),
               {}, std::move(sources.inflight_bytes));
  const int64_t limit = sources.inflight_limit_bytes;
  metrics->Add(GaugeFamily("embedding_inflight_limit_bytes",
                           "Most bytes calls in flight may hold "
                           "(--max_inflight_bytes)."),
               {}, [limit] { return limit; });
  AddAuthFailures(std::move(sources.auth_failures), *metrics);
  return metrics;
}

}  // namespace embedding
