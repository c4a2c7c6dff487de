// Reading collected metrics in tests: the sample of a family with given
// labels.
#ifndef TESTS_METRICS_METRIC_TESTING_H_
#define TESTS_METRICS_METRIC_TESTING_H_

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"

namespace embedding {

using LabelMap = std::map<std::string, std::string>;

inline LabelMap LabelsOf(const prometheus::ClientMetric& metric) {
  LabelMap labels;
  for (const auto& label : metric.label) labels[label.name] = label.value;
  return labels;
}

inline const prometheus::MetricFamily* FindFamily(
    const std::vector<prometheus::MetricFamily>& families,
    const std::string& name) {
  const auto it = std::find_if(
      families.begin(), families.end(),
      [&](const prometheus::MetricFamily& f) { return f.name == name; });
  return it == families.end() ? nullptr : &*it;
}

// The sample of family `name` whose labels are exactly `labels`.
inline std::optional<prometheus::ClientMetric> FindSample(
    const std::vector<prometheus::MetricFamily>& families,
    const std::string& name, const LabelMap& labels) {
  const prometheus::MetricFamily* family = FindFamily(families, name);
  if (family == nullptr) return std::nullopt;
  for (const prometheus::ClientMetric& metric : family->metric) {
    if (LabelsOf(metric) == labels) return metric;
  }
  return std::nullopt;
}

// A counter's or gauge's value; -1 when there is no such sample.
inline double ValueOf(const std::vector<prometheus::MetricFamily>& families,
                      const std::string& name, const LabelMap& labels) {
  const std::optional<prometheus::ClientMetric> metric =
      FindSample(families, name, labels);
  if (!metric.has_value()) return -1;
  const prometheus::MetricFamily* family = FindFamily(families, name);
  return family->type == prometheus::MetricType::Counter ? metric->counter.value
                                                         : metric->gauge.value;
}

}  // namespace embedding

#endif  // TESTS_METRICS_METRIC_TESTING_H_
