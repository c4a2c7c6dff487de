#include "server/core/exactly_once.h"

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

// A clock the test moves by hand.
struct TestClock {
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  std::function<absl::Time()> Function() {
    return [this] { return now; };
  }
};

ExactlyOnceOptions Options(TestClock& clock, int64_t max_clients = 16384,
                           int64_t max_forgotten = 65536) {
  return {.idle = absl::Seconds(10),
          .max_clients = max_clients,
          .max_forgotten = max_forgotten,
          .clock = clock.Function()};
}

// The code of a claim (OK when it succeeds, whatever it returns).
absl::StatusCode ClaimCode(ExactlyOnceTracker& tracker, absl::string_view id,
                           uint64_t sequence) {
  return tracker.Claim(id, sequence).status().code();
}

// A tracker forgetting clients idle for 10 s of a clock the test moves.
class IdleTest : public ::testing::Test {
 protected:
  TestClock clock;
  ExactlyOnceTracker tracker{Options(clock)};
};

constexpr absl::StatusCode kFailedPrecondition =
    absl::StatusCode::kFailedPrecondition;

constexpr char kForgottenA[] =
    "client_id \"a\" was forgotten after being idle for more than 10s; its "
    "pushes cannot be told apart from retries of pushes already applied, so "
    "none is applied: use a new client_id";

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

// Issue 10: client ids had no length limit (40 pushes with 4 MB ids kept
// 182 MB) and came back whole in messages.
TEST(ExactlyOnceTest, ClientIdLongerThanTheLimitIsInvalidArgument) {
  ExactlyOnceTracker tracker;
  EXPECT_TRUE(*tracker.Claim(std::string(256, 'c'), 1));
  const std::string long_id(4 << 20, 'c');
  for (uint64_t sequence : {0, 1}) {
    const absl::Status status = tracker.Claim(long_id, sequence).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(),
              "client_id \"" + std::string(64, 'c') +
                  "\"... (4194304 bytes) is longer than 256 bytes");
  }
  EXPECT_EQ(tracker.Export().size(), 1u);
}

// Issue 10: exactly-once state grew with every client id ever seen. A client
// idle for longer than the window is forgotten, and every later push of it,
// a retry of sequence 1 included, is refused.
TEST_F(IdleTest, IdleClientIsForgottenAndItsPushesRefused) {
  ASSERT_TRUE(*tracker.Claim("a", 1));
  ASSERT_TRUE(*tracker.Claim("b", 1));
  clock.now += absl::Seconds(6);
  ASSERT_FALSE(*tracker.Claim("b", 1));  // A retry is activity too.
  clock.now += absl::Seconds(5);         // a: idle 11 s, b: 5 s.
  for (uint64_t sequence : {1, 2, 100}) {
    const absl::Status status = tracker.Claim("a", sequence).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(status.message(), kForgottenA);
  }
  EXPECT_FALSE(*tracker.Claim("b", 1));
  EXPECT_TRUE(*tracker.Claim("b", 2));
  EXPECT_EQ(tracker.Export(), (std::vector<ClientWindow>{{"b", {1, 2}}}));
  // Still refused much later: the id stays forgotten.
  clock.now += absl::Hours(100);
  EXPECT_EQ(ClaimCode(tracker, "a", 1), kFailedPrecondition);
}

TEST_F(IdleTest, ClientIdleForExactlyTheWindowIsKept) {
  ASSERT_TRUE(*tracker.Claim("a", 1));
  clock.now += absl::Seconds(10);
  EXPECT_FALSE(*tracker.Claim("a", 1));
}

TEST(ExactlyOnceTest, NewClientMayStartAtAnySequence) {
  ExactlyOnceTracker tracker;
  EXPECT_TRUE(*tracker.Claim("restored", 5000));
  EXPECT_TRUE(*tracker.Claim("restored", 4999));
  EXPECT_FALSE(*tracker.Claim("restored", 5000));
}

TEST(ExactlyOnceTest, TooManyClientsIsResourceExhaustedUntilSomeGoIdle) {
  TestClock clock;
  ExactlyOnceTracker tracker(Options(clock, /*max_clients=*/2));
  ASSERT_TRUE(*tracker.Claim("a", 1));
  clock.now += absl::Seconds(5);
  ASSERT_TRUE(*tracker.Claim("b", 1));
  const absl::Status status = tracker.Claim("c", 1).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(),
            "exactly-once tracking of this table holds its maximum of 2 "
            "clients, each active within the last 10s; client_id \"c\" "
            "cannot be added");
  EXPECT_FALSE(*tracker.Claim("a", 1));  // Known clients go on.
  clock.now += absl::Seconds(11);        // b idle; a pushed 11 s ago.
  EXPECT_TRUE(*tracker.Claim("c", 1));
  EXPECT_EQ(ClaimCode(tracker, "b", 1), kFailedPrecondition);
}

