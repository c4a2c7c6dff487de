// C++ client of the Embedding Service: one method per RPC of
// embedding.v1.EmbeddingService, typed results, errors as absl::Status. It
// follows client/CONTRACT.md: its defaults, retries, exactly-once pushes,
// chunked bulk transfers and error codes.
//
//   embedding::ClientOptions options;
//   options.default_timeout = absl::Seconds(5);
//   auto client = embedding::EmbeddingClient::Connect("127.0.0.1:50051",
//                                                     options);
//   if (!client.ok()) return client.status();
//   embedding::v1::TableSpec spec;
//   spec.set_name("users");
//   spec.set_num_embeddings(1000);
//   spec.set_embedding_dim(16);
//   auto info = (*client)->CreateTable(spec);
//   auto rows = (*client)->Lookup("users", {1, 2, 3});  // shape [3, 16]
//   std::vector<float> grad(3 * 16, 0.5f);
//   auto pushed = (*client)->PushGradients("users", {1, 2, 3}, grad);
//
// Over TLS with a token (client/cpp/client_security.h):
//
//   options.security.tls_ca_file = "ca.pem";
//   options.security.token = token;  // or leave it to $EMBEDDING_TOKEN
//
// Thread-safe: an EmbeddingClient may be shared by many threads without
// external synchronization (it holds an immutable channel and stub and an
// atomic push sequence counter).
//
// Errors carry the server's gRPC code and message unchanged; each method
// names the codes it returns. Any call may also fail with UNAVAILABLE (no
// server, or it is shutting down) and DEADLINE_EXCEEDED.
#ifndef CLIENT_CPP_EMBEDDING_CLIENT_H_
#define CLIENT_CPP_EMBEDDING_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/cpp/client_security.h"
#include "embedding/v1/embedding_service.grpc.pb.h"

namespace embedding {

// The defaults of client/CONTRACT.md, one constant each (contract_test.cc
// checks them against its table; the CLI's flags default to them).
//
// The server's default --listen_address.
inline constexpr absl::string_view kDefaultAddress = "127.0.0.1:50051";
// Deadline of each call; each attempt of a retried call gets its own.
inline constexpr absl::Duration kDefaultTimeout = absl::Seconds(30);
// Largest message sent or received: the server's default.
inline constexpr int kDefaultMaxMessageBytes = 64 << 20;
// Bulk transfers (WriteRows, ReadRows, CreateTable with weights) are split
// into messages of at most this size (or max_message_bytes, if smaller)...
inline constexpr int64_t kBulkMessageBytes = 4 << 20;
// ... less this headroom for the table name and framing, a row counting
// 4 * dim bytes plus kBulkIndexBytes when it travels with its index.
inline constexpr int64_t kBulkHeadroomBytes = 16 << 10;
inline constexpr int64_t kBulkIndexBytes = 11;
// Retries of a retryable call that failed with UNAVAILABLE.
inline constexpr int kDefaultMaxRetries = 3;
// Retry k (k = 0, 1, ...) waits this times 2^k.
inline constexpr absl::Duration kDefaultRetryBackoff = absl::Milliseconds(50);
// As nn.EmbeddingBag.
inline constexpr v1::BagMode kDefaultBagMode = v1::BAG_MODE_MEAN;
inline constexpr v1::DType kDefaultLookupDType = v1::DTYPE_FLOAT32;
// Lookups a LookupStream keeps in flight, as the sharded Python stream's
// batches ahead (CONTRACT.md, "Sharded clients").
inline constexpr int kDefaultLookupStreamDepth = 8;

class LookupStream;  // client/cpp/lookup_stream.h

struct ClientOptions {
  // Deadline of each call (each attempt) that does not set its own.
  // Default: kDefaultTimeout. absl::InfiniteDuration() means no deadline.
  absl::Duration default_timeout = kDefaultTimeout;
  // Largest message sent or received, in bytes; bulk transfers are chunked
  // below it. Default: kDefaultMaxMessageBytes. REQUIRES: > 0.
  int max_message_bytes = kDefaultMaxMessageBytes;
  // Retries after the first attempt of GetTable, ListTables, Lookup,
  // LookupBag, ReadRows, PushGradients and PushBagGradients when they fail
  // with UNAVAILABLE. Default: kDefaultMaxRetries. REQUIRES: >= 0.
  int max_retries = kDefaultMaxRetries;
  // Retry k waits retry_backoff * 2^k. Default: kDefaultRetryBackoff.
  // REQUIRES: >= 0.
  absl::Duration retry_backoff = kDefaultRetryBackoff;
  // The exactly-once id every push carries. Default (empty): a random
  // 128-bit hex string chosen per client object.
  std::string client_id;
  // TLS (CA, client certificate and key, server name override) and the
  // bearer token every call carries. Default: plaintext, the token in
  // $EMBEDDING_TOKEN if set.
  ClientSecurityOptions security;
  // Channel credentials to use instead of security's tls_* files (e.g.
  // ALTS); INVALID_ARGUMENT with tls_ca_file. Default: as `security` says.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Headers sent with every call, after the token's authorization header.
  std::vector<Header> metadata;
};

// Per-call overrides.
struct CallOptions {
  // Default: ClientOptions::default_timeout.
  std::optional<absl::Duration> timeout;
  // Sent in addition to ClientOptions::metadata.
  std::vector<Header> metadata;
};

// Opens a channel to `address` with `options`' security (see
// CreateSecureChannel), its credentials and its message size limits, plus
// `args`. The connection is made lazily. INVALID_ARGUMENT as
// CreateSecureChannel.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateClientChannel(
    const std::string& address, const ClientOptions& options,
    grpc::ChannelArguments args = grpc::ChannelArguments());

