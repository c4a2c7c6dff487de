// EmbeddingServiceImpl: the gRPC adapter over a TableRegistry. It validates
// requests that only the wire can get wrong (sizes, dtypes, shapes), converts
// protos to engine calls, and maps statuses once (common/grpc_status.h). It
// holds no row data itself.
//
//   TableRegistry registry(registry_options);
//   InflightMemory memory(int64_t{1} << 30);
//   EmbeddingServiceImpl service(&registry, ServiceOptions{}, checkpointer,
//                                &memory);
//   service.SetRestoring(true);   // UNAVAILABLE until the tables are back
//   BoundedService bounded(&service, &memory);  // Parses; LookupStreamRaw.
//   builder.RegisterService(&bounded);
//   service.Drain(deadline);      // Shutdown: refuse calls, await running.
//
// Every response buffer (Lookup, LookupBag with its max_indices, a ReadRows
// chunk, a LookupStream response) and every push's scratch is reserved from
// the InflightMemory before it is allocated, and held until the message is
// written (a unary response: until the handler returns, after which the
// caller holds its own reservation while gRPC sends it). A LookupStream
// handles one request at a time, so its backlog is one response, and its
// synchronous Write blocks while the client takes no more data (HTTP/2
// flow control; gRPC's own clients buffer what arrives even when the
// application does not read, so this is a client that stops reading its
// connection). A stream blocked so is ended after --stream_idle_timeout.
//
// Long engine calls get a CallCancellation (call_gate.h): they stop when the
// client cancels, the deadline passes (DEADLINE_EXCEEDED), or a drain runs
// short of time (UNAVAILABLE "the server is shutting down").
//
// Error messages never echo a client's string or shape whole: shapes are
// capped at kMaxShapeRank first, and a status message is cut to
// kMaxStatusMessageBytes before it goes on the wire (so an error always
// arrives with its own code, not as the client's "metadata size exceeds
// limit").
//
// Thread-safe. Handlers use the synchronous API (measured faster than the
// callback API on gRPC 1.51, see BENCHMARKS.md) and never block on locks held
// across I/O.
#ifndef SERVER_SERVICE_EMBEDDING_SERVICE_IMPL_H_
#define SERVER_SERVICE_EMBEDDING_SERVICE_IMPL_H_

#include <grpcpp/support/byte_buffer.h>

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/cancellation.h"
#include "embedding/v1/embedding_service.grpc.pb.h"
#include "server/core/table_registry.h"
#include "server/service/call_gate.h"
#include "server/service/checkpointer.h"
#include "server/service/inflight_memory.h"

namespace embedding {

// Checked by Server::Start (server.h).
struct ServiceOptions {
  // Most indices one request may carry (RESOURCE_EXHAUSTED beyond).
  // Default: 4M. REQUIRES: > 0.
  int64_t max_indices_per_request = int64_t{1} << 22;
  // Largest message sent or received (RESOURCE_EXHAUSTED for a response
  // that would not fit).
  // Default: 64 MiB. REQUIRES: in [1 MiB, 2 GiB) (gRPC takes an int).
  int64_t max_message_bytes = int64_t{64} << 20;
  // Most streams (LookupStream and ReadRows together) open at once; one
  // more gets RESOURCE_EXHAUSTED naming --max_open_streams. Each holds a
  // server thread while open.
  // Default: 32. REQUIRES: >= 1 (and below the server's worker threads).
  int max_open_streams = CallGate::kDefaultMaxOpenStreams;
  // A stream that waits on its client this long (a LookupStream for its
  // next request, any stream for the client to take a response) is ended:
  // the client sees UNAVAILABLE "... --stream_idle_timeout ..."; requests
  // it sent before were all answered. InfiniteDuration(): never.
  // Default: 10 minutes. REQUIRES: > 0.
  absl::Duration stream_idle_timeout = CallGate::kDefaultStreamIdleTimeout;
};

// Longest status message sent to a client: longer ones are cut (at a UTF-8
// boundary) and end in "...". gRPC clients refuse trailers over 8 KiB.
inline constexpr size_t kMaxStatusMessageBytes = 1024;

class EmbeddingServiceImpl final : public v1::EmbeddingService::Service {
 public:
  // `registry`, `checkpointer` and `memory` must outlive the service;
  // `checkpointer` is null when the server has no --checkpoint_dir, and
  // `memory` null means no in-flight limit (tests).
  EmbeddingServiceImpl(TableRegistry* registry, const ServiceOptions& options,
                       Checkpointer* checkpointer = nullptr,
                       InflightMemory* memory = nullptr);

