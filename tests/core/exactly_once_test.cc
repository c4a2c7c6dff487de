#include "server/core/exactly_once.h"

#include "gtest/gtest.h"

namespace embedding {
namespace {

TEST(ExactlyOnceTest, SecondClaimOfASequenceIsADuplicate) {
  ExactlyOnceTracker tracker;
  EXPECT_TRUE(*tracker.Claim("a", 1));
  EXPECT_FALSE(*tracker.Claim("a", 1));
  EXPECT_TRUE(*tracker.Claim("b", 1));
  EXPECT_TRUE(*tracker.Claim("a", 3));
  EXPECT_TRUE(*tracker.Claim("a", 2));  // Out of order, still new.
}

TEST(ExactlyOnceTest, SequenceZeroIsInvalidArgument) {
  ExactlyOnceTracker tracker;
  EXPECT_EQ(tracker.Claim("a", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ExactlyOnceTest, SequenceOlderThanTheWindowIsFailedPrecondition) {
  ExactlyOnceTracker tracker;
  for (uint64_t s = 10; s < 10 + ExactlyOnceTracker::kWindow + 5; ++s) {
    ASSERT_TRUE(*tracker.Claim("a", s));
  }
  EXPECT_EQ(tracker.Claim("a", 1).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(*tracker.Claim("a", 10 + ExactlyOnceTracker::kWindow));
}

}  // namespace
}  // namespace embedding
