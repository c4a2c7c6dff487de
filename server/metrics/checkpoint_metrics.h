// CheckpointMetrics: how fresh each table's checkpoint is, for a server
// with a checkpoint directory, read when /metrics is scraped:
//
//   embedding_checkpoint_age_seconds{table}       since the newest
//       checkpoint saved or restored began
//   embedding_checkpoint_duration_seconds{table}  the last save's length
//       (tables saved since the server started)
//
//   exposer.RegisterCollectable(std::make_shared<CheckpointMetrics>(
//       &registry, [&](const std::string& table) { return times(table); }));
//
// Thread-safe when `times` is. A table without a checkpoint has no sample.
#ifndef SERVER_METRICS_CHECKPOINT_METRICS_H_
#define SERVER_METRICS_CHECKPOINT_METRICS_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/core/table_registry.h"

namespace embedding {

struct CheckpointTimes {
  absl::Time began;  // When the newest checkpoint's save began.
  std::optional<absl::Duration> last_save;  // Unset: none since the start.
};

class CheckpointMetrics final : public prometheus::Collectable {
 public:
  using TimesOf =
      std::function<std::optional<CheckpointTimes>(const std::string& table)>;

  // `registry` must outlive the collectable's last Collect; `clock` null
  // means absl::Now.
  CheckpointMetrics(const TableRegistry* registry, TimesOf times,
                    std::function<absl::Time()> clock = nullptr);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const TableRegistry* const registry_;
  const TimesOf times_;
  const std::function<absl::Time()> clock_;
};

}  // namespace embedding

#endif  // SERVER_METRICS_CHECKPOINT_METRICS_H_
