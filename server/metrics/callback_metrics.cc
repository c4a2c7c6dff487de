#include "server/metrics/callback_metrics.h"

#include <utility>

namespace embedding {

void CallbackMetrics::Add(prometheus::MetricFamily family, MetricLabels labels,
                          std::function<int64_t()> read) {
  Family* target = nullptr;
  for (Family& existing : families_) {
    if (existing.family.name == family.name) target = &existing;
  }
  if (target == nullptr) {
    target = &families_.emplace_back(Family{.family = std::move(family)});
  }
  target->samples.push_back({std::move(labels), std::move(read)});
}

std::vector<prometheus::MetricFamily> CallbackMetrics::Collect() const {
  std::vector<prometheus::MetricFamily> families;
  for (const Family& source : families_) {
    prometheus::MetricFamily& family = families.emplace_back(source.family);
    for (const Sample& sample : source.samples) {
      AddSample(family, sample.labels, static_cast<double>(sample.read()));
    }
  }
  return families;
}

}  // namespace embedding
