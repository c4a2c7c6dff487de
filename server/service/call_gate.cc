#include "server/service/call_gate.h"

namespace embedding {

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
      Exit();
      return absl::UnavailableError("the server is shutting down");
  }
}

void CallGate::Exit() {
  if (running_.fetch_sub(1) == 1 && state_.load() == kDraining) Notify();
}

absl::Status CallGate::EnterStream(grpc::ServerContext* context) {
  {
    absl::MutexLock lock(&mu_);
    streams_.insert(context);
  }
  // After the insertion: a Drain that this Enter does not see has not yet
  // cancelled the streams, and will cancel this one.
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

int64_t CallGate::Drain(absl::Time deadline) {
  state_.store(kDraining);
  absl::MutexLock lock(&mu_);
  for (grpc::ServerContext* stream : streams_) stream->TryCancel();
  while (running_.load() > 0) {
    if (drained_.WaitWithDeadline(&mu_, deadline)) break;  // Timed out.
  }
  return running_.load();
}

bool CallGate::draining() const { return state_.load() == kDraining; }

void CallGate::Notify() {
  // Under the lock, so the signal cannot fall between Drain's test of the
  // count and its wait.
  absl::MutexLock lock(&mu_);
  drained_.SignalAll();
}

}  // namespace embedding
