#include "server/service/call_gate.h"

#include <grpc/grpc.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace embedding {
namespace {

constexpr char kShuttingDown[] = "the server is shutting down";

}  // namespace

CallGate::CallGate(int max_open_streams, absl::Duration stream_idle_timeout)
    : max_open_streams_(max_open_streams),
      stream_idle_timeout_(stream_idle_timeout) {
  if (stream_idle_timeout_ != absl::InfiniteDuration()) {
    reaper_ = std::thread(&CallGate::ReapIdleStreams, this);
  }
}

CallGate::~CallGate() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    reaper_wake_.Signal();
  }
  if (reaper_.joinable()) reaper_.join();
}

void CallGate::SetRestoring(bool restoring) {
  int from = restoring ? kServing : kRestoring;
  state_.compare_exchange_strong(from, restoring ? kRestoring : kServing);
}

absl::Status CallGate::Enter() {
  running_.fetch_add(1);
  switch (state_.load()) {
    case kServing:
      return absl::OkStatus();
    case kRestoring:
      Exit();
      return absl::UnavailableError("restoring checkpoints");
    default:
      last_arrival_unix_ns_.store(absl::ToUnixNanos(absl::Now()),
                                  std::memory_order_relaxed);
      Exit();
      return absl::UnavailableError(kShuttingDown);
  }
}

void CallGate::Exit() {
  if (running_.fetch_sub(1) == 1 && state_.load() == kDraining) Notify();
}

absl::Status CallGate::EnterStream(grpc::ServerContext* context) {
  {
    absl::MutexLock lock(&mu_);
    if (static_cast<int64_t>(streams_.size()) >= max_open_streams_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          streams_.size(),
          " streams (LookupStream, ReadRows) are open; the "
          "limit is ",
          max_open_streams_,
          " (--max_open_streams); retry later or use unary calls"));
    }
    streams_[context] = Stream{.since = absl::Now()};
  }
  // After the insertion: a Drain that this Enter does not see has not yet
  // looked at the streams, and will see this one.
  absl::Status status = Enter();
  if (!status.ok()) {
    absl::MutexLock lock(&mu_);
    streams_.erase(context);
  }
  return status;
}

void CallGate::ExitStream(grpc::ServerContext* context) {
  {
    absl::MutexLock lock(&mu_);
    streams_.erase(context);
  }
  Exit();
}

absl::Status CallGate::SetActivity(grpc::ServerContext* context,
                                   StreamActivity activity) {
  absl::MutexLock lock(&mu_);
  // Under the lock, against Drain's pass over the streams: either Drain
  // sees this stream reading and ends it, or this sees the drain.
  if (activity == StreamActivity::kReading && draining()) {
    return absl::UnavailableError(kShuttingDown);
  }
  const auto it = streams_.find(context);
  if (it != streams_.end()) {
    it->second.activity = activity;
    it->second.since = absl::Now();
  }
  return absl::OkStatus();
}

void CallGate::EndStream(grpc::ServerContext* context, Stream& stream,
                         const char* message) {
  if (stream.ended || context->c_call() == nullptr) return;  // Not a call.
  stream.ended = true;
  // TryCancel with another status: the client sees UNAVAILABLE and
  // `message` (the server sends them as trailers), not CANCELLED.
  grpc_call_cancel_with_status(context->c_call(), GRPC_STATUS_UNAVAILABLE,
                               message, nullptr);
}

int64_t CallGate::Drain(absl::Time deadline) {
  last_arrival_unix_ns_.store(absl::ToUnixNanos(absl::Now()),
                              std::memory_order_relaxed);
  state_.store(kDraining);
  absl::MutexLock lock(&mu_);
  // A stream waiting for its client's next request has nothing under way:
  // end it now. The others end after the request they are handling.
  for (auto& [context, stream] : streams_) {
    if (stream.activity == StreamActivity::kReading) {
      EndStream(context, stream, kShuttingDown);
    }
  }
  const absl::Duration left =
      std::max(deadline - absl::Now(), absl::ZeroDuration());
  const absl::Duration margin = std::min(absl::Seconds(1), left / 10);
  if (AwaitDrained(deadline - margin)) return 0;
  // Out of time: long calls stop at their next check, and streams blocked
  // on a slow client are ended, so they all return by the deadline.
  aborting_.store(true, std::memory_order_release);
  for (auto& [context, stream] : streams_) {
    EndStream(context, stream, kShuttingDown);
  }
  AwaitDrained(deadline);
  return running_.load();
}

bool CallGate::AwaitDrained(absl::Time deadline) {
  while (running_.load() > 0) {
    if (drained_.WaitWithDeadline(&mu_, deadline)) {
      return running_.load() == 0;  // Timed out.
    }
  }
  return true;
}

bool CallGate::AwaitQuiet(absl::Duration quiet, absl::Time deadline) {
  while (true) {
    const absl::Time quiet_until =
        absl::FromUnixNanos(
            last_arrival_unix_ns_.load(std::memory_order_relaxed)) +
        quiet;
    const absl::Time now = absl::Now();
    if (now >= quiet_until) return true;
    if (now >= deadline) return false;
    absl::SleepFor(std::min(quiet_until, deadline) - now);
  }
}

bool CallGate::draining() const { return state_.load() == kDraining; }

int CallGate::open_streams() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(streams_.size());
}

void CallGate::Notify() {
  // Under the lock, so the signal cannot fall between Drain's test of the
  // count and its wait.
  absl::MutexLock lock(&mu_);
  drained_.SignalAll();
}

void CallGate::ReapIdleStreams() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const absl::Time now = absl::Now();
    // A wait that begins while this sleeps expires after now + timeout, so
    // sleeping at most that long never misses one.
    absl::Time next = now + stream_idle_timeout_;
    for (auto& [context, stream] : streams_) {
      if (stream.activity == StreamActivity::kWorking || stream.ended) {
        continue;
      }
      const absl::Time expiry = stream.since + stream_idle_timeout_;
      if (expiry > now) {
        next = std::min(next, expiry);
        continue;
      }
      EndStream(context, stream,
                stream.activity == StreamActivity::kReading
                    ? "the stream had no request for longer than "
                      "--stream_idle_timeout; open a new one"
                    : "the client took no response for longer than "
                      "--stream_idle_timeout");
    }
    reaper_wake_.WaitWithDeadline(&mu_, next);
  }
}

CallCancellation::CallCancellation(const grpc::ServerContext* context,
                                   const CallGate* gate)
    : context_(context),
      gate_(gate),
      deadline_(context == nullptr ? absl::InfiniteFuture()
                                   : absl::FromChrono(context->deadline())) {}

bool CallCancellation::IsCancelled() const {
  return gate_->aborting() || absl::Now() >= deadline_ ||
         (context_ != nullptr && context_->IsCancelled());
}

absl::Status CallCancellation::Status() const {
  if (gate_->aborting()) return absl::UnavailableError(kShuttingDown);
  if (absl::Now() >= deadline_) {
    return absl::DeadlineExceededError("the call's deadline passed");
  }
  return absl::CancelledError("the client cancelled the call");
}

}  // namespace embedding
