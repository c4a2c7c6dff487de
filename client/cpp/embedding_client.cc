#include "client/cpp/embedding_client.h"

#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace embedding {
namespace {

static_assert(std::endian::native == std::endian::little,
              "Tensor.data is little-endian; this client copies raw floats");

float HalfBitsToFloat(uint16_t bits) {
  const float sign = (bits & 0x8000u) ? -1.0f : 1.0f;
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  if (exponent == 0x1f) {
    return mantissa == 0 ? sign * INFINITY : NAN;
  }
  if (exponent == 0) {  // Subnormal: no implicit leading one.
    return sign * std::ldexp(static_cast<float>(mantissa), -24);
  }
  return sign * std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
}

float BFloat16BitsToFloat(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

// Elements in `shape`, or -1 when a dimension is negative or it overflows.
int64_t ElementCount(const google::protobuf::RepeatedField<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || (dim > 0 && count > INT64_MAX / dim)) return -1;
    count *= dim;
  }
  return count;
}

// Appends the elements of `tensor` to `out` as float32 (one copy).
absl::Status AppendTensorData(const v1::Tensor& tensor,
                              std::vector<float>* out) {
  const size_t element_size = tensor.dtype() == v1::DTYPE_FLOAT16 ||
                                      tensor.dtype() == v1::DTYPE_BFLOAT16
                                  ? sizeof(uint16_t)
                                  : sizeof(float);
  const int64_t count = ElementCount(tensor.shape());
  if (count < 0 ||
      static_cast<uint64_t>(count) * element_size != tensor.data().size()) {
    return absl::InternalError(
        absl::StrCat("server sent a tensor of ", tensor.data().size(),
                     " bytes that does not match its shape"));
  }
  const size_t old_size = out->size();
  out->resize(old_size + count);
  float* dst = out->data() + old_size;
  const char* src = tensor.data().data();
  if (element_size == sizeof(float)) {
    std::memcpy(dst, src, count * sizeof(float));
    return absl::OkStatus();
  }
  const bool half = tensor.dtype() == v1::DTYPE_FLOAT16;
  for (int64_t i = 0; i < count; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + i * sizeof(bits), sizeof(bits));
    dst[i] = half ? HalfBitsToFloat(bits) : BFloat16BitsToFloat(bits);
  }
  return absl::OkStatus();
}

absl::StatusOr<FloatTensor> DecodeTensor(const v1::Tensor& tensor) {
  FloatTensor result;
  result.shape.assign(tensor.shape().begin(), tensor.shape().end());
  absl::Status status = AppendTensorData(tensor, &result.data);
  if (!status.ok()) return status;
  return result;
}

// Writes `values` as a float32 tensor [rows, values.size() / rows] straight
// into the request's bytes. INVALID_ARGUMENT when the sizes do not divide.
absl::Status EncodeRows(absl::Span<const float> values, size_t rows,
                        absl::string_view what, v1::Tensor* tensor) {
  if (rows == 0 ? !values.empty() : values.size() % rows != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", values.size(),
                     " values, which is not a multiple of ", rows, " rows"));
  }
  tensor->set_dtype(v1::DTYPE_FLOAT32);
  tensor->add_shape(static_cast<int64_t>(rows));
  tensor->add_shape(rows == 0 ? 0 : static_cast<int64_t>(values.size() / rows));
  tensor->mutable_data()->assign(reinterpret_cast<const char*>(values.data()),
                                 values.size() * sizeof(float));
  return absl::OkStatus();
}

void SetIndices(absl::Span<const int64_t> indices,
                google::protobuf::RepeatedField<int64_t>* field) {
  field->Reserve(static_cast<int>(indices.size()));
  field->Add(indices.begin(), indices.end());
}

// LookupBagRequest and PushBagGradientsRequest share these fields.
template <typename Request>
void SetBags(absl::string_view table, const Bags& bags, Request* request) {
  request->set_table(std::string(table));
  SetIndices(bags.indices, request->mutable_indices());
  SetIndices(bags.offsets, request->mutable_offsets());
  request->set_mode(bags.mode);
  request->mutable_per_sample_weights()->Add(bags.per_sample_weights.begin(),
                                             bags.per_sample_weights.end());
  request->set_include_last_offset(bags.include_last_offset);
}

// PushGradientsRequest and PushBagGradientsRequest share these fields.
template <typename Request>
void SetPushOptions(const PushOptions& push, Request* request) {
  if (push.learning_rate.has_value()) {
    request->set_learning_rate(*push.learning_rate);
  }
  request->set_client_id(push.client_id);
  request->set_sequence(push.sequence);
}

PushResult ToPushResult(const v1::PushGradientsResponse& response) {
  return {response.rows_updated(), response.version(), response.duplicate()};
}

size_t BagCount(const Bags& bags) {
  if (bags.include_last_offset) {
    return bags.offsets.empty() ? 0 : bags.offsets.size() - 1;
  }
  return bags.offsets.size();
}

}  // namespace


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
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials ? options.credentials
                          : grpc::InsecureChannelCredentials();
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, credentials, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create a channel to ", address));
  }
  return std::make_unique<EmbeddingClient>(
      v1::EmbeddingService::NewStub(channel), options);
}