// Prepares the ClientContext of every call of one client: its deadline and
// headers (the token's authorization, ClientOptions::metadata, then the
// call's own). EmbeddingClient, the CLI's health check and embedding_bench's
// raw gRPC calls all prepare their calls with one, so none forgets the
// token. Thread-safe (immutable).
class CallContextPreparer {
 public:
  // Resolves the token once: options.security.token, else $EMBEDDING_TOKEN.
  explicit CallContextPreparer(const ClientOptions& options);

  void Prepare(const CallOptions& call, grpc::ClientContext* context) const;

 private:
  const absl::Duration default_timeout_;
  const std::vector<Header> headers_;
};

// A dense row-major float32 tensor.
struct FloatTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct LookupOptions {
  // Shape of the index tensor. Default (empty): [indices.size()].
  std::vector<int64_t> shape;
  // Element type on the wire; the result is always converted to float32.
  // Default: kDefaultLookupDType.
  v1::DType dtype = kDefaultLookupDType;
};

struct LookupStreamOptions {
  // Most lookups in flight (sent, not yet received) at once; Send waits
  // beyond. Default: kDefaultLookupStreamDepth. REQUIRES: >= 1.
  int depth = kDefaultLookupStreamDepth;
};

// The bags of an nn.EmbeddingBag call (views; the caller keeps them alive).
struct Bags {
  absl::Span<const int64_t> indices;
  // Start of each bag in `indices`, as nn.EmbeddingBag's offsets.
  absl::Span<const int64_t> offsets;
  // Default: kDefaultBagMode (MEAN, as nn.EmbeddingBag).
  v1::BagMode mode = kDefaultBagMode;
  // Empty, or one weight per index (SUM mode only).
  absl::Span<const float> per_sample_weights;
  bool include_last_offset = false;
};

struct BagLookupResult {
  // Shape [bags, embedding_dim].
  FloatTensor embeddings;
  // MAX mode: the winning row per output element, for PushBagGradients.
  std::vector<int64_t> max_indices;
};

// Of PushGradients and PushBagGradients. (Not PushOptions: the server's
// engine has its own, and tests link both.)
struct PushGradientsOptions {
  // Overrides the table's learning rate for this push.
  std::optional<float> learning_rate;
  // The exactly-once sequence this push carries with the client's id; kept
  // on retries. Default: the client's next sequence (1, 2, ...).
  // REQUIRES: > 0.
  std::optional<uint64_t> sequence;
};

