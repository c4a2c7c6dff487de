// An ordered pipeline of Lookups over one LookupStream call: each batch is
// sent without waiting for the replies before it, so steady small lookups
// (an inference loop, a trainer's prefetch) do not pay a round trip and a
// call setup per batch. At most `depth` lookups are in flight (sent and not
// yet returned by Receive): Send blocks beyond that, so memory stays bounded
// on both sides.
//
//   absl::StatusOr<std::unique_ptr<embedding::LookupStream>> stream =
//       client->OpenLookupStream("users", {.depth = 4});
//   if (!stream.ok()) return stream.status();
//   for (const std::vector<int64_t>& batch : batches) {
//     if ((*stream)->in_flight() == (*stream)->depth()) {
//       absl::StatusOr<FloatTensor> rows = (*stream)->Receive();
//       if (!rows.ok()) return rows.status();  // the server's error
//       Consume(*rows);
//     }
//     EMBEDDING_RETURN_IF_ERROR((*stream)->Send(batch));
//   }
//   ... Receive the in_flight() results left, then:
//   EMBEDDING_RETURN_IF_ERROR((*stream)->Finish());
//
// Thread-safe: one thread may Send (and WritesDone) while another Receives
// (a producer and a consumer); calls of one kind are serialized. One thread
// alone must Receive before it Sends more than depth() lookups: a Send with
// depth() in flight waits for a Receive, Cancel or the deadline.
//
// Errors carry the server's code and message unchanged. The server ends the
// stream at the first lookup that fails: Receive returns the results before
// it, then that lookup's error (INVALID_ARGUMENT, NOT_FOUND, ... as Lookup);
// every later Send, Receive and Finish returns the same error. Not retried
// (CONTRACT.md): on UNAVAILABLE, open a new stream and send again the
// batches whose results did not arrive.
#ifndef CLIENT_CPP_LOOKUP_STREAM_H_
#define CLIENT_CPP_LOOKUP_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/cpp/embedding_client.h"
#include "embedding/v1/embedding_service.grpc.pb.h"

namespace embedding {

class LookupStream {
 public:
  // Opened by EmbeddingClient::OpenLookupStream.
  LookupStream(const LookupStream&) = delete;
  LookupStream& operator=(const LookupStream&) = delete;
  // Cancels the call unless Finish returned.
  ~LookupStream();

  // Sends a lookup of `indices` (options as Lookup's: index shape, wire
  // dtype). Waits while depth() lookups are in flight. Returns once the
  // request is handed to gRPC, before its result. FAILED_PRECONDITION after
  // WritesDone or Finish; CANCELLED after Cancel; DEADLINE_EXCEEDED when
  // the stream's deadline passes while waiting; the stream's error once it
  // has ended with one (that of an earlier lookup, or UNAVAILABLE).
  absl::Status Send(absl::Span<const int64_t> indices,
                    const LookupOptions& options = {})
      ABSL_LOCKS_EXCLUDED(send_mu_, mu_);

  // The result of the oldest lookup in flight, as Lookup returns it. With
  // none in flight, waits for a Send. OUT_OF_RANGE when none is in flight
  // after WritesDone; the error of the lookup that failed (the server's
  // code and message); CANCELLED after Cancel; DEADLINE_EXCEEDED.
  absl::StatusOr<FloatTensor> Receive() ABSL_LOCKS_EXCLUDED(receive_mu_, mu_);
  // As Receive, into `result`, reusing its buffer: the rows are copied
  // into memory already touched instead of a fresh allocation.
  absl::Status Receive(FloatTensor* result)
      ABSL_LOCKS_EXCLUDED(receive_mu_, mu_);

  // Tells the server no more lookups come; the ones in flight are still
  // answered and received.
  void WritesDone() ABSL_LOCKS_EXCLUDED(send_mu_, mu_);

  // Ends the stream: WritesDone (a Send waiting for room then fails), then
  // waits for the server's status, dropping results not received. OK when
  // every lookup sent succeeded; else the stream's error (CANCELLED after
  // Cancel).
  absl::Status Finish() ABSL_LOCKS_EXCLUDED(send_mu_, receive_mu_, mu_);

  // Cancels the call from any thread: waiting Sends and Receives return
  // CANCELLED, and so does everything after.
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);

  // The most lookups in flight at once.
  int depth() const { return depth_; }
  // Lookups sent and not yet returned by Receive.
  int in_flight() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class EmbeddingClient;

  // Starts the call with `client`'s stub, deadline and headers.
  LookupStream(const EmbeddingClient& client, absl::string_view table,
               int depth, const CallOptions& call);

  // Whether Send may go on: room for one more, or the stream has ended.
  bool SendMayProceed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether Receive may go on: a lookup in flight, or none will come.
  bool ReceiveMayProceed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The error every call returns once the stream has ended with one.
  std::optional<absl::Status> EndedStatus() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the next reply into `response`, or (false) the stream's end:
  // Finish's status is then kept in final_status_.
  bool ReadReply(v1::LookupResponse* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(receive_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  // After a failed Write: reads the replies still coming (kept for
  // Receive, at most depth of them) up to the stream's status, returned.
  absl::Status StatusAfterFailedWrite() ABSL_LOCKS_EXCLUDED(receive_mu_, mu_);

  const std::string table_;
  const int depth_;
  grpc::ClientContext context_;
  // The context's deadline, for the waits outside gRPC.
  absl::Time deadline_;
  // Write and WritesDone under send_mu_, Read and Finish under receive_mu_:
  // gRPC allows one of each at a time.
  std::unique_ptr<
      grpc::ClientReaderWriterInterface<v1::LookupRequest, v1::LookupResponse>>
      stream_;

  absl::Mutex send_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex receive_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  mutable absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // Replies read by StatusAfterFailedWrite, oldest first; Receive takes
  // them before reading.
  std::deque<v1::LookupResponse> replies_read_ ABSL_GUARDED_BY(mu_);
  // The status of the call once the server ended it.
  std::optional<absl::Status> final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace embedding

#endif  // CLIENT_CPP_LOOKUP_STREAM_H_
