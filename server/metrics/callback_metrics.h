// CallbackMetrics: metrics whose values are read from functions when
// /metrics is scraped: for state the server keeps anyway (bytes in flight,
// auth failures), so exporting it costs nothing until a scrape.
//
//   auto metrics = std::make_shared<CallbackMetrics>();
//   metrics->Add(GaugeFamily("embedding_inflight_bytes", "Bytes held."), {},
//                [&memory] { return memory.used(); });
//   exposer.RegisterCollectable(metrics);
//
// Thread-compatible while metrics are added; then thread-safe, when the
// functions are.
#ifndef SERVER_METRICS_CALLBACK_METRICS_H_
#define SERVER_METRICS_CALLBACK_METRICS_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/metrics/metric_families.h"

namespace embedding {

class CallbackMetrics final : public prometheus::Collectable {
 public:
  // Adds a sample with `labels` to `family` (a counter or gauge family,
  // without samples), read from `read`; a family added again by name gets
  // the sample added to the first one's.
  void Add(prometheus::MetricFamily family, MetricLabels labels,
           std::function<int64_t()> read);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct Sample {
    MetricLabels labels;
    std::function<int64_t()> read;
  };
  struct Family {
    prometheus::MetricFamily family;  // Name, help and type only.
    std::vector<Sample> samples;
  };

  std::vector<Family> families_;
};

}  // namespace embedding

#endif  // SERVER_METRICS_CALLBACK_METRICS_H_