struct PushGradientsResult {
  int64_t rows_updated = 0;
  int64_t version = 0;
  // True when this (client_id, sequence) had already been applied.
  bool duplicate = false;
  // The sequence the push carried.
  uint64_t sequence = 0;
  // Dynamic tables (0 for dense ones): ids this push gave a row, gradient
  // rows it dropped (their id not yet admitted), rows it evicted for room.
  int64_t rows_admitted = 0;
  int64_t rows_dropped = 0;
  int64_t rows_evicted = 0;
};

struct WriteResult {
  // Over every chunk of the upload.
  int64_t rows_written = 0;
  // Table version after the last chunk.
  int64_t version = 0;
};

struct ReadRowsResult {
  // Global row ids of the rows in `values`, in order.
  std::vector<int64_t> indices;
  // Shape [indices.size(), embedding_dim].
  FloatTensor values;
};

class EmbeddingClient {
 public:
  // Opens a channel to `address` ("host:port") with CreateClientChannel. The
  // connection is made lazily: an unreachable server shows as UNAVAILABLE
  // on the first call, a refused TLS handshake too. INVALID_ARGUMENT for an
  // empty address or bad options (security: see CreateSecureChannel).
  static absl::StatusOr<std::unique_ptr<EmbeddingClient>> Connect(
      const std::string& address, const ClientOptions& options = {});

  // Wraps an existing stub (tests, custom channels); `options` are not
  // checked.
  EmbeddingClient(std::unique_ptr<v1::EmbeddingService::StubInterface> stub,
                  const ClientOptions& options);

  EmbeddingClient(const EmbeddingClient&) = delete;
  EmbeddingClient& operator=(const EmbeddingClient&) = delete;

  // The id this client's pushes carry.
  const std::string& client_id() const { return client_id_; }

  // Creates a table from `spec`, optionally with float32 starting weights
  // [num_embeddings, embedding_dim] (row-major). Weights larger than one
  // bulk message are written in chunks after creating the table with
  // Constant(0) (the padding row stays zero); if that upload fails the table
  // is deleted and the upload's error returned. A dynamic spec takes no
  // weights (INVALID_ARGUMENT, before any call). Not retried.
  // INVALID_ARGUMENT (bad spec or weights), ALREADY_EXISTS,
  // RESOURCE_EXHAUSTED (memory budget).
  absl::StatusOr<v1::TableInfo> CreateTable(const v1::TableSpec& spec,
                                            const CallOptions& call = {}) const;
  absl::StatusOr<v1::TableInfo> CreateTable(
      const v1::TableSpec& spec, absl::Span<const float> initial_weights,
      const CallOptions& call = {}) const;

  // Returns a table's spec and counters. NOT_FOUND.
  absl::StatusOr<v1::TableInfo> GetTable(absl::string_view name,
                                         const CallOptions& call = {}) const;
  // Every table on the server. No codes of its own.
  absl::StatusOr<std::vector<v1::TableInfo>> ListTables(
      const CallOptions& call = {}) const;
  // Deletes a table and its optimizer state. Not retried. NOT_FOUND.
  absl::Status DeleteTable(absl::string_view name,
                           const CallOptions& call = {}) const;

  // Returns the rows of `indices`, shape `options.shape + [embedding_dim]`.
  // NOT_FOUND; INVALID_ARGUMENT (index out of range, with its position;
  // shape not matching the indices; no indices; unknown dtype);
  // RESOURCE_EXHAUSTED (too many indices, reply over the message limit).
  absl::StatusOr<FloatTensor> Lookup(absl::string_view table,
                                     absl::Span<const int64_t> indices,
                                     const LookupOptions& options = {},
                                     const CallOptions& call = {}) const;

  // As Lookup, into `result`, reusing its buffer: the rows are copied into
  // memory already touched instead of a fresh allocation, which for large
  // lookups saves the page faults of new memory on every call.
  absl::Status LookupInto(absl::string_view table,
                          absl::Span<const int64_t> indices,
                          FloatTensor* result,
                          const LookupOptions& options = {},
                          const CallOptions& call = {}) const;

  // Opens an ordered pipeline of lookups of `table` over one LookupStream
  // call (client/cpp/lookup_stream.h). `call.timeout` is the deadline of
  // the whole stream: absl::InfiniteDuration() for a long-lived one. The
  // connection is made lazily: a server that cannot be reached shows on the
  // first Send or Receive. Not retried. INVALID_ARGUMENT for a depth < 1.
  absl::StatusOr<std::unique_ptr<LookupStream>> OpenLookupStream(
      absl::string_view table, const LookupStreamOptions& options = {},
      const CallOptions& call = {}) const;

