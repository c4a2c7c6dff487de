// CallGate: which calls get in (serving, restoring, draining) and a drain
// that waits for exactly the calls under way, up to its deadline.
#include "server/service/call_gate.h"

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

TEST(CallGateTest, ServesRefusesWhileRestoringAndForGoodOnceDraining) {
  CallGate gate;
  ASSERT_TRUE(gate.Enter().ok());
  gate.Exit();
  gate.SetRestoring(true);
  EXPECT_EQ(gate.Enter(), absl::UnavailableError("restoring checkpoints"));
  gate.SetRestoring(false);
  ASSERT_TRUE(gate.Enter().ok());
  gate.Exit();

  EXPECT_EQ(gate.Drain(absl::Now()), 0);
  EXPECT_TRUE(gate.draining());
  const absl::Status shutting_down =
      absl::UnavailableError("the server is shutting down");
  EXPECT_EQ(gate.Enter(), shutting_down);
  gate.SetRestoring(false);
  gate.SetRestoring(true);
  EXPECT_EQ(gate.Enter(), shutting_down);
}

TEST(CallGateTest, DrainWaitsForTheCallUnderWay) {
  CallGate gate;
  ASSERT_TRUE(gate.Enter().ok());
  absl::Notification draining;
  std::thread call([&] {
    while (!gate.draining()) absl::SleepFor(absl::Milliseconds(1));
    draining.Notify();
    absl::SleepFor(absl::Milliseconds(50));
    gate.Exit();
  });
  const absl::Time start = absl::Now();
  EXPECT_EQ(gate.Drain(start + absl::Seconds(30)), 0);
  EXPECT_TRUE(draining.HasBeenNotified());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  call.join();
}

TEST(CallGateTest, DrainGivesUpAtItsDeadline) {
  CallGate gate;
  ASSERT_TRUE(gate.Enter().ok());
  ASSERT_TRUE(gate.Enter().ok());
  EXPECT_EQ(gate.Drain(absl::Now() + absl::Milliseconds(20)), 2);
  gate.Exit();
  gate.Exit();
  EXPECT_EQ(gate.Drain(absl::Now()), 0);
}

}  // namespace
}  // namespace embedding