  // While true, every call fails with UNAVAILABLE ("restoring checkpoints"):
  // a table created or written before the restore ends would collide with
  // the restored one. Default: false.
  void SetRestoring(bool restoring) { gate_.SetRestoring(restoring); }

  // Refuses every call from now on (UNAVAILABLE), and waits until the calls
  // under way have ended; a hard bound: see CallGate::Drain. Open streams
  // end with UNAVAILABLE "the server is shutting down": at once when they
  // wait for a request, else after the request they handle. Returns the
  // number of calls still running at `deadline`.
  int64_t Drain(absl::Time deadline) { return gate_.Drain(deadline); }
  // After Drain; see CallGate::AwaitQuiet.
  bool AwaitQuiet(absl::Duration quiet, absl::Time deadline) {
    return gate_.AwaitQuiet(quiet, deadline);
  }

  // Calls that stopped because they were cancelled: by the client, by their
  // deadline, or by a drain out of time.
  int64_t calls_cancelled() const {
    return calls_cancelled_.load(std::memory_order_relaxed);
  }
  // Streams open now (LookupStream and ReadRows).
  int open_streams() const { return gate_.open_streams(); }
  // Calls under way now (streams included).
  int64_t calls_in_flight() const { return gate_.calls_running(); }

  grpc::Status CreateTable(grpc::ServerContext* context,
                           const v1::CreateTableRequest* request,
                           v1::TableInfo* response) override;
  grpc::Status GetTable(grpc::ServerContext* context,
                        const v1::GetTableRequest* request,
                        v1::TableInfo* response) override;
  grpc::Status ListTables(grpc::ServerContext* context,
                          const v1::ListTablesRequest* request,
                          v1::ListTablesResponse* response) override;
  grpc::Status DeleteTable(grpc::ServerContext* context,
                           const v1::DeleteTableRequest* request,
                           v1::DeleteTableResponse* response) override;
  grpc::Status Lookup(grpc::ServerContext* context,
                      const v1::LookupRequest* request,
                      v1::LookupResponse* response) override;
  // Answers each request in turn; ends with the first failing request's
  // status. gRPC's own parsing cannot tell a malformed message from the end
  // of the stream, so this typed variant ends such a stream with OK: the
  // server registers LookupStreamRaw instead.
  grpc::Status LookupStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::LookupResponse, v1::LookupRequest>* stream)
      override;
  // LookupStream over raw messages, each parsed by ParseBounded: a
  // malformed one ends the stream with INVALID_ARGUMENT, one whose parsing
  // would pass the in-flight limit with RESOURCE_EXHAUSTED.
  grpc::Status LookupStreamRaw(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::LookupResponse, grpc::ByteBuffer>* stream);
  grpc::Status LookupBag(grpc::ServerContext* context,
                         const v1::LookupBagRequest* request,
                         v1::LookupBagResponse* response) override;
  grpc::Status PushGradients(grpc::ServerContext* context,
                             const v1::PushGradientsRequest* request,
                             v1::PushGradientsResponse* response) override;
  grpc::Status PushBagGradients(grpc::ServerContext* context,
                                const v1::PushBagGradientsRequest* request,
                                v1::PushGradientsResponse* response) override;
  grpc::Status WriteRows(grpc::ServerContext* context,
                         const v1::WriteRowsRequest* request,
                         v1::WriteRowsResponse* response) override;
  grpc::Status ReadRows(
      grpc::ServerContext* context, const v1::ReadRowsRequest* request,
      grpc::ServerWriter<v1::ReadRowsResponse>* writer) override;
  grpc::Status SetOptimizer(grpc::ServerContext* context,
                            const v1::SetOptimizerRequest* request,
                            v1::TableInfo* response) override;
  grpc::Status SaveCheckpoint(grpc::ServerContext* context,
                              const v1::SaveCheckpointRequest* request,
                              v1::SaveCheckpointResponse* response) override;