  // Pools `bags` as nn.EmbeddingBag; result shape [bags, embedding_dim].
  // As Lookup, plus INVALID_ARGUMENT for bad offsets, per_sample_weights
  // outside SUM, MAX on a scale_grad_by_freq table.
  absl::StatusOr<BagLookupResult> LookupBag(
      absl::string_view table, const Bags& bags,
      v1::DType dtype = kDefaultLookupDType,
      const CallOptions& call = {}) const;

  // Applies the gradient `grad` (float32 [indices.size(), embedding_dim],
  // row-major) of a lookup of `indices` with the table's optimizer, exactly
  // once (client_id and sequence). NOT_FOUND; INVALID_ARGUMENT (gradient
  // shape or dtype, NaN/Inf, bad index); RESOURCE_EXHAUSTED (too many
  // indices); FAILED_PRECONDITION (a sequence older than the server's
  // exactly-once window).
  absl::StatusOr<PushGradientsResult> PushGradients(
      absl::string_view table, absl::Span<const int64_t> indices,
      absl::Span<const float> grad, const PushGradientsOptions& push = {},
      const CallOptions& call = {}) const;

  // Applies the gradient `grad` (float32 [bags, embedding_dim]) of a
  // LookupBag of `bags`; MAX mode needs that lookup's `max_indices`. As
  // PushGradients, plus the LookupBag checks and INVALID_ARGUMENT for
  // max_indices that do not match the bags.
  absl::StatusOr<PushGradientsResult> PushBagGradients(
      absl::string_view table, const Bags& bags, absl::Span<const float> grad,
      absl::Span<const int64_t> max_indices = {},
      const PushGradientsOptions& push = {},
      const CallOptions& call = {}) const;

  // Overwrites the rows `indices` with `values` (float32
  // [indices.size(), embedding_dim]), one request per bulk chunk, in order.
  // A failure stops the upload (earlier chunks stay written). Not retried.
  // NOT_FOUND; INVALID_ARGUMENT (shape, repeated index, NaN/Inf, rows
  // outside the table).
  absl::StatusOr<WriteResult> WriteRows(absl::string_view table,
                                        absl::Span<const int64_t> indices,
                                        absl::Span<const float> values,
                                        const CallOptions& call = {}) const;
  // Overwrites the rows [start_row, start_row + values.size() / dim), as
  // WriteRows.
  absl::StatusOr<WriteResult> WriteRowRange(absl::string_view table,
                                            int64_t start_row,
                                            int64_t embedding_dim,
                                            absl::Span<const float> values,
                                            const CallOptions& call = {}) const;

  // Reads the rows `indices`, streamed in bulk-sized replies and
  // concatenated; an UNAVAILABLE starts the whole read again. NOT_FOUND;
  // INVALID_ARGUMENT (index outside the table).
  absl::StatusOr<ReadRowsResult> ReadRows(absl::string_view table,
                                          absl::Span<const int64_t> indices,
                                          const CallOptions& call = {}) const;
  // Reads the rows [start_row, end_row); end_row 0 means to the end. As
  // ReadRows; INVALID_ARGUMENT for a range outside the table.
  absl::StatusOr<ReadRowsResult> ReadRowRange(
      absl::string_view table, int64_t start_row, int64_t end_row,
      const CallOptions& call = {}) const;
  // Reads the rows [start_row, end_row) as ReadRowRange, but hands each
  // bulk-sized chunk to `sink` as it arrives instead of keeping it, so one
  // chunk is in memory at a time (an export). An UNAVAILABLE resumes after
  // the last row handed over. An error of `sink` stops the read and is
  // returned as it is. Codes as ReadRowRange.
  absl::Status ReadRowRangeInChunks(
      absl::string_view table, int64_t start_row, int64_t end_row,
      absl::FunctionRef<absl::Status(const ReadRowsResult& chunk)> sink,
      const CallOptions& call = {}) const;

