#include "server/metrics/atomic_histogram.h"

#include <cmath>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace embedding {
namespace {

std::vector<uint64_t> Cumulative(const AtomicHistogram& histogram) {
  std::vector<uint64_t> counts;
  for (const auto& bucket : histogram.Collect().bucket) {
    counts.push_back(bucket.cumulative_count);
  }
  return counts;
}

TEST(AtomicHistogramTest, EmptyHasZeroBucketsAndAnInfBucket) {
  AtomicHistogram histogram({1, 2});
  const auto collected = histogram.Collect();
  ASSERT_EQ(collected.bucket.size(), 3u);
  EXPECT_EQ(collected.bucket[0].upper_bound, 1);
  EXPECT_EQ(collected.bucket[1].upper_bound, 2);
  EXPECT_TRUE(std::isinf(collected.bucket[2].upper_bound));
  EXPECT_EQ(collected.sample_count, 0u);
  EXPECT_EQ(collected.sample_sum, 0);
}

TEST(AtomicHistogramTest, BucketsAreCumulativeAndUpperBoundsInclusive) {
  AtomicHistogram histogram({1, 2, 4});
  for (double value : {0.5, 1.0, 1.5, 2.0, 3.0, 100.0}) {
    histogram.Observe(value);
  }
  // le=1: 0.5, 1.0; le=2: + 1.5, 2.0; le=4: + 3.0; +Inf: + 100.
  EXPECT_EQ(Cumulative(histogram), (std::vector<uint64_t>{2, 4, 5, 6}));
  const auto collected = histogram.Collect();
  EXPECT_EQ(collected.sample_count, 6u);
  EXPECT_DOUBLE_EQ(collected.sample_sum, 108.0);
}

TEST(AtomicHistogramTest, ConcurrentObservesAllCount) {
  AtomicHistogram histogram({1, 10});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&histogram, t] {
      // Thread t observes t (bucket 1 for t <= 1, bucket 10 beyond).
      for (int i = 0; i < kPerThread; ++i) histogram.Observe(t);
    });
  }
  for (std::thread& thread : threads) thread.join();
  const auto collected = histogram.Collect();
  EXPECT_EQ(collected.sample_count, uint64_t{kThreads * kPerThread});
  EXPECT_EQ(collected.bucket[0].cumulative_count, uint64_t{2 * kPerThread});
  EXPECT_EQ(collected.bucket[1].cumulative_count,
            uint64_t{kThreads * kPerThread});
  // Integers up to 2^53 add exactly in a double.
  EXPECT_EQ(collected.sample_sum, double{(0 + 1 + 2 + 3) * kPerThread});
}

}  // namespace
}  // namespace embedding
