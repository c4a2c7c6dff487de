#include "server/metrics/checkpoint_metrics.h"

#include <utility>

#include "absl/time/clock.h"
#include "server/metrics/metric_families.h"

namespace embedding {

CheckpointMetrics::CheckpointMetrics(const TableRegistry* registry,
                                     TimesOf times,
                                     std::function<absl::Time()> clock)
    : registry_(registry),
      times_(std::move(times)),
      clock_(clock != nullptr ? std::move(clock) : [] { return absl::Now(); }) {
}

std::vector<prometheus::MetricFamily> CheckpointMetrics::Collect() const {
  prometheus::MetricFamily age = GaugeFamily(
      "embedding_checkpoint_age_seconds",
      "Seconds since the newest checkpoint of the table (saved or restored) "
      "began.");
  prometheus::MetricFamily duration = GaugeFamily(
      "embedding_checkpoint_duration_seconds",
      "Seconds the last checkpoint save of the table took (tables saved "
      "since the server started).");
  const absl::Time now = clock_();
  for (const TableStats& stats : registry_->List()) {
    const std::optional<CheckpointTimes> times = times_(stats.spec.name);
    if (!times.has_value()) continue;
    const MetricLabels labels = {{"table", stats.spec.name}};
    AddSample(age, labels, absl::ToDoubleSeconds(now - times->began));
    if (times->last_save.has_value()) {
      AddSample(duration, labels, absl::ToDoubleSeconds(*times->last_save));
    }
  }
  std::vector<prometheus::MetricFamily> families;
  families.push_back(std::move(age));
  families.push_back(std::move(duration));
  return families;
}

}  // namespace embedding