// The price of bounded memory: the oldest forgotten ids are dropped, and
// such an id is then a new client again.
TEST(ExactlyOnceTest, OnlyTheLastMaxForgottenIdsAreRemembered) {
  TestClock clock;
  ExactlyOnceTracker tracker(Options(clock, 16384, /*max_forgotten=*/2));
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(*tracker.Claim(id, 1));
  clock.now += absl::Seconds(11);
  ASSERT_TRUE(*tracker.Claim("d", 1));  // Forgets a, b, c; keeps b and c.
  EXPECT_TRUE(*tracker.Claim("a", 1));
  EXPECT_EQ(ClaimCode(tracker, "b", 1), kFailedPrecondition);
  EXPECT_EQ(ClaimCode(tracker, "c", 1), kFailedPrecondition);
}

TEST_F(IdleTest, ExportLeavesIdleClientsOutAndImportRestartsTheirTime) {
  ASSERT_TRUE(*tracker.Claim("a", 1));
  clock.now += absl::Seconds(6);
  ASSERT_TRUE(*tracker.Claim("b", 3));
  clock.now += absl::Seconds(6);
  const std::vector<ClientWindow> windows = tracker.Export();
  EXPECT_EQ(windows, (std::vector<ClientWindow>{{"b", {3}}}));
  ExactlyOnceTracker restored(Options(clock));
  ASSERT_TRUE(restored.Import(windows).ok());
  clock.now += absl::Seconds(9);  // b: 15 s since its push, 9 since import.
  EXPECT_FALSE(*restored.Claim("b", 3));
}

TEST(ExactlyOnceTest, SetOptionsRestartsIdleTimeOnTheNewClock) {
  ExactlyOnceTracker tracker;  // The real clock.
  ASSERT_TRUE(*tracker.Claim("a", 1));
  TestClock clock;
  tracker.SetOptions(Options(clock));
  clock.now += absl::Seconds(10);
  EXPECT_FALSE(*tracker.Claim("a", 1));
  clock.now += absl::Seconds(11);
  EXPECT_EQ(ClaimCode(tracker, "a", 1), kFailedPrecondition);
}

TEST(ExactlyOnceTest, WindowIsTheLastSequencesUpToTheHighest) {
  ExactlyOnceTracker tracker;
  constexpr uint64_t kWindow = ExactlyOnceTracker::kWindow;
  ASSERT_TRUE(*tracker.Claim("a", 1));
  ASSERT_TRUE(*tracker.Claim("a", 10000));
  // (10000 - kWindow, 10000] is remembered; below it is too old.
  EXPECT_EQ(ClaimCode(tracker, "a", 1), kFailedPrecondition);
  EXPECT_EQ(ClaimCode(tracker, "a", 10000 - kWindow), kFailedPrecondition);
  EXPECT_TRUE(*tracker.Claim("a", 10001 - kWindow));
  EXPECT_FALSE(*tracker.Claim("a", 10001 - kWindow));
  EXPECT_EQ(tracker.Export(),
            (std::vector<ClientWindow>{{"a", {10001 - kWindow, 10000}}}));
  // Moving up forgets what fell out, and bits are reused correctly.
  EXPECT_TRUE(*tracker.Claim("a", 10000 + kWindow - 1));
  EXPECT_TRUE(*tracker.Claim("a", 10001));
  EXPECT_FALSE(*tracker.Claim("a", 10000));
}

TEST(ExactlyOnceTest, LargestSequencesWork) {
  ExactlyOnceTracker tracker;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  ASSERT_TRUE(*tracker.Claim("a", kMax - 1));
  ASSERT_TRUE(*tracker.Claim("a", kMax));
  EXPECT_FALSE(*tracker.Claim("a", kMax - 1));
  EXPECT_EQ(tracker.Export(),
            (std::vector<ClientWindow>{{"a", {kMax - 1, kMax}}}));
  ExactlyOnceTracker restored;
  ASSERT_TRUE(restored.Import(tracker.Export()).ok());
  EXPECT_FALSE(*restored.Claim("a", kMax));
}

TEST(ExactlyOnceTest, ImportDropsWhatTheWindowCannotHoldAndLongIds) {
  ExactlyOnceTracker tracker;
  ASSERT_TRUE(
      tracker
          .Import(
              {{"a", {1, 2, 5000}}, {std::string(257, 'x'), {1}}, {"e", {}}})
          .ok());
  EXPECT_EQ(tracker.Export(),
            (std::vector<ClientWindow>{{"a", {5000}}, {"e", {}}}));
  EXPECT_EQ(ClaimCode(tracker, "a", 2), kFailedPrecondition);
  EXPECT_TRUE(*tracker.Claim("e", 1));
}

}  // namespace
}  // namespace embedding
