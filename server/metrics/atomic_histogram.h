// AtomicHistogram: a Prometheus histogram whose Observe takes no lock, for
// the RPC hot path (prometheus::Histogram::Observe locks a mutex).
//
//   AtomicHistogram latency({0.001, 0.01, 0.1, 1});
//   latency.Observe(0.004);                // From any thread.
//   prometheus::ClientMetric::Histogram h = latency.Collect();
//
// Thread-safe. Observe is a search of the bounds plus two relaxed atomic
// additions (the bucket, the sum). Relaxed is enough: the counts publish
// nothing, and a scrape that races an Observe may see its bucket without its
// sum (or the reverse); the count is the sum of the buckets, so the
// cumulative buckets and _count always agree.
#ifndef SERVER_METRICS_ATOMIC_HISTOGRAM_H_
#define SERVER_METRICS_ATOMIC_HISTOGRAM_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "prometheus/client_metric.h"

namespace embedding {

class AtomicHistogram {
 public:
  // `bounds`: the buckets' upper bounds (inclusive, as Prometheus's `le`),
  // strictly increasing and finite; a +Inf bucket is added.
  explicit AtomicHistogram(std::vector<double> bounds);

  AtomicHistogram(const AtomicHistogram&) = delete;
  AtomicHistogram& operator=(const AtomicHistogram&) = delete;

  void Observe(double value);

  // The buckets as Prometheus wants them: cumulative counts, the +Inf
  // bucket last, sample_count equal to it.
  prometheus::ClientMetric::Histogram Collect() const;

  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  // Per bucket, not cumulative: bounds_.size() + 1 (the last is +Inf).
  const std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

}  // namespace embedding

#endif  // SERVER_METRICS_ATOMIC_HISTOGRAM_H_
