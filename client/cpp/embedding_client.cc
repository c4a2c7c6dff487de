#include "client/cpp/embedding_client.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/cpp/dynamic_table.h"
#include "client/cpp/lookup_stream.h"
#include "client/cpp/retry.h"
#include "client/cpp/wire_codec.h"
#include "common/checked_math.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace embedding {
namespace {

using Stub = v1::EmbeddingService::StubInterface;
using internal::AppendTensorData;
using internal::BagCount;
using internal::CheckWholeRows;
using internal::DecodeTensor;
using internal::DecodeTensorInto;
using internal::EncodeRows;
using internal::SetBags;
using internal::SetIndices;
using internal::SetIndicesLe;

std::string RandomClientId() {
  std::random_device device;
  std::uniform_int_distribution<uint64_t> bits;
  return absl::StrCat(absl::Hex(bits(device), absl::kZeroPad16),
                      absl::Hex(bits(device), absl::kZeroPad16));
}

// Appends the rows of one ReadRows reply to `result`. INTERNAL when the
// server sent a reply that does not match the table's dimension.
absl::Status AppendReadReply(const v1::ReadRowsResponse& reply, int64_t dim,
                             ReadRowsResult* result) {
  const v1::Tensor& values = reply.values();
  if (values.shape_size() != 2 || values.shape(0) != reply.indices_size() ||
      values.shape(1) != dim) {
    return absl::InternalError(absl::StrCat(
        "server sent ", reply.indices_size(), " row ids with values of shape [",
        absl::StrJoin(values.shape(), ", "), "] for a table of dimension ",
        dim));
  }
  result->indices.insert(result->indices.end(), reply.indices().begin(),
                         reply.indices().end());
  EMBEDDING_RETURN_IF_ERROR(AppendTensorData(values, &result->values.data));
  result->values.shape = {static_cast<int64_t>(result->indices.size()), dim};
  return absl::OkStatus();
}

// Bytes one row of `dim` floats takes in a bulk message, with its index or
// without; saturates instead of overflowing.
int64_t BulkRowBytes(int64_t dim, bool with_index) {
  const std::optional<int64_t> floats = CheckedMul(dim, sizeof(float));
  const std::optional<int64_t> bytes =
      floats.has_value() ? CheckedAdd(*floats, with_index ? kBulkIndexBytes : 0)
                         : std::nullopt;
  return bytes.value_or(INT64_MAX);
}

// The headers of every call: the token's authorization, then the options'.
std::vector<Header> CallHeaders(const ClientOptions& options) {
  std::vector<Header> headers =
      AuthorizationHeaders(ResolveToken(options.security));
  headers.insert(headers.end(), options.metadata.begin(),
                 options.metadata.end());
  return headers;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateClientChannel(
    const std::string& address, const ClientOptions& options,
    grpc::ChannelArguments args) {
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  return CreateSecureChannel(address, options.security, options.credentials,
                             std::move(args));
}

CallContextPreparer::CallContextPreparer(const ClientOptions& options)
    : default_timeout_(options.default_timeout),
      headers_(CallHeaders(options)) {}

void CallContextPreparer::Prepare(const CallOptions& call,
                                  grpc::ClientContext* context) const {
  const absl::Duration timeout = call.timeout.value_or(default_timeout_);
  if (timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  AddHeaders(headers_, context);
  AddHeaders(call.metadata, context);
}

absl::StatusOr<std::unique_ptr<EmbeddingClient>> EmbeddingClient::Connect(
    const std::string& address, const ClientOptions& options) {
  if (address.empty()) {
    return absl::InvalidArgumentError("server address is empty");
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes must be > 0, got ", options.max_message_bytes));
  }
  if (options.default_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_timeout must be positive");
  }
  if (options.max_retries < 0 || options.retry_backoff < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_retries and retry_backoff must be >= 0, got ", options.max_retries,
        " and ", absl::FormatDuration(options.retry_backoff)));
  }
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                             CreateClientChannel(address, options));
  return std::make_unique<EmbeddingClient>(
      v1::EmbeddingService::NewStub(channel), options);
}

EmbeddingClient::EmbeddingClient(std::unique_ptr<Stub> stub,
                                 const ClientOptions& options)
    : stub_(std::move(stub)),
      options_(options),
      contexts_(options),
      client_id_(options.client_id.empty() ? RandomClientId()
                                           : options.client_id) {}

void EmbeddingClient::PrepareContext(const CallOptions& call,
                                     grpc::ClientContext* context) const {
  contexts_.Prepare(call, context);
}