EmbeddingClient::EmbeddingClient(
    std::unique_ptr<v1::EmbeddingService::StubInterface> stub,
    const ClientOptions& options)
    : stub_(std::move(stub)), options_(options) {}

void EmbeddingClient::PrepareContext(const CallOptions& call,
                                     grpc::ClientContext* context) const {
  const absl::Duration timeout =
      call.timeout.value_or(options_.default_timeout);
  if (timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  for (const auto& [key, value] : options_.metadata) {
    context->AddMetadata(key, value);
  }
  for (const auto& [key, value] : call.metadata) {
    context->AddMetadata(key, value);
  }
}

template <typename Request, typename Response>
absl::StatusOr<Response> EmbeddingClient::Call(
    grpc::Status (v1::EmbeddingService::StubInterface::*method)(
        grpc::ClientContext*, const Request&, Response*),
    const Request& request, const CallOptions& call) const {
  grpc::ClientContext context;
  PrepareContext(call, &context);
  Response response;
  absl::Status status =
      FromGrpcStatus((stub_.get()->*method)(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::TableInfo> EmbeddingClient::CreateTable(
    const v1::TableSpec& spec, const CallOptions& call) const {
  return CreateTable(spec, {}, call);
}

absl::StatusOr<v1::TableInfo> EmbeddingClient::CreateTable(
    const v1::TableSpec& spec, absl::Span<const float> initial_weights,
    const CallOptions& call) const {
  v1::CreateTableRequest request;
  *request.mutable_spec() = spec;
  if (!initial_weights.empty()) {
    absl::Status status =
        EncodeRows(initial_weights, static_cast<size_t>(spec.num_embeddings()),
                   "initial_weights", request.mutable_initial_weights());
    if (!status.ok()) return status;
  }
  return Call(&v1::EmbeddingService::StubInterface::CreateTable, request, call);
}

absl::StatusOr<v1::TableInfo> EmbeddingClient::GetTable(
    absl::string_view name, const CallOptions& call) const {
  v1::GetTableRequest request;
  request.set_name(std::string(name));
  return Call(&v1::EmbeddingService::StubInterface::GetTable, request, call);
}

absl::StatusOr<std::vector<v1::TableInfo>> EmbeddingClient::ListTables(
    const CallOptions& call) const {
  absl::StatusOr<v1::ListTablesResponse> response =
      Call(&v1::EmbeddingService::StubInterface::ListTables,
           v1::ListTablesRequest(), call);
  if (!response.ok()) return response.status();
  return std::vector<v1::TableInfo>(
      std::make_move_iterator(response->mutable_tables()->begin()),
      std::make_move_iterator(response->mutable_tables()->end()));
}

absl::Status EmbeddingClient::DeleteTable(absl::string_view name,
                                          const CallOptions& call) const {
  v1::DeleteTableRequest request;
  request.set_name(std::string(name));
  return Call(&v1::EmbeddingService::StubInterface::DeleteTable, request, call)
      .status();
}

absl::StatusOr<FloatTensor> EmbeddingClient::Lookup(
    absl::string_view table, absl::Span<const int64_t> indices,
    const LookupOptions& options, const CallOptions& call) const {
  v1::LookupRequest request;
  request.set_table(std::string(table));
  SetIndices(indices, request.mutable_indices());
  request.mutable_shape()->Add(options.shape.begin(), options.shape.end());
  request.set_dtype(options.dtype);
  absl::StatusOr<v1::LookupResponse> response =
      Call(&v1::EmbeddingService::StubInterface::Lookup, request, call);
  if (!response.ok()) return response.status();
  return DecodeTensor(response->embeddings());
}

absl::StatusOr<BagLookupResult> EmbeddingClient::LookupBag(
    absl::string_view table, const Bags& bags, v1::DType dtype,
    const CallOptions& call) const {
  v1::LookupBagRequest request;
  SetBags(table, bags, &request);
  request.set_dtype(dtype);
  absl::StatusOr<v1::LookupBagResponse> response =
      Call(&v1::EmbeddingService::StubInterface::LookupBag, request, call);
  if (!response.ok()) return response.status();
  absl::StatusOr<FloatTensor> embeddings = DecodeTensor(response->embeddings());
  if (!embeddings.ok()) return embeddings.status();
  BagLookupResult result;
  result.embeddings = *std::move(embeddings);
  result.max_indices.assign(response->max_indices().begin(),
                            response->max_indices().end());
  return result;
}

absl::StatusOr<PushResult> EmbeddingClient::PushGradients(
    absl::string_view table, absl::Span<const int64_t> indices,
    absl::Span<const float> grad, const PushOptions& push,
    const CallOptions& call) const {
  v1::PushGradientsRequest request;
  request.set_table(std::string(table));
  SetIndices(indices, request.mutable_indices());
  absl::Status status =
      EncodeRows(grad, indices.size(), "grad", request.mutable_grad());
  if (!status.ok()) return status;
  SetPushOptions(push, &request);
  absl::StatusOr<v1::PushGradientsResponse> response =
      Call(&v1::EmbeddingService::StubInterface::PushGradients, request, call);
  if (!response.ok()) return response.status();
  return ToPushResult(*response);
}

absl::StatusOr<PushResult> EmbeddingClient::PushBagGradients(
    absl::string_view table, const Bags& bags, absl::Span<const float> grad,
    absl::Span<const int64_t> max_indices, const PushOptions& push,
    const CallOptions& call) const {
  v1::PushBagGradientsRequest request;
  SetBags(table, bags, &request);
  absl::Status status =
      EncodeRows(grad, BagCount(bags), "grad", request.mutable_grad());
  if (!status.ok()) return status;
  SetIndices(max_indices, request.mutable_max_indices());
  SetPushOptions(push, &request);
  absl::StatusOr<v1::PushGradientsResponse> response = Call(
      &v1::EmbeddingService::StubInterface::PushBagGradients, request, call);
  if (!response.ok()) return response.status();
  return ToPushResult(*response);
}

absl::StatusOr<WriteResult> EmbeddingClient::WriteRows(
    absl::string_view table, absl::Span<const int64_t> indices,
    absl::Span<const float> values, const CallOptions& call) const {
  v1::WriteRowsRequest request;
  request.set_table(std::string(table));
  SetIndices(indices, request.mutable_indices());
  absl::Status status =
      EncodeRows(values, indices.size(), "values", request.mutable_values());
  if (!status.ok()) return status;
  return SendWriteRows(request, call);
}

absl::StatusOr<WriteResult> EmbeddingClient::WriteRowRange(
    absl::string_view table, int64_t start_row, int64_t embedding_dim,
    absl::Span<const float> values, const CallOptions& call) const {
  if (embedding_dim <= 0 || values.size() % embedding_dim != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "values has ", values.size(),
        " floats, which is not whole rows of dimension ", embedding_dim));
  }
  v1::WriteRowsRequest request;
  request.set_table(std::string(table));
  request.set_start_row(start_row);
  absl::Status status = EncodeRows(values, values.size() / embedding_dim,
                                   "values", request.mutable_values());
  if (!status.ok()) return status;
  return SendWriteRows(request, call);
}

absl::StatusOr<WriteResult> EmbeddingClient::SendWriteRows(
    const v1::WriteRowsRequest& request, const CallOptions& call) const {
  absl::StatusOr<v1::WriteRowsResponse> response =
      Call(&v1::EmbeddingService::StubInterface::WriteRows, request, call);
  if (!response.ok()) return response.status();
  return WriteResult{response->rows_written(), response->version()};
}

absl::StatusOr<ReadRowsResult> EmbeddingClient::ReadRows(
    absl::string_view table, absl::Span<const int64_t> indices,
    const CallOptions& call) const {
  v1::ReadRowsRequest request;
  request.set_table(std::string(table));
  SetIndices(indices, request.mutable_indices());
  return ReadRowsImpl(request, call);
}

absl::StatusOr<ReadRowsResult> EmbeddingClient::ReadRowRange(
    absl::string_view table, int64_t start_row, int64_t end_row,
    const CallOptions& call) const {
  v1::ReadRowsRequest request;
  request.set_table(std::string(table));
  request.set_start_row(start_row);
  request.set_end_row(end_row);
  return ReadRowsImpl(request, call);
}

absl::StatusOr<ReadRowsResult> EmbeddingClient::ReadRowsImpl(
    const v1::ReadRowsRequest& request, const CallOptions& call) const {
  grpc::ClientContext context;
  PrepareContext(call, &context);
  std::unique_ptr<grpc::ClientReaderInterface<v1::ReadRowsResponse>> reader =
      stub_->ReadRows(&context, request);
  ReadRowsResult result;
  int64_t dim = 0;
  absl::Status decode_status;
  v1::ReadRowsResponse chunk;
  while (reader->Read(&chunk)) {
    if (!decode_status.ok()) continue;  // Drain the stream, keep the error.
    const v1::Tensor& values = chunk.values();
    if (values.shape_size() == 2) dim = values.shape(1);
    result.indices.insert(result.indices.end(), chunk.indices().begin(),
                          chunk.indices().end());
    decode_status = AppendTensorData(values, &result.values.data);
  }
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (!status.ok()) return status;
  if (!decode_status.ok()) return decode_status;
  if (dim > 0 && static_cast<int64_t>(result.values.data.size()) !=
                     static_cast<int64_t>(result.indices.size()) * dim) {
    return absl::InternalError(
        absl::StrCat("server sent ", result.indices.size(), " row ids with ",
                     result.values.data.size(), " values of dimension ", dim));
  }
  result.values.shape = {static_cast<int64_t>(result.indices.size()), dim};
  return result;
}

absl::StatusOr<v1::TableInfo> EmbeddingClient::SetOptimizer(
    absl::string_view table, const v1::Optimizer& optimizer,
    const CallOptions& call) const {
  v1::SetOptimizerRequest request;
  request.set_table(std::string(table));
  *request.mutable_optimizer() = optimizer;
  return Call(&v1::EmbeddingService::StubInterface::SetOptimizer, request,
              call);
}

}  // namespace embedding
