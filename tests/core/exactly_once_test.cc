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
  const absl::Status status = tracker.Claim("a", 0).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "client_id \"a\" needs a sequence > 0");
}

TEST(ExactlyOnceTest, SequenceOlderThanTheWindowIsFailedPrecondition) {
  ExactlyOnceTracker tracker;
  for (uint64_t s = 10; s < 10 + ExactlyOnceTracker::kWindow + 5; ++s) {
    ASSERT_TRUE(*tracker.Claim("a", s));
  }
  const absl::Status status = tracker.Claim("a", 1).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            "sequence 1 of client \"a\" is older than the last 4096 "
            "remembered; cannot tell whether it was applied");
  EXPECT_FALSE(*tracker.Claim("a", 10 + ExactlyOnceTracker::kWindow));
}

}  // namespace
}  // namespace embedding