  // Rows of `embedding_dim` floats that one bulk message carries, with or
  // without their indices (CONTRACT.md, "Bulk transfers"): the chunk size
  // of WriteRows, WriteRowRange and ReadRows.
  int64_t BulkRows(int64_t embedding_dim, bool with_indices) const;

  // Replaces the hyper-parameters of a table's optimizer. Not retried.
  // NOT_FOUND; INVALID_ARGUMENT (a hyper-parameter out of range);
  // FAILED_PRECONDITION (another optimizer kind: the table's state would not
  // fit).
  absl::StatusOr<v1::TableInfo> SetOptimizer(
      absl::string_view table, const v1::Optimizer& optimizer,
      const CallOptions& call = {}) const;

  // Saves `tables` (every table when empty) to the server's
  // --checkpoint_dir, one entry per table saved in the reply; `incremental`
  // writes only the rows changed since each table's last checkpoint. Not
  // retried. FAILED_PRECONDITION (no --checkpoint_dir; the directory missing
  // or not writable), NOT_FOUND (an unknown table; nothing is written),
  // RESOURCE_EXHAUSTED (disk full), UNAVAILABLE (another I/O error),
  // CANCELLED (the server shut down before the save ended).
  absl::StatusOr<v1::SaveCheckpointResponse> SaveCheckpoint(
      absl::Span<const std::string> tables = {}, bool incremental = false,
      const CallOptions& call = {}) const;

  // Hooks for clients that fan one call out over many servers
  // (ShardedEmbeddingClient), so that they start each sub-call with this
  // client's stub, deadline, headers and retry policy.
  v1::EmbeddingService::StubInterface& stub() const { return *stub_; }
  const ClientOptions& options() const { return options_; }
  // Sets the deadline and headers of one attempt of a call.
  void PrepareContext(const CallOptions& call,
                      grpc::ClientContext* context) const;

 private:
  // Whether a method may be sent again after UNAVAILABLE (CONTRACT.md).
  enum class Retry { kNever, kOnUnavailable };

  template <typename Request, typename Response>
  using UnaryMethod = grpc::Status (v1::EmbeddingService::StubInterface::*)(
      grpc::ClientContext*, const Request&, Response*);

  template <typename Attempt>
  auto WithRetries(Retry retry, const Attempt& attempt) const;
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(UnaryMethod<Request, Response> method,
                                const Request& request, const CallOptions& call,
                                Retry retry) const;
  template <typename Request>
  absl::StatusOr<PushGradientsResult> SendPush(
      UnaryMethod<Request, v1::PushGradientsResponse> method, Request& request,
      const PushGradientsOptions& push, const CallOptions& call) const;
  // Rows of `row_bytes` each that fit one bulk message.
  int64_t RowsPerBulkMessage(int64_t row_bytes) const;
  absl::StatusOr<WriteResult> WriteInChunks(absl::string_view table,
                                            absl::Span<const int64_t> indices,
                                            int64_t start_row, int64_t rows,
                                            absl::Span<const float> values,
                                            std::optional<int64_t> zeroed_row,
                                            const CallOptions& call) const;
  // Reads `indices` if set, else the range [start_row, end_row).
  absl::StatusOr<ReadRowsResult> ReadInChunks(
      absl::string_view table, std::optional<absl::Span<const int64_t>> indices,
      int64_t start_row, int64_t end_row, const CallOptions& call) const;
  absl::StatusOr<ReadRowsResult> ReadOnce(
      const std::vector<v1::ReadRowsRequest>& requests, int64_t dim,
      const CallOptions& call) const;
  // The base of every ReadRows request of a table of dimension `dim`.
  v1::ReadRowsRequest ReadRequest(absl::string_view table, int64_t dim) const;

  const std::unique_ptr<v1::EmbeddingService::StubInterface> stub_;
  const ClientOptions options_;
  const CallContextPreparer contexts_;
  const std::string client_id_;
  // The next push sequence. Only its own value matters (each fetch_add
  // hands out a distinct number), so relaxed ordering suffices.
  mutable std::atomic<uint64_t> next_sequence_{1};
};

}  // namespace embedding

#endif  // CLIENT_CPP_EMBEDDING_CLIENT_H_
