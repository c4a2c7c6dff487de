// CallGate: admits the service's calls only while the server is serving,
// counts the calls under way, bounds the open streams, and lets shutdown
// wait for exactly the calls under way (a drain) before its final
// checkpoint, within a hard deadline. gRPC's own Shutdown cannot tell when
// the last call ended: it also waits, up to its deadline, for idle client
// connections to close, which would use up the grace period the final
// checkpoint needs.
//
//   CallGate gate(/*max_open_streams=*/32, absl::Minutes(10));  // Serving.
//   gate.SetRestoring(true);          // Refused: "restoring checkpoints".
//   if (absl::Status refused = gate.Enter(); !refused.ok()) return refused;
//   CallCancellation cancel(context, &gate);  // For the engine's long work.
//   ... the call ...
//   gate.Exit();
//   gate.Drain(deadline);             // Refuse new calls, await running ones.
//
// Streams (LookupStream, ReadRows) use EnterStream/ExitStream instead and
// say when they wait on their client (SetActivity), so that a drain ends a
// stream idle between requests at once, and a stream that waits on its
// client longer than the idle timeout is ended.
//
// Ending a stream from outside its handler uses grpc_call_cancel_with_status
// (what ServerContext::TryCancel does with CANCELLED): the client gets the
// status given, UNAVAILABLE, with its message, and the handler's pending
// Read or Write returns false. A synchronous Read cannot be woken any other
// way. So a drain never leaves a client with a silent CANCELLED: a stream
// waiting for a request ends at once with UNAVAILABLE (every request it
// read was answered; a request in flight at that instant gets UNAVAILABLE
// without an answer, safe for a read-only LookupStream); a stream handling
// a request writes its response first, then ends with UNAVAILABLE.
//
// Thread-safe. Enter and Exit take no lock: two atomic operations each.
#ifndef SERVER_SERVICE_CALL_GATE_H_
#define SERVER_SERVICE_CALL_GATE_H_

#include <grpcpp/server_context.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cancellation.h"

namespace embedding {

// What a stream is doing, for Drain and the idle timeout.
enum class StreamActivity {
  kWorking,  // Handling a request (the initial state).
  kReading,  // Waiting for the client's next request.
  kWriting,  // Waiting for the client to take a response (flow control).
};

class CallGate {
 public:
  static constexpr int kDefaultMaxOpenStreams = 32;
  static constexpr absl::Duration kDefaultStreamIdleTimeout = absl::Minutes(10);

  // `max_open_streams`: most streams open at once (RESOURCE_EXHAUSTED
  // beyond). `stream_idle_timeout`: a stream waiting on its client (to send
  // a request, or to take a response) longer than this is ended with
  // UNAVAILABLE; InfiniteDuration(): never. A finite timeout runs one
  // background thread, joined by the destructor.
  // REQUIRES: max_open_streams >= 1, stream_idle_timeout > 0.
  explicit CallGate(
      int max_open_streams = kDefaultMaxOpenStreams,
      absl::Duration stream_idle_timeout = kDefaultStreamIdleTimeout);
  ~CallGate();

  CallGate(const CallGate&) = delete;
  CallGate& operator=(const CallGate&) = delete;

  // While true, calls are refused with UNAVAILABLE ("restoring
  // checkpoints"). No effect once draining. Default: false.
  void SetRestoring(bool restoring);

  // OK when the call may run, and the caller must then call Exit; else
  // UNAVAILABLE saying why (restoring, or shutting down).
  absl::Status Enter();
  void Exit();

  // As Enter and Exit, for a call that streams (LookupStream, ReadRows);
  // `context` must stay valid until ExitStream. RESOURCE_EXHAUSTED naming
  // --max_open_streams when that many streams are open; else as Enter.
  absl::Status EnterStream(grpc::ServerContext* context);
  void ExitStream(grpc::ServerContext* context);

  // Records what an entered stream is doing. kReading is refused with
  // UNAVAILABLE ("the server is shutting down") once draining: the stream
  // must end instead of waiting for another request.
  absl::Status SetActivity(grpc::ServerContext* context,
                           StreamActivity activity);

