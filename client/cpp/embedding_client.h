// C++ client of the Embedding Service: one method per RPC of
// embedding.v1.EmbeddingService, typed results, errors as absl::Status.
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
// Thread-safe: an EmbeddingClient may be shared by many threads without
// external synchronization (it holds only an immutable channel and stub).
//
// Errors carry the server's gRPC code and message unchanged (NOT_FOUND for an
// unknown table, INVALID_ARGUMENT for bad input, ...); a failure to reach the
// server is UNAVAILABLE, an expired deadline DEADLINE_EXCEEDED.
#ifndef CLIENT_CPP_EMBEDDING_CLIENT_H_
#define CLIENT_CPP_EMBEDDING_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "embedding/v1/embedding_service.grpc.pb.h"

namespace embedding {

// A gRPC metadata header: key (lower case) and value.
using Header = std::pair<std::string, std::string>;

struct ClientOptions {
  // Deadline of each call that does not set its own.
  // Default: 30 seconds. absl::InfiniteDuration() means no deadline.
  absl::Duration default_timeout = absl::Seconds(30);
  // Largest message sent or received, in bytes.
  // Default: 256 MiB. REQUIRES: > 0.
  int max_message_bytes = 256 << 20;
  // Default: insecure (plaintext) credentials.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Headers sent with every call (e.g. authorization).
  std::vector<Header> metadata;
};

// Per-call overrides.
struct CallOptions {
  // Default: ClientOptions::default_timeout.
  std::optional<absl::Duration> timeout;
  // Sent in addition to ClientOptions::metadata.
  std::vector<Header> metadata;
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
  // Default: float32.
  v1::DType dtype = v1::DTYPE_FLOAT32;
};

// The bags of an nn.EmbeddingBag call (views; the caller keeps them alive).
struct Bags {
  absl::Span<const int64_t> indices;
  // Start of each bag in `indices`, as nn.EmbeddingBag's offsets.
  absl::Span<const int64_t> offsets;
  v1::BagMode mode = v1::BAG_MODE_SUM;
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

struct PushOptions {
  // Overrides the table's learning rate for this push.
  std::optional<float> learning_rate;
  // Exactly-once delivery: a retried (client_id, sequence) is not applied
  // twice. Unset (empty / 0): no deduplication.
  std::string client_id;
  uint64_t sequence = 0;
};

struct PushResult {
  int64_t rows_updated = 0;
  int64_t version = 0;
  // True when this (client_id, sequence) had already been applied.
  bool duplicate = false;
};

struct WriteResult {
  int64_t rows_written = 0;
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
  // Opens a channel to `address` ("host:port"). The connection is made
  // lazily: an unreachable server shows as UNAVAILABLE on the first call.
  // INVALID_ARGUMENT for an empty address or bad options.
  static absl::StatusOr<std::unique_ptr<EmbeddingClient>> Connect(
      const std::string& address, const ClientOptions& options = {});

  // Wraps an existing stub (tests, custom channels).
  EmbeddingClient(std::unique_ptr<v1::EmbeddingService::StubInterface> stub,
                  const ClientOptions& options);

  EmbeddingClient(const EmbeddingClient&) = delete;
  EmbeddingClient& operator=(const EmbeddingClient&) = delete;

  // Creates a table from `spec`, optionally with float32 starting weights
  // [num_embeddings, embedding_dim] (row-major). ALREADY_EXISTS if the name
  // is taken; RESOURCE_EXHAUSTED over the memory budget.
  absl::StatusOr<v1::TableInfo> CreateTable(const v1::TableSpec& spec,
                                            const CallOptions& call = {}) const;
  absl::StatusOr<v1::TableInfo> CreateTable(
      const v1::TableSpec& spec, absl::Span<const float> initial_weights,
      const CallOptions& call = {}) const;

  // Returns a table's spec and counters. NOT_FOUND for an unknown table.
  absl::StatusOr<v1::TableInfo> GetTable(absl::string_view name,
                                         const CallOptions& call = {}) const;
  absl::StatusOr<std::vector<v1::TableInfo>> ListTables(
      const CallOptions& call = {}) const;
  // NOT_FOUND for an unknown table.
  absl::Status DeleteTable(absl::string_view name,
                           const CallOptions& call = {}) const;

