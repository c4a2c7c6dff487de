#include "server/metrics/metric_families.h"

#include <utility>

namespace embedding {
namespace {

prometheus::MetricFamily Family(std::string name, std::string help,
                                prometheus::MetricType type) {
  return {.name = std::move(name), .help = std::move(help), .type = type};
}

}  // namespace

prometheus::MetricFamily CounterFamily(std::string name, std::string help) {
  return Family(std::move(name), std::move(help),
                prometheus::MetricType::Counter);
}

prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  return Family(std::move(name), std::move(help),
                prometheus::MetricType::Gauge);
}

prometheus::MetricFamily HistogramFamily(std::string name, std::string help) {
  return Family(std::move(name), std::move(help),
                prometheus::MetricType::Histogram);
}

void AddSample(prometheus::MetricFamily& family, MetricLabels labels,
               double value) {
  prometheus::ClientMetric& metric = family.metric.emplace_back();
  metric.label = std::move(labels);
  if (family.type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
}

void AddSample(prometheus::MetricFamily& family, MetricLabels labels,
               prometheus::ClientMetric::Histogram histogram) {
  prometheus::ClientMetric& metric = family.metric.emplace_back();
  metric.label = std::move(labels);
  metric.histogram = std::move(histogram);
}

}  // namespace embedding