// Returns attempt() (an absl::StatusOr); with kOnUnavailable, runs it again
// after an UNAVAILABLE as RetryOnUnavailable does.
template <typename Attempt>
auto EmbeddingClient::WithRetries(Retry retry, const Attempt& attempt) const {
  return RetryOnUnavailable(
      retry == Retry::kOnUnavailable ? options_.max_retries : 0,
      options_.retry_backoff, attempt);
}

template <typename Request, typename Response>
absl::StatusOr<Response> EmbeddingClient::Call(
    UnaryMethod<Request, Response> method, const Request& request,
    const CallOptions& call, Retry retry) const {
  return WithRetries(retry, [&]() -> absl::StatusOr<Response> {
    grpc::ClientContext context;  // One per attempt: its own deadline.
    PrepareContext(call, &context);
    Response response;
    EMBEDDING_RETURN_IF_ERROR(
        FromGrpcStatus((stub_.get()->*method)(&context, request, &response)));
    return response;
  });
}

int64_t EmbeddingClient::BulkRows(int64_t embedding_dim,
                                  bool with_indices) const {
  return RowsPerBulkMessage(BulkRowBytes(embedding_dim, with_indices));
}

int64_t EmbeddingClient::RowsPerBulkMessage(int64_t row_bytes) const {
  const int64_t limit =
      std::min<int64_t>(kBulkMessageBytes, options_.max_message_bytes);
  return std::max<int64_t>(
      1, (limit - kBulkHeadroomBytes) / std::max<int64_t>(row_bytes, 1));
}

absl::StatusOr<v1::TableInfo> EmbeddingClient::CreateTable(
    const v1::TableSpec& spec, const CallOptions& call) const {
  return CreateTable(spec, {}, call);
}

absl::StatusOr<v1::TableInfo> EmbeddingClient::CreateTable(
    const v1::TableSpec& spec, absl::Span<const float> initial_weights,
    const CallOptions& call) const {
  if (spec.has_dynamic() && !initial_weights.empty()) {
    // Not sent: the weights would be dropped below (num_embeddings is 0).
    return absl::InvalidArgumentError(kNoInitialWeightsForDynamicTables);
  }
  v1::CreateTableRequest request;
  *request.mutable_spec() = spec;
  const int64_t rows = spec.num_embeddings();
  const int64_t dim = spec.embedding_dim();
  // Without weights, or with a spec the server will refuse anyway.
  if (initial_weights.empty() || rows <= 0 || dim <= 0) {
    return Call(&Stub::CreateTable, request, call, Retry::kNever);
  }
  const std::optional<int64_t> elements = CheckedMul(rows, dim);
  if (elements != static_cast<int64_t>(initial_weights.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "initial_weights has ", initial_weights.size(),
        " values, expected num_embeddings x embedding_dim = ", rows, " x ",
        dim));
  }
  if (rows <= RowsPerBulkMessage(BulkRowBytes(dim, /*with_index=*/false))) {
    EMBEDDING_RETURN_IF_ERROR(EncodeRows(initial_weights, rows,
                                         "initial_weights",
                                         request.mutable_initial_weights()));
    return Call(&Stub::CreateTable, request, call, Retry::kNever);
  }
  // Too big for one message: create it zeroed, then write the rows.
  request.mutable_spec()->mutable_initializer()->mutable_constant()->set_value(
      0);
  EMBEDDING_RETURN_IF_ERROR(
      Call(&Stub::CreateTable, request, call, Retry::kNever).status());
  std::optional<int64_t> padding_row;
  if (spec.has_padding_idx()) {
    padding_row =
        spec.padding_idx() < 0 ? spec.padding_idx() + rows : spec.padding_idx();
  }
  absl::StatusOr<WriteResult> written = WriteInChunks(
      spec.name(), {}, 0, rows, initial_weights, padding_row, call);
  if (!written.ok()) {
    // The upload's failure is the one to report, not this one's.
    DeleteTable(spec.name(), call).IgnoreError();
    return written.status();
  }
  return GetTable(spec.name(), call);
}

absl::StatusOr<v1::TableInfo> EmbeddingClient::GetTable(
    absl::string_view name, const CallOptions& call) const {
  v1::GetTableRequest request;
  request.set_name(std::string(name));
  return Call(&Stub::GetTable, request, call, Retry::kOnUnavailable);
}

absl::StatusOr<std::vector<v1::TableInfo>> EmbeddingClient::ListTables(
    const CallOptions& call) const {
  EMBEDDING_ASSIGN_OR_RETURN(v1::ListTablesResponse response,
                             Call(&Stub::ListTables, v1::ListTablesRequest(),
                                  call, Retry::kOnUnavailable));
  return std::vector<v1::TableInfo>(
      std::make_move_iterator(response.mutable_tables()->begin()),
      std::make_move_iterator(response.mutable_tables()->end()));
}

