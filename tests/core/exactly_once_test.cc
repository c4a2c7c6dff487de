#include "server/core/exactly_once.h"

#include <vector>

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

TEST(ExactlyOnceTest, ImportedWindowsRecogniseRetries) {
  ExactlyOnceTracker tracker;
  ASSERT_TRUE(*tracker.Claim("b", 5));
  ASSERT_TRUE(*tracker.Claim("a", 2));
  ASSERT_TRUE(*tracker.Claim("a", 1));
  const std::vector<ClientWindow> windows = tracker.Export();
  EXPECT_EQ(windows, (std::vector<ClientWindow>{{"a", {1, 2}}, {"b", {5}}}));
  ExactlyOnceTracker restored;
  ASSERT_TRUE(*restored.Claim("z", 1));  // Replaced by the import.
  ASSERT_TRUE(restored.Import(windows).ok());
  EXPECT_FALSE(*restored.Claim("a", 2));
  EXPECT_TRUE(*restored.Claim("a", 3));
  EXPECT_TRUE(*restored.Claim("z", 1));
  EXPECT_EQ(restored.Export().size(), 3);
}

TEST(ExactlyOnceTest, BadWindowsAreInvalidArgumentAndChangeNothing) {
  ExactlyOnceTracker tracker;
  ASSERT_TRUE(*tracker.Claim("a", 1));
  const struct {
    std::vector<ClientWindow> windows;
    const char* message;
  } cases[] = {
      {{{"", {1}}}, "exactly-once window has no client_id"},
      {{{"a", {3, 2}}},
       "exactly-once window of client \"a\": sequence 2 at position 1 is 0 "
       "or not ascending"},
      {{{"a", {0}}},
       "exactly-once window of client \"a\": sequence 0 at position 0 is 0 "
       "or not ascending"},
      {{{"a", {1}}, {"a", {2}}},
       "exactly-once window of client \"a\" appears twice"},
      {{{"a", std::vector<uint64_t>(ExactlyOnceTracker::kWindow + 1, 1)}},
       "exactly-once window of client \"a\" has 4097 sequences, more than "
       "4096"},
  };
  for (const auto& c : cases) {
    const absl::Status status = tracker.Import(c.windows);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), c.message);
  }
  EXPECT_EQ(tracker.Export(), (std::vector<ClientWindow>{{"a", {1}}}));
}

}  // namespace
}  // namespace embedding
