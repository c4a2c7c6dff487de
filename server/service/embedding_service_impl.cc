#include "server/service/embedding_service_impl.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/checked_math.h"
#include "common/grpc_status.h"
#include "common/optimizer_proto.h"
#include "common/status_macros.h"
#include "server/service/checkpoint_proto.h"
#include "server/service/proto_convert.h"
#include "spdlog/spdlog.h"

namespace embedding {
namespace {

// Room left in a message for everything but row data.
constexpr int64_t kMessageOverheadBytes = 64 << 10;
// Streamed ReadRows chunks aim at this size unless the request says.
constexpr int64_t kReadChunkBytes = 4 << 20;

// The status a call ends with; failures are logged at debug level (never the
// payload).
grpc::Status Reply(const char* method, const absl::Status& status) {
  if (!status.ok()) {
    spdlog::debug("{} failed: {}", method, status.ToString());
  }
  return ToGrpcStatus(status);
}

template <typename T>
absl::Span<const T> View(const google::protobuf::RepeatedField<T>& field) {
  return absl::MakeConstSpan(field.data(), field.size());
}

PushOptions PushOptionsOf(const auto& request) {
  PushOptions options;
  if (request.has_learning_rate()) {
    options.learning_rate = request.learning_rate();
  }
  options.client_id = request.client_id();
  options.sequence = request.sequence();
  return options;
}

// The request's bags, validated once here (the table then checks only the
// indices against its rows). The batch views the request's arrays.
absl::StatusOr<ValidatedBagBatch> BagBatchOf(const auto& request) {
  EMBEDDING_ASSIGN_OR_RETURN(const BagMode mode, FromProto(request.mode()));
  return ValidateBagBatch(
      BagBatch{.indices = View(request.indices()),
               .offsets = View(request.offsets()),
               .mode = mode,
               .per_sample_weights = View(request.per_sample_weights()),
               .include_last_offset = request.include_last_offset()});
}

void SetPushResponse(const PushResult& result,
                     v1::PushGradientsResponse* response) {
  response->set_rows_updated(result.rows_updated);
  response->set_version(result.version);
  response->set_duplicate(result.duplicate);
}

// Shape of the lookup output: the index shape (default [n]) plus [dim].
absl::Status SetLookupShape(const v1::LookupRequest& request, int64_t dim,
                            v1::Tensor* out) {
  const int64_t count = request.indices_size();
  if (request.shape_size() == 0) {
    out->add_shape(count);
  } else {
    const absl::StatusOr<int64_t> product =
        ShapeElementCount(request.shape(), "index shape");
    if (!product.ok() || *product != count) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape [", absl::StrJoin(request.shape(), ", "),
                       "] does not hold the ", count, " indices given"));
    }
    out->mutable_shape()->CopyFrom(request.shape());
  }
  out->add_shape(dim);
  return absl::OkStatus();
}

}  // namespace

EmbeddingServiceImpl::EmbeddingServiceImpl(TableRegistry* registry,
                                           const ServiceOptions& options,
                                           Checkpointer* checkpointer)
    : registry_(registry), options_(options), checkpointer_(checkpointer) {}

template <typename Handler>
grpc::Status EmbeddingServiceImpl::Handle(const char* method,
                                          const Handler& handler) {
  // Refused while restoring or shutting down: UNAVAILABLE, which clients
  // retry where that is safe; health says NOT_SERVING meanwhile.
  if (absl::Status refused = gate_.Enter(); !refused.ok()) {
    return Reply(method, refused);
  }
  const grpc::Status status = Reply(method, handler());
  gate_.Exit();
  return status;
}

void EmbeddingServiceImpl::SetTableInfo(const TableStats& stats,
                                        v1::TableInfo* info) const {
  ToProto(stats, info);
  if (checkpointer_ == nullptr) return;
  if (const std::optional<CheckpointRecord> last =
          checkpointer_->LastCheckpoint(stats.spec.name)) {
    ToProto(*last, info->mutable_last_checkpoint());
  }
}

