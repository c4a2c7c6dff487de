// CallGate: admits the service's calls only while the server is serving,
// counts the calls under way, and lets shutdown wait for exactly those (a
// drain) before its final checkpoint. gRPC's own Shutdown cannot tell when
// the last call ended: it also waits, up to its deadline, for idle client
// connections to close, which would use up the grace period the final
// checkpoint needs.
//
//   CallGate gate;                    // Serving.
//   gate.SetRestoring(true);          // Refused: "restoring checkpoints".
//   if (absl::Status refused = gate.Enter(); !refused.ok()) return refused;
//   ... the call ...
//   gate.Exit();
//   gate.Drain(deadline);             // Refuse new calls, await running ones.
//
// Thread-safe. Enter and Exit take no lock: two atomic operations each.
#ifndef SERVER_SERVICE_CALL_GATE_H_
#define SERVER_SERVICE_CALL_GATE_H_

#include <grpcpp/server_context.h>

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace embedding {

class CallGate {
 public:
  // While true, calls are refused with UNAVAILABLE ("restoring
  // checkpoints"). No effect once draining. Default: false.
  void SetRestoring(bool restoring);

  // OK when the call may run, and the caller must then call Exit; else
  // UNAVAILABLE saying why (restoring, or shutting down).
  absl::Status Enter();
  void Exit();

  // As Enter and Exit, for a call that waits on its client between
  // messages (a LookupStream): Drain cancels it, so a client that keeps a
  // stream open does not hold up the shutdown.
  absl::Status EnterStream(grpc::ServerContext* context);
  void ExitStream(grpc::ServerContext* context);

  // Refuses every call from now on, cancels the open streams, and waits
  // until the calls under way have ended or `deadline` passes. Returns the
  // number of calls still running (0 when drained).
  int64_t Drain(absl::Time deadline);

  // True once Drain was called: a stream ends at its next message.
  bool draining() const;

 private:
  enum State : int { kServing, kRestoring, kDraining };

  // Wakes Drain when the last call under way ends.
  void Notify();

  // Sequentially consistent, both: Enter counts the call before it reads
  // the state and Drain sets the state before it reads the count, so a
  // call that got in is always waited for.
  std::atomic<int> state_{kServing};
  std::atomic<int64_t> running_{0};

  absl::Mutex mu_;
  absl::CondVar drained_;
  absl::flat_hash_set<grpc::ServerContext*> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace embedding

#endif  // SERVER_SERVICE_CALL_GATE_H_
