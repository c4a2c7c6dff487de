// Building prometheus::MetricFamily values at scrape time, for the
// collectables of this directory (prometheus::Registry's families lock on
// every new label set; ours are read from the server's own counters when
// /metrics is scraped).
//
//   prometheus::MetricFamily rows = CounterFamily(
//       "embedding_table_rows_looked_up_total", "Rows served by lookups.");
//   AddSample(rows, {{"table", "users"}}, 1234);
//
// Thread-compatible: plain functions over values.
#ifndef SERVER_METRICS_METRIC_FAMILIES_H_
#define SERVER_METRICS_METRIC_FAMILIES_H_

#include <string>
#include <vector>

#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"

namespace embedding {

using MetricLabels = std::vector<prometheus::ClientMetric::Label>;

prometheus::MetricFamily CounterFamily(std::string name, std::string help);
prometheus::MetricFamily GaugeFamily(std::string name, std::string help);
prometheus::MetricFamily HistogramFamily(std::string name, std::string help);

// Appends a sample of a counter or gauge family.
void AddSample(prometheus::MetricFamily& family, MetricLabels labels,
               double value);

// Appends a histogram sample.
void AddSample(prometheus::MetricFamily& family, MetricLabels labels,
               prometheus::ClientMetric::Histogram histogram);

}  // namespace embedding

#endif  // SERVER_METRICS_METRIC_FAMILIES_H_