absl::Status EmbeddingClient::DeleteTable(absl::string_view name,
                                          const CallOptions& call) const {
  v1::DeleteTableRequest request;
  request.set_name(std::string(name));
  return Call(&Stub::DeleteTable, request, call, Retry::kNever).status();
}

absl::StatusOr<FloatTensor> EmbeddingClient::Lookup(
    absl::string_view table, absl::Span<const int64_t> indices,
    const LookupOptions& options, const CallOptions& call) const {
  FloatTensor result;
  EMBEDDING_RETURN_IF_ERROR(LookupInto(table, indices, &result, options, call));
  return result;
}

absl::Status EmbeddingClient::LookupInto(absl::string_view table,
                                         absl::Span<const int64_t> indices,
                                         FloatTensor* result,
                                         const LookupOptions& options,
                                         const CallOptions& call) const {
  EMBEDDING_ASSIGN_OR_RETURN(
      v1::LookupResponse response,
      Call(&Stub::Lookup, internal::LookupRequestOf(table, indices, options),
           call, Retry::kOnUnavailable));
  return DecodeTensorInto(response.embeddings(), result);
}

absl::StatusOr<std::unique_ptr<LookupStream>> EmbeddingClient::OpenLookupStream(
    absl::string_view table, const LookupStreamOptions& options,
    const CallOptions& call) const {
  if (options.depth < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LookupStreamOptions::depth must be >= 1, got ", options.depth));
  }
  // The constructor is private to the stream and its opener.
  return std::unique_ptr<LookupStream>(
      new LookupStream(*this, table, options.depth, call));
}

absl::StatusOr<BagLookupResult> EmbeddingClient::LookupBag(
    absl::string_view table, const Bags& bags, v1::DType dtype,
    const CallOptions& call) const {
  v1::LookupBagRequest request;
  SetBags(table, bags, &request);
  request.set_dtype(dtype);
  EMBEDDING_ASSIGN_OR_RETURN(
      v1::LookupBagResponse response,
      Call(&Stub::LookupBag, request, call, Retry::kOnUnavailable));
  BagLookupResult result;
  EMBEDDING_ASSIGN_OR_RETURN(result.embeddings,
                             DecodeTensor(response.embeddings()));
  result.max_indices.assign(response.max_indices().begin(),
                            response.max_indices().end());
  return result;
}

// PushGradientsRequest and PushBagGradientsRequest share these fields and
// this retry policy: the (client_id, sequence) makes a retry safe.
template <typename Request>
absl::StatusOr<PushGradientsResult> EmbeddingClient::SendPush(
    UnaryMethod<Request, v1::PushGradientsResponse> method, Request& request,
    const PushGradientsOptions& push, const CallOptions& call) const {
  if (push.learning_rate.has_value()) {
    request.set_learning_rate(*push.learning_rate);
  }
  const uint64_t sequence =
      push.sequence.has_value()
          ? *push.sequence
          : next_sequence_.fetch_add(1, std::memory_order_relaxed);
  request.set_client_id(client_id_);
  request.set_sequence(sequence);
  EMBEDDING_ASSIGN_OR_RETURN(
      v1::PushGradientsResponse response,
      Call(method, request, call, Retry::kOnUnavailable));
  return PushGradientsResult{.rows_updated = response.rows_updated(),
                             .version = response.version(),
                             .duplicate = response.duplicate(),
                             .sequence = sequence,
                             .rows_admitted = response.rows_admitted(),
                             .rows_dropped = response.rows_dropped(),
                             .rows_evicted = response.rows_evicted()};
}

absl::StatusOr<PushGradientsResult> EmbeddingClient::PushGradients(
    absl::string_view table, absl::Span<const int64_t> indices,
    absl::Span<const float> grad, const PushGradientsOptions& push,
    const CallOptions& call) const {
  v1::PushGradientsRequest request;
  request.set_table(std::string(table));
  SetIndicesLe(indices, request.mutable_indices_le());
  EMBEDDING_RETURN_IF_ERROR(
      EncodeRows(grad, indices.size(), "grad", request.mutable_grad()));
  return SendPush(&Stub::PushGradients, request, push, call);
}

absl::StatusOr<PushGradientsResult> EmbeddingClient::PushBagGradients(
    absl::string_view table, const Bags& bags, absl::Span<const float> grad,
    absl::Span<const int64_t> max_indices, const PushGradientsOptions& push,
    const CallOptions& call) const {
  v1::PushBagGradientsRequest request;
  SetBags(table, bags, &request);
  EMBEDDING_RETURN_IF_ERROR(
      EncodeRows(grad, BagCount(bags), "grad", request.mutable_grad()));
  SetIndices(max_indices, request.mutable_max_indices());
  return SendPush(&Stub::PushBagGradients, request, push, call);
}