 private:
  // Runs `handler` (taking the call's Cancellation, returning absl::Status)
  // if the gate lets the call in, counts it in calls_cancelled_ when it
  // ends with its cancellation's status, and converts the status for the
  // wire. A `stream` counts against max_open_streams.
  template <typename Handler>
  grpc::Status Handle(grpc::ServerContext* context, const Handler& handler,
                      bool stream = false);
  // Handle for a stream (LookupStream, ReadRows).
  template <typename Handler>
  grpc::Status HandleStream(grpc::ServerContext* context,
                            const Handler& handler);

  // The LookupStream loop: `read(&request, &held)` reads the next request
  // (false at the end of the stream) and reserves its bytes in `held`.
  template <typename Stream, typename Read>
  absl::Status RunLookupStream(grpc::ServerContext* context, Stream* stream,
                               const Cancellation& cancel, const Read& read);

  // Writes `message` to a stream, marked as waiting on the client meanwhile.
  // CANCELLED when the client went away (or the stream was ended).
  template <typename Writer, typename Message>
  absl::Status WriteToClient(grpc::ServerContext* context, Writer* writer,
                             const Message& message);

  // Reserves `bytes` for `what` from the in-flight account (nothing held
  // without one). RESOURCE_EXHAUSTED naming --max_inflight_bytes.
  absl::StatusOr<InflightBytes> Reserve(int64_t bytes,
                                        absl::string_view what) const;

  void SetTableInfo(const TableStats& stats, v1::TableInfo* info) const;
  absl::Status DoGetTable(const v1::GetTableRequest& request,
                          v1::TableInfo* response);
  absl::Status DoListTables(v1::ListTablesResponse* response);
  absl::Status DoCreateTable(const v1::CreateTableRequest& request,
                             const Cancellation& cancel,
                             v1::TableInfo* response);
  // `copies`: how many times the response's bytes exist while `held` is:
  // 1 when the caller sends it after return, 2 when it writes it itself
  // (the message and its serialized bytes).
  absl::Status DoLookup(const v1::LookupRequest& request,
                        const Cancellation& cancel, int copies,
                        v1::LookupResponse* response, InflightBytes* held);
  absl::Status DoLookupBag(const v1::LookupBagRequest& request,
                           const Cancellation& cancel,
                           v1::LookupBagResponse* response,
                           InflightBytes* held);
  absl::Status DoPushGradients(const v1::PushGradientsRequest& request,
                               const Cancellation& cancel,
                               v1::PushGradientsResponse* response);
  absl::Status DoPushBagGradients(const v1::PushBagGradientsRequest& request,
                                  const Cancellation& cancel,
                                  v1::PushGradientsResponse* response);
  absl::Status DoWriteRows(const v1::WriteRowsRequest& request,
                           const Cancellation& cancel,
                           v1::WriteRowsResponse* response);
  absl::Status DoReadRows(grpc::ServerContext* context,
                          const v1::ReadRowsRequest& request,
                          const Cancellation& cancel,
                          grpc::ServerWriter<v1::ReadRowsResponse>* writer);
  absl::Status DoSetOptimizer(const v1::SetOptimizerRequest& request,
                              v1::TableInfo* response);
  absl::Status DoSaveCheckpoint(const v1::SaveCheckpointRequest& request,
                                v1::SaveCheckpointResponse* response);

  // RESOURCE_EXHAUSTED past max_indices_per_request; INVALID_ARGUMENT if
  // `count` is zero and `allow_empty` is false.
  absl::Status CheckIndexCount(int64_t count, bool allow_empty) const;
  // The bytes of a response of `rows` rows of `row_bytes` on the wire;
  // RESOURCE_EXHAUSTED when that would pass the message limit.
  absl::StatusOr<int64_t> CheckResponseBytes(int64_t rows,
                                             int64_t row_bytes) const;

  TableRegistry* const registry_;
  const ServiceOptions options_;
  Checkpointer* const checkpointer_;
  InflightMemory* const memory_;
  CallGate gate_;
  std::atomic<int64_t> calls_cancelled_{0};
};

}  // namespace embedding

#endif  // SERVER_SERVICE_EMBEDDING_SERVICE_IMPL_H_