  // Returns the rows of `indices`, shape `options.shape + [embedding_dim]`.
  // INVALID_ARGUMENT for an index outside [0, num_embeddings).
  absl::StatusOr<FloatTensor> Lookup(absl::string_view table,
                                     absl::Span<const int64_t> indices,
                                     const LookupOptions& options = {},
                                     const CallOptions& call = {}) const;

  // Pools `bags` as nn.EmbeddingBag; result shape [bags, embedding_dim].
  absl::StatusOr<BagLookupResult> LookupBag(absl::string_view table,
                                            const Bags& bags,
                                            v1::DType dtype = v1::DTYPE_FLOAT32,
                                            const CallOptions& call = {}) const;

  // Applies the gradient `grad` (float32 [indices.size(), embedding_dim],
  // row-major) of a lookup of `indices` with the table's optimizer.
  // INVALID_ARGUMENT for a gradient of the wrong size or non-finite values.
  absl::StatusOr<PushResult> PushGradients(absl::string_view table,
                                           absl::Span<const int64_t> indices,
                                           absl::Span<const float> grad,
                                           const PushOptions& push = {},
                                           const CallOptions& call = {}) const;

  // Applies the gradient `grad` (float32 [bags, embedding_dim]) of a
  // LookupBag of `bags`; MAX mode needs that lookup's `max_indices`.
  absl::StatusOr<PushResult> PushBagGradients(
      absl::string_view table, const Bags& bags, absl::Span<const float> grad,
      absl::Span<const int64_t> max_indices = {}, const PushOptions& push = {},
      const CallOptions& call = {}) const;

  // Overwrites the rows `indices` with `values` (float32
  // [indices.size(), embedding_dim]).
  absl::StatusOr<WriteResult> WriteRows(absl::string_view table,
                                        absl::Span<const int64_t> indices,
                                        absl::Span<const float> values,
                                        const CallOptions& call = {}) const;
  // Overwrites the rows [start_row, start_row + values.size() / dim).
  absl::StatusOr<WriteResult> WriteRowRange(absl::string_view table,
                                            int64_t start_row,
                                            int64_t embedding_dim,
                                            absl::Span<const float> values,
                                            const CallOptions& call = {}) const;

  // Reads the rows `indices` (the whole stream, concatenated).
  absl::StatusOr<ReadRowsResult> ReadRows(absl::string_view table,
                                          absl::Span<const int64_t> indices,
                                          const CallOptions& call = {}) const;
  // Reads the rows [start_row, end_row); end_row 0 means to the end.
  absl::StatusOr<ReadRowsResult> ReadRowRange(
      absl::string_view table, int64_t start_row, int64_t end_row,
      const CallOptions& call = {}) const;

  // Replaces the hyper-parameters of a table's optimizer (same kind).
  // INVALID_ARGUMENT for a different kind or bad values.
  absl::StatusOr<v1::TableInfo> SetOptimizer(
      absl::string_view table, const v1::Optimizer& optimizer,
      const CallOptions& call = {}) const;

 private:
  void PrepareContext(const CallOptions& call,
                      grpc::ClientContext* context) const;
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(
      grpc::Status (v1::EmbeddingService::StubInterface::*method)(
          grpc::ClientContext*, const Request&, Response*),
      const Request& request, const CallOptions& call) const;
  absl::StatusOr<WriteResult> SendWriteRows(const v1::WriteRowsRequest& request,
                                            const CallOptions& call) const;
  absl::StatusOr<ReadRowsResult> ReadRowsImpl(
      const v1::ReadRowsRequest& request, const CallOptions& call) const;

  const std::unique_ptr<v1::EmbeddingService::StubInterface> stub_;
  const ClientOptions options_;
};

}  // namespace embedding

#endif  // CLIENT_CPP_EMBEDDING_CLIENT_H_