absl::StatusOr<WriteResult> EmbeddingClient::WriteRows(
    absl::string_view table, absl::Span<const int64_t> indices,
    absl::Span<const float> values, const CallOptions& call) const {
  // Before anything is sent.
  EMBEDDING_RETURN_IF_ERROR(CheckWholeRows(values, indices.size(), "values"));
  return WriteInChunks(table, indices, 0, indices.size(), values, std::nullopt,
                       call);
}

absl::StatusOr<WriteResult> EmbeddingClient::WriteRowRange(
    absl::string_view table, int64_t start_row, int64_t embedding_dim,
    absl::Span<const float> values, const CallOptions& call) const {
  EMBEDDING_RETURN_IF_ERROR(
      internal::CheckRowsOfDimension(values, embedding_dim));
  return WriteInChunks(table, {}, start_row, values.size() / embedding_dim,
                       values, std::nullopt, call);
}

// Sends `rows` rows of `values` in requests of at most one bulk message each,
// in order: to `indices` when not empty, else to rows from `start_row`. The
// row `zeroed_row` (counted from the first of `values`) goes as zeros.
absl::StatusOr<WriteResult> EmbeddingClient::WriteInChunks(
    absl::string_view table, absl::Span<const int64_t> indices,
    int64_t start_row, int64_t rows, absl::Span<const float> values,
    std::optional<int64_t> zeroed_row, const CallOptions& call) const {
  const int64_t dim = rows == 0 ? 0 : values.size() / rows;
  const int64_t step =
      RowsPerBulkMessage(BulkRowBytes(dim, /*with_index=*/!indices.empty()));
  WriteResult result;
  int64_t begin = 0;
  do {  // Zero rows still make one request: the server has the last word.
    const int64_t count = std::min(step, rows - begin);
    v1::WriteRowsRequest request;
    request.set_table(std::string(table));
    if (indices.empty()) {
      request.set_start_row(start_row + begin);
    } else {
      SetIndices(indices.subspan(begin, count), request.mutable_indices());
    }
    EMBEDDING_RETURN_IF_ERROR(
        EncodeRows(values.subspan(begin * dim, count * dim), count, "values",
                   request.mutable_values()));
    if (zeroed_row.has_value() && *zeroed_row >= begin &&
        *zeroed_row < begin + count) {
      std::memset(request.mutable_values()->mutable_data()->data() +
                      (*zeroed_row - begin) * dim * sizeof(float),
                  0, dim * sizeof(float));
    }
    EMBEDDING_ASSIGN_OR_RETURN(
        v1::WriteRowsResponse response,
        Call(&Stub::WriteRows, request, call, Retry::kNever));
    result.rows_written += response.rows_written();
    result.version = response.version();
    begin += count;
  } while (begin < rows);
  return result;
}

absl::StatusOr<ReadRowsResult> EmbeddingClient::ReadRows(
    absl::string_view table, absl::Span<const int64_t> indices,
    const CallOptions& call) const {
  return ReadInChunks(table, indices, 0, 0, call);
}

absl::StatusOr<ReadRowsResult> EmbeddingClient::ReadRowRange(
    absl::string_view table, int64_t start_row, int64_t end_row,
    const CallOptions& call) const {
  return ReadInChunks(table, std::nullopt, start_row, end_row, call);
}

absl::StatusOr<ReadRowsResult> EmbeddingClient::ReadInChunks(
    absl::string_view table, std::optional<absl::Span<const int64_t>> indices,
    int64_t start_row, int64_t end_row, const CallOptions& call) const {
  // The replies are sized from the table's dimension.
  EMBEDDING_ASSIGN_OR_RETURN(v1::TableInfo info, GetTable(table, call));
  const int64_t dim = info.spec().embedding_dim();
  v1::ReadRowsRequest base = ReadRequest(table, dim);
  std::vector<v1::ReadRowsRequest> requests;
  if (!indices.has_value()) {
    base.set_start_row(start_row);
    base.set_end_row(end_row);
    requests.push_back(std::move(base));
  } else {
    // Requests carry indices only; their rows stream back in chunks.
    const int64_t per_request = RowsPerBulkMessage(kBulkIndexBytes);
    for (size_t begin = 0; begin < indices->size(); begin += per_request) {
      v1::ReadRowsRequest& request = requests.emplace_back(base);
      SetIndices(indices->subspan(begin, per_request),
                 request.mutable_indices());
    }
  }
  return WithRetries(Retry::kOnUnavailable,
                     [&] { return ReadOnce(requests, dim, call); });
}