absl::Status EmbeddingServiceImpl::CheckIndexCount(int64_t count,
                                                   bool allow_empty) const {
  if (count == 0 && !allow_empty) {
    return absl::InvalidArgumentError("indices is empty");
  }
  if (count > options_.max_indices_per_request) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request has ", count, " indices; the limit is ",
        options_.max_indices_per_request, " (--max_indices_per_request)"));
  }
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::CheckResponseBytes(int64_t rows,
                                                      int64_t row_bytes) const {
  const int64_t limit = options_.max_message_bytes - kMessageOverheadBytes;
  if (rows > limit / row_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("response of ", rows, " rows x ", row_bytes,
                     " bytes would exceed the message limit of ",
                     options_.max_message_bytes, " bytes; split the batch"));
  }
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoCreateTable(
    const v1::CreateTableRequest& request, v1::TableInfo* response) {
  TableSpec spec = FromProto(request.spec());
  absl::Span<const float> weights;
  if (request.has_initial_weights()) {
    EMBEDDING_ASSIGN_OR_RETURN(
        weights, RowsView(request.initial_weights(), spec.num_embeddings,
                          spec.embedding_dim, "initial_weights"));
  }
  EMBEDDING_ASSIGN_OR_RETURN(const TableStats stats,
                             registry_->Create(std::move(spec), weights));
  spdlog::info("created table \"{}\" ({} x {}, {} bytes)", stats.spec.name,
               stats.spec.num_embeddings, stats.spec.embedding_dim,
               stats.memory_bytes);
  SetTableInfo(stats, response);
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoLookup(const v1::LookupRequest& request,
                                            v1::LookupResponse* response) {
  EMBEDDING_RETURN_IF_ERROR(
      CheckIndexCount(request.indices_size(), /*allow_empty=*/false));
  EMBEDDING_ASSIGN_OR_RETURN(const DType dtype, FromProto(request.dtype()));
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  const int64_t row_bytes = table->dim() * ElementSize(dtype);
  EMBEDDING_RETURN_IF_ERROR(
      CheckResponseBytes(request.indices_size(), row_bytes));
  v1::Tensor* out = response->mutable_embeddings();
  EMBEDDING_RETURN_IF_ERROR(SetLookupShape(request, table->dim(), out));
  out->set_dtype(ToProto(dtype));
  // Rows are gathered straight into the response's bytes.
  std::string* data = out->mutable_data();
  data->resize(request.indices_size() * row_bytes);
  return table->Lookup(View(request.indices()), dtype, data->data());
}

absl::Status EmbeddingServiceImpl::DoLookupBag(
    const v1::LookupBagRequest& request, v1::LookupBagResponse* response) {
  EMBEDDING_RETURN_IF_ERROR(
      CheckIndexCount(request.indices_size(), /*allow_empty=*/true));
  EMBEDDING_ASSIGN_OR_RETURN(const DType dtype, FromProto(request.dtype()));
  EMBEDDING_ASSIGN_OR_RETURN(const ValidatedBagBatch batch,
                             BagBatchOf(request));
  const int64_t bags = batch.bags();
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  const int64_t dim = table->dim();
  const bool is_max = batch.mode() == BagMode::kMax;
  // MAX also returns one int64 per element.
  const int64_t row_bytes =
      dim * ElementSize(dtype) + (is_max ? dim * int64_t{10} : 0);
  EMBEDDING_RETURN_IF_ERROR(CheckResponseBytes(bags, row_bytes));
  v1::Tensor* out = response->mutable_embeddings();
  out->set_dtype(ToProto(dtype));
  out->add_shape(bags);
  out->add_shape(dim);
  std::string* data = out->mutable_data();
  data->resize(bags * dim * ElementSize(dtype));
  int64_t* max_indices = nullptr;
  if (is_max) {
    response->mutable_max_indices()->Resize(bags * dim, -1);
    max_indices = response->mutable_max_indices()->mutable_data();
  }
  absl::Status status =
      table->LookupBag(batch, dtype, data->data(), max_indices);
  if (!status.ok()) response->Clear();
  return status;
}

absl::Status EmbeddingServiceImpl::DoPushGradients(
    const v1::PushGradientsRequest& request,
    v1::PushGradientsResponse* response) {
  EMBEDDING_RETURN_IF_ERROR(
      CheckIndexCount(request.indices_size(), /*allow_empty=*/false));
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  EMBEDDING_ASSIGN_OR_RETURN(
      absl::Span<const float> grad,
      RowsView(request.grad(), request.indices_size(), table->dim(), "grad"));
  EMBEDDING_ASSIGN_OR_RETURN(const PushResult result,
                             table->PushGradients(View(request.indices()), grad,
                                                  PushOptionsOf(request)));
  SetPushResponse(result, response);
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoPushBagGradients(
    const v1::PushBagGradientsRequest& request,
    v1::PushGradientsResponse* response) {
  EMBEDDING_RETURN_IF_ERROR(
      CheckIndexCount(request.indices_size(), /*allow_empty=*/true));
  EMBEDDING_ASSIGN_OR_RETURN(const ValidatedBagBatch batch,
                             BagBatchOf(request));
  const int64_t bags = batch.bags();
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  EMBEDDING_ASSIGN_OR_RETURN(
      absl::Span<const float> grad,
      RowsView(request.grad(), bags, table->dim(), "grad"));
  EMBEDDING_ASSIGN_OR_RETURN(
      const PushResult result,
      table->PushBagGradients(batch, grad, View(request.max_indices()),
                              PushOptionsOf(request)));
  SetPushResponse(result, response);
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoWriteRows(
    const v1::WriteRowsRequest& request, v1::WriteRowsResponse* response) {
  EMBEDDING_RETURN_IF_ERROR(
      CheckIndexCount(request.indices_size(), /*allow_empty=*/true));
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  int64_t rows = request.indices_size();
  if (rows == 0) {
    // A range write: the values' leading dimension says how many rows.
    const auto& shape = request.values().shape();
    rows = shape.size() == 2 ? shape[0] : -1;
    if (rows <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("values must have shape [rows > 0, ", table->dim(),
                       "], got [", absl::StrJoin(shape, ", "), "]"));
    }
  }
  EMBEDDING_ASSIGN_OR_RETURN(
      absl::Span<const float> values,
      RowsView(request.values(), rows, table->dim(), "values"));
  absl::StatusOr<int64_t> version =
      request.indices_size() > 0
          ? table->WriteRows(View(request.indices()), values)
          : table->WriteRowRange(request.start_row(), values);
  EMBEDDING_RETURN_IF_ERROR(version.status());
  response->set_rows_written(rows);
  response->set_version(*version);
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoSetOptimizer(
    const v1::SetOptimizerRequest& request, v1::TableInfo* response) {
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  EMBEDDING_RETURN_IF_ERROR(
      table->SetOptimizer(OptimizerFromProto(request.optimizer())));
  SetTableInfo(table->Stats(), response);
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoGetTable(
    const v1::GetTableRequest& request, v1::TableInfo* response) {
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.name()));
  SetTableInfo(table->Stats(), response);
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoListTables(
    v1::ListTablesResponse* response) {
  for (const TableStats& stats : registry_->List()) {
    SetTableInfo(stats, response->add_tables());
  }
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoSaveCheckpoint(
    const v1::SaveCheckpointRequest& request,
    v1::SaveCheckpointResponse* response) {
  if (checkpointer_ == nullptr) {
    return absl::FailedPreconditionError(
        "this server keeps no checkpoints: start it with --checkpoint_dir");
  }
  const std::vector<std::string> tables(request.tables().begin(),
                                        request.tables().end());
  EMBEDDING_ASSIGN_OR_RETURN(
      const std::vector<SavedTable> saved,
      checkpointer_->Save(
          tables,
          request.incremental() ? SaveKind::kIncremental : SaveKind::kFull,
          "SaveCheckpoint"));
  for (const SavedTable& table : saved) {
    ToProto(table, response->add_saved());
  }
  return absl::OkStatus();
}

grpc::Status EmbeddingServiceImpl::CreateTable(
    grpc::ServerContext* context, const v1::CreateTableRequest* request,
    v1::TableInfo* response) {
  return Handle("CreateTable",
                [&] { return DoCreateTable(*request, response); });
}

grpc::Status EmbeddingServiceImpl::GetTable(grpc::ServerContext* context,
                                            const v1::GetTableRequest* request,
                                            v1::TableInfo* response) {
  return Handle("GetTable", [&] { return DoGetTable(*request, response); });
}

grpc::Status EmbeddingServiceImpl::ListTables(
    grpc::ServerContext* context, const v1::ListTablesRequest* request,
    v1::ListTablesResponse* response) {
  return Handle("ListTables", [&] { return DoListTables(response); });
}

grpc::Status EmbeddingServiceImpl::DeleteTable(
    grpc::ServerContext* context, const v1::DeleteTableRequest* request,
    v1::DeleteTableResponse* response) {
  return Handle("DeleteTable", [&] {
    EMBEDDING_RETURN_IF_ERROR(registry_->Delete(request->name()));
    spdlog::info("deleted table \"{}\"", request->name());
    // Its checkpoints go too, or a restart would bring the table back.
    if (checkpointer_ != nullptr) {
      EMBEDDING_RETURN_IF_ERROR(checkpointer_->Forget(request->name()));
    }
    return absl::OkStatus();
  });
}

grpc::Status EmbeddingServiceImpl::Lookup(grpc::ServerContext* context,
                                          const v1::LookupRequest* request,
                                          v1::LookupResponse* response) {
  return Handle("Lookup", [&] { return DoLookup(*request, response); });
}

grpc::Status EmbeddingServiceImpl::LookupStream(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::LookupResponse, v1::LookupRequest>* stream) {
  if (absl::Status refused = gate_.EnterStream(context); !refused.ok()) {
    return Reply("LookupStream", refused);
  }
  const grpc::Status status = Reply("LookupStream", DoLookupStream(stream));
  gate_.ExitStream(context);
  return status;
}

absl::Status EmbeddingServiceImpl::DoLookupStream(
    grpc::ServerReaderWriter<v1::LookupResponse, v1::LookupRequest>* stream) {
  v1::LookupRequest request;
  v1::LookupResponse response;
  // A drain cancels the stream, which ends a Read that waits for the client.
  while (stream->Read(&request)) {
    if (gate_.draining()) {
      return absl::UnavailableError("the server is shutting down");
    }
    response.Clear();
    EMBEDDING_RETURN_IF_ERROR(DoLookup(request, &response));
    if (!stream->Write(response)) break;  // The client went away.
  }
  return absl::OkStatus();
}

grpc::Status EmbeddingServiceImpl::LookupBag(
    grpc::ServerContext* context, const v1::LookupBagRequest* request,
    v1::LookupBagResponse* response) {
  return Handle("LookupBag", [&] { return DoLookupBag(*request, response); });
}

grpc::Status EmbeddingServiceImpl::PushGradients(
    grpc::ServerContext* context, const v1::PushGradientsRequest* request,
    v1::PushGradientsResponse* response) {
  return Handle("PushGradients",
                [&] { return DoPushGradients(*request, response); });
}

grpc::Status EmbeddingServiceImpl::PushBagGradients(
    grpc::ServerContext* context, const v1::PushBagGradientsRequest* request,
    v1::PushGradientsResponse* response) {
  return Handle("PushBagGradients",
                [&] { return DoPushBagGradients(*request, response); });
}

grpc::Status EmbeddingServiceImpl::WriteRows(
    grpc::ServerContext* context, const v1::WriteRowsRequest* request,
    v1::WriteRowsResponse* response) {
  return Handle("WriteRows", [&] { return DoWriteRows(*request, response); });
}

grpc::Status EmbeddingServiceImpl::SetOptimizer(
    grpc::ServerContext* context, const v1::SetOptimizerRequest* request,
    v1::TableInfo* response) {
  return Handle("SetOptimizer",
                [&] { return DoSetOptimizer(*request, response); });
}

grpc::Status EmbeddingServiceImpl::ReadRows(
    grpc::ServerContext* context, const v1::ReadRowsRequest* request,
    grpc::ServerWriter<v1::ReadRowsResponse>* writer) {
  return Handle("ReadRows", [&] { return DoReadRows(*request, writer); });
}

grpc::Status EmbeddingServiceImpl::SaveCheckpoint(
    grpc::ServerContext* context, const v1::SaveCheckpointRequest* request,
    v1::SaveCheckpointResponse* response) {
  return Handle("SaveCheckpoint",
                [&] { return DoSaveCheckpoint(*request, response); });
}

absl::Status EmbeddingServiceImpl::DoReadRows(
    const v1::ReadRowsRequest& request,
    grpc::ServerWriter<v1::ReadRowsResponse>* writer) {
  EMBEDDING_RETURN_IF_ERROR(
      CheckIndexCount(request.indices_size(), /*allow_empty=*/true));
  // The table stays alive for the stream even if it is deleted meanwhile.
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  std::vector<int64_t> rows;
  if (request.indices_size() > 0) {
    rows.assign(request.indices().begin(), request.indices().end());
    // Every index is checked before the first row goes out.
    EMBEDDING_RETURN_IF_ERROR(table->CheckIndices(rows));
  } else {
    const int64_t end = request.end_row() == 0
                            ? table->Stats().spec.num_embeddings
                            : request.end_row();
    EMBEDDING_ASSIGN_OR_RETURN(rows, table->HeldRows(request.start_row(), end));
  }
  const int64_t dim = table->dim();
  const int64_t row_bytes = dim * sizeof(float) + 10;
  const int64_t max_rows = std::max<int64_t>(
      1, (options_.max_message_bytes - kMessageOverheadBytes) / row_bytes);
  int64_t rows_per_message = request.rows_per_message();
  if (rows_per_message <= 0) {
    rows_per_message = std::max<int64_t>(1, kReadChunkBytes / row_bytes);
  }
  rows_per_message = std::min(rows_per_message, max_rows);
  v1::ReadRowsResponse response;
  for (size_t next = 0; next < rows.size();) {
    const size_t count =
        std::min(rows.size() - next, static_cast<size_t>(rows_per_message));
    const absl::Span<const int64_t> chunk(&rows[next], count);
    next += count;
    response.Clear();
    response.mutable_indices()->Add(chunk.begin(), chunk.end());
    v1::Tensor* values = response.mutable_values();
    values->set_dtype(v1::DTYPE_FLOAT32);
    values->add_shape(static_cast<int64_t>(count));
    values->add_shape(dim);
    values->mutable_data()->resize(count * dim * sizeof(float));
    EMBEDDING_RETURN_IF_ERROR(table->ReadRows(
        chunk, reinterpret_cast<float*>(values->mutable_data()->data())));
    if (!writer->Write(response)) {
      return absl::CancelledError("the client went away during ReadRows");
    }
  }
  return absl::OkStatus();
}

}  // namespace embedding