  // Refuses every call from now on (UNAVAILABLE), ends the streams waiting
  // for a request at once (UNAVAILABLE), and waits for the calls under way.
  // Shortly before `deadline` (a margin of min(1 s, a tenth of the time
  // left)) it starts aborting: every CallCancellation of this gate reports
  // UNAVAILABLE, and every stream still open is ended with UNAVAILABLE, so
  // that the calls return by `deadline`. Returns the number of calls still
  // running at `deadline` (0 when drained).
  int64_t Drain(absl::Time deadline);

  // After Drain: waits until no call has come in (and been refused) for
  // `quiet`, or until `deadline`. gRPC cancels a call whose request is
  // still arriving when the server closes its connections, and its client
  // sees CANCELLED; calls sent before the clients saw the drain's refusals
  // arrive within this pause and get UNAVAILABLE instead. Returns whether
  // the pause was quiet (false: the deadline came first).
  bool AwaitQuiet(absl::Duration quiet, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

  // True once Drain was called: a stream ends after the request it handles.
  bool draining() const;
  // True once a drain ran short of time: long calls stop (UNAVAILABLE).
  bool aborting() const { return aborting_.load(std::memory_order_acquire); }

  int open_streams() const ABSL_LOCKS_EXCLUDED(mu_);
  // Calls let in that have not exited yet (streams included). For metrics:
  // relaxed, a value at most a call or two stale.
  int64_t calls_running() const {
    return running_.load(std::memory_order_relaxed);
  }

 private:
  enum State : int { kServing, kRestoring, kDraining };

  struct Stream {
    StreamActivity activity = StreamActivity::kWorking;
    absl::Time since;    // When the activity began.
    bool ended = false;  // Cancelled by the gate (no second cancel).
  };

  // Wakes Drain when the last call under way ends.
  void Notify();
  // Ends `context`'s call with UNAVAILABLE `message`.
  void EndStream(grpc::ServerContext* context, Stream& stream,
                 const char* message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The idle-timeout thread: ends streams that wait on their client too
  // long, until the gate is destroyed.
  void ReapIdleStreams() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until no call is under way or `deadline`; true when none is.
  bool AwaitDrained(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int max_open_streams_;
  const absl::Duration stream_idle_timeout_;

  // Sequentially consistent, both: Enter counts the call before it reads
  // the state and Drain sets the state before it reads the count, so a
  // call that got in is always waited for.
  std::atomic<int> state_{kServing};
  std::atomic<int64_t> running_{0};
  // Set once by Drain (release) before it ends the streams; read by the
  // calls' CallCancellation (acquire).
  std::atomic<bool> aborting_{false};
  // When the drain began or last refused a call (absl::ToUnixNanos), for
  // AwaitQuiet.
  std::atomic<int64_t> last_arrival_unix_ns_{0};

  mutable absl::Mutex mu_;
  absl::CondVar drained_;
  absl::CondVar reaper_wake_;
  absl::flat_hash_map<grpc::ServerContext*, Stream> streams_
      ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // The destructor runs.
  std::thread reaper_;  // Only with a finite stream_idle_timeout.
};

// The Cancellation of one call, for the engine's long operations: cancelled
// when the gate is aborting (Status: UNAVAILABLE "the server is shutting
// down"), when the call's deadline has passed (DEADLINE_EXCEEDED), or when
// the client cancelled it (CANCELLED). Thread-safe; `context` (null: no
// client side) and `gate` must outlive it.
class CallCancellation final : public Cancellation {
 public:
  CallCancellation(const grpc::ServerContext* context, const CallGate* gate);

  bool IsCancelled() const override;
  absl::Status Status() const override;

 private:
  const grpc::ServerContext* const context_;
  const CallGate* const gate_;
  const absl::Time deadline_;
};

}  // namespace embedding

#endif  // SERVER_SERVICE_CALL_GATE_H_