// One attempt of a read: every reply of every request, concatenated.
absl::StatusOr<ReadRowsResult> EmbeddingClient::ReadOnce(
    const std::vector<v1::ReadRowsRequest>& requests, int64_t dim,
    const CallOptions& call) const {
  ReadRowsResult result;
  for (const v1::ReadRowsRequest& request : requests) {
    grpc::ClientContext context;
    PrepareContext(call, &context);
    std::unique_ptr<grpc::ClientReaderInterface<v1::ReadRowsResponse>> reader =
        stub_->ReadRows(&context, request);
    absl::Status decode_status;
    v1::ReadRowsResponse chunk;
    while (reader->Read(&chunk)) {
      if (!decode_status.ok()) continue;  // Drain the stream, keep the error.
      decode_status = AppendReadReply(chunk, dim, &result);
    }
    EMBEDDING_RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
    EMBEDDING_RETURN_IF_ERROR(decode_status);
  }
  result.values.shape = {static_cast<int64_t>(result.indices.size()), dim};
  return result;
}

v1::ReadRowsRequest EmbeddingClient::ReadRequest(absl::string_view table,
                                                 int64_t dim) const {
  v1::ReadRowsRequest request;
  request.set_table(std::string(table));
  request.set_rows_per_message(
      RowsPerBulkMessage(BulkRowBytes(dim, /*with_index=*/true)));
  return request;
}

absl::Status EmbeddingClient::ReadRowRangeInChunks(
    absl::string_view table, int64_t start_row, int64_t end_row,
    absl::FunctionRef<absl::Status(const ReadRowsResult& chunk)> sink,
    const CallOptions& call) const {
  EMBEDDING_ASSIGN_OR_RETURN(v1::TableInfo info, GetTable(table, call));
  const int64_t dim = info.spec().embedding_dim();
  v1::ReadRowsRequest request = ReadRequest(table, dim);
  request.set_end_row(end_row);
  // Where an attempt starts: after the last row handed to the sink, so a
  // retry never hands a row over twice.
  int64_t next_row = start_row;
  absl::Status sink_status;
  ReadRowsResult chunk;
  const absl::StatusOr<bool> read =
      WithRetries(Retry::kOnUnavailable, [&]() -> absl::StatusOr<bool> {
        request.set_start_row(next_row);
        grpc::ClientContext context;
        PrepareContext(call, &context);
        std::unique_ptr<grpc::ClientReaderInterface<v1::ReadRowsResponse>>
            reader = stub_->ReadRows(&context, request);
        absl::Status decode_status;
        v1::ReadRowsResponse reply;
        while (reader->Read(&reply)) {
          chunk.indices.clear();
          chunk.values.data.clear();
          decode_status = AppendReadReply(reply, dim, &chunk);
          if (decode_status.ok() && !chunk.indices.empty()) {
            sink_status = sink(chunk);
            next_row = chunk.indices.back() + 1;
          }
          if (!decode_status.ok() || !sink_status.ok()) {
            context.TryCancel();  // The rest is of no use.
            break;
          }
        }
        const absl::Status status = FromGrpcStatus(reader->Finish());
        // The sink's error is not the server's: never retried.
        if (!sink_status.ok()) return false;
        EMBEDDING_RETURN_IF_ERROR(decode_status);
        EMBEDDING_RETURN_IF_ERROR(status);
        return true;
      });
  EMBEDDING_RETURN_IF_ERROR(sink_status);
  return read.status();
}

absl::StatusOr<v1::SaveCheckpointResponse> EmbeddingClient::SaveCheckpoint(
    absl::Span<const std::string> tables, bool incremental,
    const CallOptions& call) const {
  v1::SaveCheckpointRequest request;
  request.mutable_tables()->Add(tables.begin(), tables.end());
  request.set_incremental(incremental);
  // Not retried: after a lost reply a repeat would write another
  // checkpoint; GetTable's last_checkpoint tells whether the first landed.
  return Call(&Stub::SaveCheckpoint, request, call, Retry::kNever);
}

absl::StatusOr<v1::TableInfo> EmbeddingClient::SetOptimizer(
    absl::string_view table, const v1::Optimizer& optimizer,
    const CallOptions& call) const {
  v1::SetOptimizerRequest request;
  request.set_table(std::string(table));
  *request.mutable_optimizer() = optimizer;
  return Call(&Stub::SetOptimizer, request, call, Retry::kNever);
}

}  // namespace embedding
