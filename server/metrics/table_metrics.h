// TableMetrics: the tables of a TableRegistry as Prometheus metrics, read
// when /metrics is scraped (the hot path only bumps each table's relaxed
// counters, server/core/table_counters.h):
//
//   embedding_table_rows_looked_up_total{table}   Lookup, LookupBag
//   embedding_table_rows_read_total{table}        ReadRows
//   embedding_table_rows_updated_total{table}     rows pushes stepped
//   embedding_table_rows_written_total{table}     WriteRows
//   embedding_table_pushes_total{table}           pushes answered
//   embedding_table_duplicate_pushes_total{table} retries not applied again
//   embedding_table_rows{table}, embedding_table_memory_bytes{table}
//   embedding_memory_budget_bytes, embedding_memory_used_bytes
//
//   exposer.RegisterCollectable(std::make_shared<TableMetrics>(&registry));
//
// Thread-safe. A table's counters start at zero when it is created or
// restored (a counter reset, as Prometheus expects after a restart).
#ifndef SERVER_METRICS_TABLE_METRICS_H_
#define SERVER_METRICS_TABLE_METRICS_H_

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/core/table_registry.h"

namespace embedding {

class TableMetrics final : public prometheus::Collectable {
 public:
  // `registry` must outlive the collectable's last Collect.
  explicit TableMetrics(const TableRegistry* registry) : registry_(registry) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const TableRegistry* const registry_;
};

}  // namespace embedding

#endif  // SERVER_METRICS_TABLE_METRICS_H_
