#include "server/metrics/table_metrics.h"

#include <cstdint>
#include <utility>

#include "server/metrics/metric_families.h"

namespace embedding {
namespace {

// A per-table metric: its family and how to read it from a table's stats.
struct TableMetric {
  prometheus::MetricFamily family;
  int64_t (*read)(const TableStats& stats);
  bool dynamic_only = false;  // Only dynamic tables have a sample.
};

// A counter of dynamic tables: one field of their DynamicCounts.
template <int64_t DynamicCounts::*field>
TableMetric DynamicCounter(const char* name, const char* help) {
  return {CounterFamily(name, help),
          [](const TableStats& s) { return (*s.dynamic).*field; },
          /*dynamic_only=*/true};
}

std::vector<TableMetric> TableMetricFamilies() {
  std::vector<TableMetric> metrics;
  metrics.push_back(
      {CounterFamily("embedding_table_rows_looked_up_total",
                     "Indices served by Lookup, LookupBag and LookupStream "
                     "(a repeated index counts each time)."),
       [](const TableStats& s) { return s.counts.rows_looked_up; }});
  metrics.push_back({CounterFamily("embedding_table_rows_read_total",
                                   "Rows copied out by ReadRows (exports)."),
                     [](const TableStats& s) { return s.counts.rows_read; }});
  metrics.push_back(
      {CounterFamily("embedding_table_rows_updated_total",
                     "Rows stepped by the optimizer: the distinct rows of "
                     "each push applied."),
       [](const TableStats& s) { return s.counts.rows_updated; }});
  metrics.push_back(
      {CounterFamily("embedding_table_rows_written_total",
                     "Rows overwritten by WriteRows."),
       [](const TableStats& s) { return s.counts.rows_written; }});
  metrics.push_back(
      {CounterFamily("embedding_table_pushes_total",
                     "Pushes (PushGradients, PushBagGradients) answered: "
                     "applied, or recognised as duplicates."),
       [](const TableStats& s) { return s.counts.pushes; }});
  metrics.push_back(
      {CounterFamily("embedding_table_duplicate_pushes_total",
                     "Pushes exactly-once recognised as retries of a push "
                     "already applied, and did not apply again."),
       [](const TableStats& s) { return s.counts.duplicate_pushes; }});
  metrics.push_back({GaugeFamily("embedding_table_rows",
                                 "Rows of the table this server holds."),
                     [](const TableStats& s) { return s.local_rows; }});
  metrics.push_back(
      {GaugeFamily("embedding_table_memory_bytes",
                   "Bytes of the table's weights and optimizer state on this "
                   "server."),
       [](const TableStats& s) { return s.memory_bytes; }});
  metrics.push_back(DynamicCounter<&DynamicCounts::admissions>(
      "embedding_table_admissions_total",
      "Dynamic tables: ids given a row by a push."));
  metrics.push_back(DynamicCounter<&DynamicCounts::evictions>(
      "embedding_table_evictions_total",
      "Dynamic tables: rows removed to make room for another id."));
  metrics.push_back(DynamicCounter<&DynamicCounts::dropped_rows>(
      "embedding_table_dropped_rows_total",
      "Dynamic tables: gradient rows dropped because their id had no row "
      "yet (admit_after)."));
  metrics.push_back(DynamicCounter<&DynamicCounts::absent_rows_looked_up>(
      "embedding_table_absent_rows_looked_up_total",
      "Dynamic tables: looked-up ids holding no row (they read the "
      "initializer's values)."));
  return metrics;
}

}  // namespace

std::vector<prometheus::MetricFamily> TableMetrics::Collect() const {
  std::vector<TableMetric> metrics = TableMetricFamilies();
  for (const TableStats& stats : registry_->List()) {
    for (TableMetric& metric : metrics) {
      if (metric.dynamic_only && !stats.dynamic.has_value()) continue;
      AddSample(metric.family, {{"table", stats.spec.name}},
                static_cast<double>(metric.read(stats)));
    }
  }
  std::vector<prometheus::MetricFamily> families;
  for (TableMetric& metric : metrics) {
    families.push_back(std::move(metric.family));
  }
  prometheus::MetricFamily budget = GaugeFamily(
      "embedding_memory_budget_bytes",
      "Bytes all tables may take together (--memory_budget_bytes); 0: no "
      "limit.");
  AddSample(budget, {}, static_cast<double>(registry_->memory_budget_bytes()));
  families.push_back(std::move(budget));
  prometheus::MetricFamily used = GaugeFamily(
      "embedding_memory_used_bytes",
      "Bytes counted against the memory budget: live tables (deleted ones "
      "still in use included) and checkpoint pre-images.");
  AddSample(used, {}, static_cast<double>(registry_->memory_used_bytes()));
  families.push_back(std::move(used));
  return families;
}

}  // namespace embedding
