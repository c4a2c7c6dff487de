// CallGate: which calls get in (serving, restoring, draining, streams over
// the limit), a drain that waits for exactly the calls under way and aborts
// them before its deadline, and the Cancellation a call sees. Ending real
// streams (drain, idle timeout) is tested over a port in
// service_limits_test.
#include "server/service/call_gate.h"

#include <grpcpp/server_context.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
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

TEST(CallGateTest, DrainAbortsRunningCallsSoTheyEndByTheDeadline) {
  CallGate gate;
  ASSERT_TRUE(gate.Enter().ok());
  absl::Status stopped;
  // A long call that checks its cancellation, as the engine's loops do.
  std::thread call([&] {
    const CallCancellation cancel(nullptr, &gate);
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    while (!cancel.IsCancelled() && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    if (cancel.IsCancelled()) stopped = cancel.Status();
    gate.Exit();
  });
  // Returns 0: the call saw the abort (a tenth of the grace before the
  // deadline) and ended in time.
  EXPECT_EQ(gate.Drain(absl::Now() + absl::Milliseconds(500)), 0);
  call.join();
  EXPECT_TRUE(gate.aborting());
  EXPECT_EQ(stopped, absl::UnavailableError("the server is shutting down"));
}

TEST(CallGateTest, DrainDoesNotAbortCallsThatEndInTime) {
  CallGate gate;
  ASSERT_TRUE(gate.Enter().ok());
  std::thread call([&] {
    absl::SleepFor(absl::Milliseconds(20));
    gate.Exit();
  });
  EXPECT_EQ(gate.Drain(absl::Now() + absl::Seconds(30)), 0);
  call.join();
  EXPECT_FALSE(gate.aborting());
}

TEST(CallGateTest, AQuietPauseStartsAfterTheLastCallRefused) {
  CallGate gate;
  gate.Drain(absl::Now());
  ASSERT_FALSE(gate.Enter().ok());
  const absl::Time refused = absl::Now();
  const absl::Duration quiet = absl::Milliseconds(50);
  EXPECT_TRUE(gate.AwaitQuiet(quiet, absl::InfiniteFuture()));
  EXPECT_GE(absl::Now(), refused + quiet);
}

TEST(CallGateTest, AQuietPauseEndsAtItsDeadline) {
  CallGate gate;
  gate.Drain(absl::Now());
  // A pause longer than the time left is cut short, not quiet.
  EXPECT_FALSE(
      gate.AwaitQuiet(absl::Hours(1), absl::Now() + absl::Milliseconds(20)));
}

TEST(CallGateTest, StreamsPastTheLimitAreResourceExhausted) {
  CallGate gate(/*max_open_streams=*/2, absl::InfiniteDuration());
  grpc::ServerContext a, b, c;
  ASSERT_TRUE(gate.EnterStream(&a).ok());
  ASSERT_TRUE(gate.EnterStream(&b).ok());
  const absl::Status refused = gate.EnterStream(&c);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.message()),
              ::testing::HasSubstr("the limit is 2 (--max_open_streams)"));
  EXPECT_EQ(gate.open_streams(), 2);
  // Unary calls are not streams.
  ASSERT_TRUE(gate.Enter().ok());
  gate.Exit();
  gate.ExitStream(&a);
  ASSERT_TRUE(gate.EnterStream(&c).ok());
  gate.ExitStream(&b);
  gate.ExitStream(&c);
  EXPECT_EQ(gate.Drain(absl::Now()), 0);
}

TEST(CallGateTest, ADrainingStreamMayFinishItsRequestButNotReadAnother) {
  CallGate gate;
  grpc::ServerContext context;
  ASSERT_TRUE(gate.EnterStream(&context).ok());
  std::thread drain([&] { gate.Drain(absl::Now() + absl::Seconds(30)); });
  while (!gate.draining()) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_TRUE(gate.SetActivity(&context, StreamActivity::kWriting).ok());
  EXPECT_TRUE(gate.SetActivity(&context, StreamActivity::kWorking).ok());
  EXPECT_EQ(gate.SetActivity(&context, StreamActivity::kReading),
            absl::UnavailableError("the server is shutting down"));
  gate.ExitStream(&context);
  drain.join();
}

TEST(CallCancellationTest, IsCancelledOnlyOnceTheGateAborts) {
  CallGate gate;
  const CallCancellation cancel(nullptr, &gate);
  EXPECT_FALSE(cancel.IsCancelled());
  ASSERT_TRUE(gate.Enter().ok());
  EXPECT_EQ(gate.Drain(absl::Now()), 1);  // No time: aborts at once.
  EXPECT_TRUE(cancel.IsCancelled());
  EXPECT_EQ(cancel.Status(),
            absl::UnavailableError("the server is shutting down"));
  gate.Exit();
}

}  // namespace
}  // namespace embedding
