#include "server/metrics/atomic_histogram.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace embedding {

AtomicHistogram::AtomicHistogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]()) {}

void AtomicHistogram::Observe(double value) {
  // The first bound >= value: buckets are `le` (less or equal).
  const size_t bucket =
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

prometheus::ClientMetric::Histogram AtomicHistogram::Collect() const {
  prometheus::ClientMetric::Histogram histogram;
  histogram.bucket.reserve(bounds_.size() + 1);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    histogram.bucket.push_back(
        {.cumulative_count = cumulative,
         .upper_bound = i < bounds_.size()
                            ? bounds_[i]
                            : std::numeric_limits<double>::infinity()});
  }
  histogram.sample_count = cumulative;
  histogram.sample_sum = sum_.load(std::memory_order_relaxed);
  return histogram;
}

}  // namespace embedding
