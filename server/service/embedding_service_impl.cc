#include "server/service/embedding_service_impl.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/checked_math.h"
#include "common/grpc_status.h"
#include "common/optimizer_proto.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "server/service/bounded_parse.h"
#include "server/service/checkpoint_proto.h"
#include "server/service/proto_convert.h"
#include "server/service/request_indices.h"
#include "spdlog/spdlog.h"

namespace embedding {
namespace {

// Room left in a message for everything but row data.
constexpr int64_t kMessageOverheadBytes = 64 << 10;
// Streamed ReadRows chunks aim at this size unless the request says.
constexpr int64_t kReadChunkBytes = 4 << 20;
// Most bytes of one int64 on the wire (a varint).
constexpr int64_t kMaxVarintBytes = 10;

// `message` cut to kMaxStatusMessageBytes, at a UTF-8 boundary. The last
// line of defence: every message should already quote client strings short.
std::string CutForStatus(absl::string_view message) {
  if (message.size() <= kMaxStatusMessageBytes) return std::string(message);
  constexpr absl::string_view kEllipsis = "...";
  size_t end = kMaxStatusMessageBytes - kEllipsis.size();
  // Back off continuation bytes (10xxxxxx) to the start of a character.
  while (end > 0 && (static_cast<unsigned char>(message[end]) & 0xC0) == 0x80) {
    --end;
  }
  return absl::StrCat(message.substr(0, end), kEllipsis);
}

// The status a call ends with (BoundedService logs failures, with the peer
// and the table).
grpc::Status Reply(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return ToGrpcStatus(
      absl::Status(status.code(), CutForStatus(status.message())));
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

// The request's indices, in whichever form it sent them (see
// request_indices.h); `scratch` holds them if they had to be copied.
absl::StatusOr<absl::Span<const int64_t>> IndicesOf(
    const auto& request, std::vector<int64_t>* scratch) {
  return RequestIndices(request.indices(), request.indices_le(), scratch);
}

// The request's bags, validated once here (the table then checks only the
// indices against its rows). The batch views the request's arrays and
// `indices` (IndicesOf).
absl::StatusOr<ValidatedBagBatch> BagBatchOf(
    const auto& request, absl::Span<const int64_t> indices) {
  EMBEDDING_ASSIGN_OR_RETURN(const BagMode mode, FromProto(request.mode()));
  return ValidateBagBatch(
      BagBatch{.indices = indices,
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
  response->set_rows_admitted(result.rows_admitted);
  response->set_rows_dropped(result.rows_dropped);
  response->set_rows_evicted(result.rows_evicted);
}

// Shape of the lookup output: the index shape (default [count]) plus [dim].
// REQUIRES: CheckShapeRank(request.shape()) is OK.
absl::Status SetLookupShape(const v1::LookupRequest& request, int64_t count,
                            int64_t dim, v1::Tensor* out) {
  if (request.shape_size() == 0) {
    out->add_shape(count);
  } else {
    const absl::StatusOr<int64_t> product =
        ShapeElementCount(request.shape(), "index shape");
    if (!product.ok() || *product != count) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape ", ShapeText(request.shape()),
                       " does not hold the ", count, " indices given"));
    }
    out->mutable_shape()->CopyFrom(request.shape());
  }
  out->add_shape(dim);
  return absl::OkStatus();
}

}  // namespace

EmbeddingServiceImpl::EmbeddingServiceImpl(TableRegistry* registry,
                                           const ServiceOptions& options,
                                           Checkpointer* checkpointer,
                                           InflightMemory* memory)
    : registry_(registry),
      options_(options),
      checkpointer_(checkpointer),
      memory_(memory),
      gate_(options.max_open_streams, options.stream_idle_timeout) {}

template <typename Handler>
grpc::Status EmbeddingServiceImpl::Handle(grpc::ServerContext* context,
                                          const Handler& handler, bool stream) {
  // Refused while restoring or shutting down: UNAVAILABLE, which clients
  // retry where that is safe; health says NOT_SERVING meanwhile. A stream
  // past --max_open_streams: RESOURCE_EXHAUSTED.
  if (absl::Status refused =
          stream ? gate_.EnterStream(context) : gate_.Enter();
      !refused.ok()) {
    return Reply(refused);
  }
  const CallCancellation cancel(context, &gate_);
  const absl::Status status = handler(cancel);
  if (!status.ok() && cancel.IsCancelled() &&
      status.code() == cancel.Status().code()) {
    calls_cancelled_.fetch_add(1, std::memory_order_relaxed);
  }
  if (stream) {
    gate_.ExitStream(context);
  } else {
    gate_.Exit();
  }
  return Reply(status);
}

template <typename Handler>
grpc::Status EmbeddingServiceImpl::HandleStream(grpc::ServerContext* context,
                                                const Handler& handler) {
  return Handle(context, handler, /*stream=*/true);
}

absl::StatusOr<InflightBytes> EmbeddingServiceImpl::Reserve(
    int64_t bytes, absl::string_view what) const {
  if (memory_ == nullptr) return InflightBytes();
  return memory_->Reserve(bytes, what);
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

absl::StatusOr<int64_t> EmbeddingServiceImpl::CheckResponseBytes(
    int64_t rows, int64_t row_bytes) const {
  const int64_t limit = options_.max_message_bytes - kMessageOverheadBytes;
  const std::optional<int64_t> bytes = CheckedMul(rows, row_bytes);
  if (!bytes.has_value() || *bytes > limit) {
    return absl::ResourceExhaustedError(
        absl::StrCat("response of ", rows, " rows x ", row_bytes,
                     " bytes would exceed the message limit of ",
                     options_.max_message_bytes, " bytes; split the batch"));
  }
  return *bytes;
}

absl::Status EmbeddingServiceImpl::DoCreateTable(
    const v1::CreateTableRequest& request, const Cancellation& cancel,
    v1::TableInfo* response) {
  EMBEDDING_ASSIGN_OR_RETURN(TableSpec spec, FromProto(request.spec()));
  absl::Span<const float> weights;
  if (request.has_initial_weights() && spec.dynamic.has_value()) {
    return absl::InvalidArgumentError(kNoInitialWeightsForDynamicTables);
  }
  if (request.has_initial_weights()) {
    EMBEDDING_ASSIGN_OR_RETURN(
        weights, RowsView(request.initial_weights(), spec.num_embeddings,
                          spec.embedding_dim, "initial_weights"));
  }
  EMBEDDING_ASSIGN_OR_RETURN(
      const TableStats stats,
      registry_->Create(std::move(spec), weights, cancel));
  spdlog::info("created table {} ({} x {}, {} bytes)",
               QuoteForMessage(stats.spec.name), stats.spec.num_embeddings,
               stats.spec.embedding_dim, stats.memory_bytes);
  SetTableInfo(stats, response);
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoLookup(const v1::LookupRequest& request,
                                            const Cancellation& cancel,
                                            int copies,
                                            v1::LookupResponse* response,
                                            InflightBytes* held) {
  // First: a shape of millions of dimensions would cost an int64 each in
  // the response, and its product is checked below.
  EMBEDDING_RETURN_IF_ERROR(CheckShapeRank(request.shape(), "shape"));
  std::vector<int64_t> scratch;
  EMBEDDING_ASSIGN_OR_RETURN(const absl::Span<const int64_t> indices,
                             IndicesOf(request, &scratch));
  const auto count = static_cast<int64_t>(indices.size());
  EMBEDDING_RETURN_IF_ERROR(CheckIndexCount(count, /*allow_empty=*/false));
  EMBEDDING_ASSIGN_OR_RETURN(const DType dtype, FromProto(request.dtype()));
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  // Before reserving: a bad index is INVALID_ARGUMENT even when the
  // in-flight account is full.
  EMBEDDING_RETURN_IF_ERROR(table->CheckIndices(indices));
  // A table's row fits in memory, so its bytes fit in int64.
  const int64_t row_bytes = table->dim() * ElementSize(dtype);
  EMBEDDING_ASSIGN_OR_RETURN(const int64_t bytes,
                             CheckResponseBytes(count, row_bytes));
  v1::Tensor* out = response->mutable_embeddings();
  EMBEDDING_RETURN_IF_ERROR(SetLookupShape(request, count, table->dim(), out));
  out->set_dtype(ToProto(dtype));
  // At most the message limit, so the product does not overflow.
  EMBEDDING_ASSIGN_OR_RETURN(*held, Reserve(bytes * copies, "Lookup response"));
  if (cancel.IsCancelled()) return cancel.Status();
  // Rows are gathered straight into the response's bytes.
  std::string* data = out->mutable_data();
  data->resize(bytes);
  absl::Status status = table->Lookup(indices, dtype, data->data(), cancel);
  // Frees the bytes (Clear would keep them) while `held` still counts them.
  if (!status.ok()) response->clear_embeddings();
  return status;
}

absl::Status EmbeddingServiceImpl::DoLookupBag(
    const v1::LookupBagRequest& request, const Cancellation& cancel,
    v1::LookupBagResponse* response, InflightBytes* held) {
  std::vector<int64_t> scratch;
  EMBEDDING_ASSIGN_OR_RETURN(const absl::Span<const int64_t> indices,
                             IndicesOf(request, &scratch));
  EMBEDDING_RETURN_IF_ERROR(
      CheckIndexCount(static_cast<int64_t>(indices.size()),
                      /*allow_empty=*/true));
  EMBEDDING_ASSIGN_OR_RETURN(const DType dtype, FromProto(request.dtype()));
  EMBEDDING_ASSIGN_OR_RETURN(const ValidatedBagBatch batch,
                             BagBatchOf(request, indices));
  const int64_t bags = batch.bags();
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  EMBEDDING_RETURN_IF_ERROR(table->CheckIndices(batch.indices()));
  const int64_t dim = table->dim();
  const bool is_max = batch.mode() == BagMode::kMax;
  const int64_t row_bytes = dim * ElementSize(dtype);
  // MAX also returns one int64 per element: a varint on the wire, 8 bytes
  // in the message.
  EMBEDDING_RETURN_IF_ERROR(
      CheckResponseBytes(bags, row_bytes + (is_max ? dim * kMaxVarintBytes : 0))
          .status());
  // Below the message limit, which bounds the wire size of max_indices too.
  const int64_t data_bytes = bags * row_bytes;
  const int64_t max_elements = is_max ? bags * dim : 0;
  EMBEDDING_ASSIGN_OR_RETURN(
      *held, Reserve(data_bytes + max_elements * int64_t{sizeof(int64_t)},
                     "LookupBag response"));
  if (cancel.IsCancelled()) return cancel.Status();
  v1::Tensor* out = response->mutable_embeddings();
  out->set_dtype(ToProto(dtype));
  out->add_shape(bags);
  out->add_shape(dim);
  std::string* data = out->mutable_data();
  data->resize(data_bytes);
  int64_t* max_indices = nullptr;
  if (is_max) {
    response->mutable_max_indices()->Resize(max_elements, -1);
    max_indices = response->mutable_max_indices()->mutable_data();
  }
  absl::Status status =
      table->LookupBag(batch, dtype, data->data(), max_indices, cancel);
  if (!status.ok()) {
    // Frees the bytes too (Clear would keep them).
    response->clear_embeddings();
    google::protobuf::RepeatedField<int64_t>().Swap(
        response->mutable_max_indices());
  }
  return status;
}

absl::Status EmbeddingServiceImpl::DoPushGradients(
    const v1::PushGradientsRequest& request, const Cancellation& cancel,
    v1::PushGradientsResponse* response) {
  // An empty push is a step without rows (as torch's step() with an empty
  // sparse gradient): the sharded client sends one to each shard that holds
  // none of a push's rows, so every shard counts the same steps.
  std::vector<int64_t> copied_indices;
  EMBEDDING_ASSIGN_OR_RETURN(const absl::Span<const int64_t> indices,
                             IndicesOf(request, &copied_indices));
  const auto count = static_cast<int64_t>(indices.size());
  EMBEDDING_RETURN_IF_ERROR(CheckIndexCount(count, /*allow_empty=*/true));
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  EMBEDDING_ASSIGN_OR_RETURN(
      absl::Span<const float> grad,
      RowsView(request.grad(), count, table->dim(), "grad"));
  EMBEDDING_RETURN_IF_ERROR(table->CheckIndices(indices));
  EMBEDDING_ASSIGN_OR_RETURN(
      const InflightBytes scratch,
      Reserve(PushScratchBytes(count, table->dim()), "PushGradients scratch"));
  EMBEDDING_ASSIGN_OR_RETURN(
      const PushResult result,
      table->PushGradients(indices, grad, PushOptionsOf(request), cancel));
  SetPushResponse(result, response);
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoPushBagGradients(
    const v1::PushBagGradientsRequest& request, const Cancellation& cancel,
    v1::PushGradientsResponse* response) {
  std::vector<int64_t> copied_indices;
  EMBEDDING_ASSIGN_OR_RETURN(const absl::Span<const int64_t> indices,
                             IndicesOf(request, &copied_indices));
  EMBEDDING_RETURN_IF_ERROR(
      CheckIndexCount(static_cast<int64_t>(indices.size()),
                      /*allow_empty=*/true));
  EMBEDDING_ASSIGN_OR_RETURN(const ValidatedBagBatch batch,
                             BagBatchOf(request, indices));
  const int64_t bags = batch.bags();
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  EMBEDDING_ASSIGN_OR_RETURN(
      absl::Span<const float> grad,
      RowsView(request.grad(), bags, table->dim(), "grad"));
  EMBEDDING_RETURN_IF_ERROR(table->CheckIndices(batch.indices()));
  EMBEDDING_ASSIGN_OR_RETURN(
      const InflightBytes scratch,
      Reserve(
          PushScratchBytes(static_cast<int64_t>(indices.size()), table->dim()),
          "PushBagGradients scratch"));
  EMBEDDING_ASSIGN_OR_RETURN(
      const PushResult result,
      table->PushBagGradients(batch, grad, View(request.max_indices()),
                              PushOptionsOf(request), cancel));
  SetPushResponse(result, response);
  return absl::OkStatus();
}

absl::Status EmbeddingServiceImpl::DoWriteRows(
    const v1::WriteRowsRequest& request, const Cancellation& cancel,
    v1::WriteRowsResponse* response) {
  EMBEDDING_RETURN_IF_ERROR(CheckShapeRank(request.values().shape(), "values"));
  EMBEDDING_RETURN_IF_ERROR(
      CheckIndexCount(request.indices_size(), /*allow_empty=*/true));
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  int64_t rows = request.indices_size();
  if (rows == 0 && table->Stats().spec.dynamic.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("table ", QuoteForMessage(request.table()),
                     " is dynamic: it has no row range; write rows by ids"));
  }
  if (rows == 0) {
    // A range write: the values' leading dimension says how many rows.
    const auto& shape = request.values().shape();
    rows = shape.size() == 2 ? shape[0] : -1;
    if (rows <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("values must have shape [rows > 0, ", table->dim(),
                       "], got ", ShapeText(shape)));
    }
  }
  EMBEDDING_ASSIGN_OR_RETURN(
      absl::Span<const float> values,
      RowsView(request.values(), rows, table->dim(), "values"));
  absl::StatusOr<int64_t> version =
      request.indices_size() > 0
          ? table->WriteRows(View(request.indices()), values, cancel)
          : table->WriteRowRange(request.start_row(), values, cancel);
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
  return Handle(context, [&](const Cancellation& cancel) {
    return DoCreateTable(*request, cancel, response);
  });
}

grpc::Status EmbeddingServiceImpl::GetTable(grpc::ServerContext* context,
                                            const v1::GetTableRequest* request,
                                            v1::TableInfo* response) {
  return Handle(context, [&](const Cancellation&) {
    return DoGetTable(*request, response);
  });
}

grpc::Status EmbeddingServiceImpl::ListTables(
    grpc::ServerContext* context, const v1::ListTablesRequest* request,
    v1::ListTablesResponse* response) {
  return Handle(context,
                [&](const Cancellation&) { return DoListTables(response); });
}

grpc::Status EmbeddingServiceImpl::DeleteTable(
    grpc::ServerContext* context, const v1::DeleteTableRequest* request,
    v1::DeleteTableResponse* response) {
  return Handle(context, [&](const Cancellation&) {
    EMBEDDING_RETURN_IF_ERROR(registry_->Delete(request->name()));
    spdlog::info("deleted table {}", QuoteForMessage(request->name()));
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
  return Handle(context, [&](const Cancellation& cancel) {
    // Held until return: the caller sends the response and reserves it
    // meanwhile (BoundedService).
    InflightBytes held;
    return DoLookup(*request, cancel, /*copies=*/1, response, &held);
  });
}

template <typename Writer, typename Message>
absl::Status EmbeddingServiceImpl::WriteToClient(grpc::ServerContext* context,
                                                 Writer* writer,
                                                 const Message& message) {
  // Blocks while the client does not read (flow control); the gate ends the
  // stream if that lasts past --stream_idle_timeout or a drain's deadline.
  gate_.SetActivity(context, StreamActivity::kWriting).IgnoreError();
  const bool written = writer->Write(message);
  gate_.SetActivity(context, StreamActivity::kWorking).IgnoreError();
  if (!written) return absl::CancelledError("the client went away");
  return absl::OkStatus();
}

template <typename Stream, typename Read>
absl::Status EmbeddingServiceImpl::RunLookupStream(grpc::ServerContext* context,
                                                   Stream* stream,
                                                   const Cancellation& cancel,
                                                   const Read& read) {
  while (true) {
    // Refused once draining: the stream then ends with UNAVAILABLE after
    // the responses to every request it read. A drain also ends a stream
    // waiting here (its Read returns false, the client gets UNAVAILABLE).
    EMBEDDING_RETURN_IF_ERROR(
        gate_.SetActivity(context, StreamActivity::kReading));
    // Fresh messages each time: a reused one keeps its largest buffers.
    v1::LookupResponse response;
    InflightBytes response_bytes;
    {
      v1::LookupRequest request;
      InflightBytes request_bytes;
      absl::StatusOr<bool> got = read(&request, &request_bytes);
      gate_.SetActivity(context, StreamActivity::kWorking).IgnoreError();
      if (!got.ok()) return got.status();
      if (!*got) return absl::OkStatus();  // The client is done.
      // One response at a time: the stream's backlog is this one.
      EMBEDDING_RETURN_IF_ERROR(
          DoLookup(request, cancel, /*copies=*/2, &response, &response_bytes));
    }
    EMBEDDING_RETURN_IF_ERROR(WriteToClient(context, stream, response));
  }
}

grpc::Status EmbeddingServiceImpl::LookupStream(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::LookupResponse, v1::LookupRequest>* stream) {
  return HandleStream(context, [&](const Cancellation& cancel) {
    return RunLookupStream(context, stream, cancel,
                           [stream](v1::LookupRequest* request,
                                    InflightBytes*) -> absl::StatusOr<bool> {
                             return stream->Read(request);
                           });
  });
}

grpc::Status EmbeddingServiceImpl::LookupStreamRaw(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::LookupResponse, grpc::ByteBuffer>* stream) {
  return HandleStream(context, [&](const Cancellation& cancel) {
    return RunLookupStream(
        context, stream, cancel,
        [this, stream](v1::LookupRequest* request,
                       InflightBytes* held) -> absl::StatusOr<bool> {
          grpc::ByteBuffer raw;
          if (!stream->Read(&raw)) return false;
          EMBEDDING_ASSIGN_OR_RETURN(*held,
                                     ParseBounded(raw, request, memory_));
          return true;
        });
  });
}

grpc::Status EmbeddingServiceImpl::LookupBag(
    grpc::ServerContext* context, const v1::LookupBagRequest* request,
    v1::LookupBagResponse* response) {
  return Handle(context, [&](const Cancellation& cancel) {
    InflightBytes held;  // As in Lookup.
    return DoLookupBag(*request, cancel, response, &held);
  });
}

grpc::Status EmbeddingServiceImpl::PushGradients(
    grpc::ServerContext* context, const v1::PushGradientsRequest* request,
    v1::PushGradientsResponse* response) {
  return Handle(context, [&](const Cancellation& cancel) {
    return DoPushGradients(*request, cancel, response);
  });
}

grpc::Status EmbeddingServiceImpl::PushBagGradients(
    grpc::ServerContext* context, const v1::PushBagGradientsRequest* request,
    v1::PushGradientsResponse* response) {
  return Handle(context, [&](const Cancellation& cancel) {
    return DoPushBagGradients(*request, cancel, response);
  });
}

grpc::Status EmbeddingServiceImpl::WriteRows(
    grpc::ServerContext* context, const v1::WriteRowsRequest* request,
    v1::WriteRowsResponse* response) {
  return Handle(context, [&](const Cancellation& cancel) {
    return DoWriteRows(*request, cancel, response);
  });
}

grpc::Status EmbeddingServiceImpl::SetOptimizer(
    grpc::ServerContext* context, const v1::SetOptimizerRequest* request,
    v1::TableInfo* response) {
  return Handle(context, [&](const Cancellation&) {
    return DoSetOptimizer(*request, response);
  });
}

grpc::Status EmbeddingServiceImpl::ReadRows(
    grpc::ServerContext* context, const v1::ReadRowsRequest* request,
    grpc::ServerWriter<v1::ReadRowsResponse>* writer) {
  return HandleStream(context, [&](const Cancellation& cancel) {
    return DoReadRows(context, *request, cancel, writer);
  });
}

grpc::Status EmbeddingServiceImpl::SaveCheckpoint(
    grpc::ServerContext* context, const v1::SaveCheckpointRequest* request,
    v1::SaveCheckpointResponse* response) {
  return Handle(context, [&](const Cancellation&) {
    return DoSaveCheckpoint(*request, response);
  });
}

absl::Status EmbeddingServiceImpl::DoReadRows(
    grpc::ServerContext* context, const v1::ReadRowsRequest& request,
    const Cancellation& cancel,
    grpc::ServerWriter<v1::ReadRowsResponse>* writer) {
  EMBEDDING_RETURN_IF_ERROR(
      CheckIndexCount(request.indices_size(), /*allow_empty=*/true));
  // The table stays alive for the stream even if it is deleted meanwhile.
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<EmbeddingTable> table,
                             registry_->Get(request.table()));
  const absl::Span<const int64_t> indices = View(request.indices());
  const bool by_range = indices.empty();
  const bool dynamic = table->Stats().spec.dynamic.has_value();
  if (dynamic && by_range &&
      (request.start_row() != 0 || request.end_row() != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("table ", QuoteForMessage(request.table()),
                     " is dynamic: it has no row range; read it whole "
                     "(start_row and end_row 0) or by ids"));
  }
  const int64_t start = request.start_row();
  const int64_t end = request.end_row() == 0
                          ? table->Stats().spec.num_embeddings
                          : request.end_row();
  // Every index, or the range, is checked before the first row goes out
  // and before memory is reserved: a bad request is INVALID_ARGUMENT
  // whatever the load.
  if (by_range && !dynamic) {
    EMBEDDING_RETURN_IF_ERROR(table->HeldRows(start, end, 1).status());
  } else if (!by_range) {
    EMBEDDING_RETURN_IF_ERROR(table->CheckIndices(indices));
  }
  // Rows the stream may send (the range was checked above).
  const int64_t total_rows =
      dynamic && by_range ? table->Stats().local_rows
      : by_range          ? (start >= 0 && end >= start ? end - start : 0)
                          : static_cast<int64_t>(indices.size());
  const int64_t dim = table->dim();
  // A table's row fits in memory, so its bytes fit in int64.
  const int64_t row_bytes = dim * int64_t{sizeof(float)} + kMaxVarintBytes;
  const int64_t max_rows = std::max<int64_t>(
      1, (options_.max_message_bytes - kMessageOverheadBytes) / row_bytes);
  int64_t rows_per_message = request.rows_per_message();
  if (rows_per_message <= 0) {
    rows_per_message = std::max<int64_t>(1, kReadChunkBytes / row_bytes);
  }
  rows_per_message =
      std::min({rows_per_message, max_rows, std::max<int64_t>(1, total_rows)});
  // One chunk at a time, reserved once for the stream: its row ids (the
  // list and the message's), its values, and the serialized message.
  const int64_t chunk_bytes =
      rows_per_message * (2 * row_bytes + 2 * int64_t{sizeof(int64_t)});
  EMBEDDING_ASSIGN_OR_RETURN(const InflightBytes held,
                             Reserve(chunk_bytes, "ReadRows chunk"));
  const auto send = [&](absl::Span<const int64_t> chunk) -> absl::Status {
    if (cancel.IsCancelled()) return cancel.Status();
    const int64_t count = static_cast<int64_t>(chunk.size());
    v1::ReadRowsResponse response;  // Fresh: Clear would keep its buffers.
    response.mutable_indices()->Add(chunk.begin(), chunk.end());
    v1::Tensor* values = response.mutable_values();
    values->set_dtype(v1::DTYPE_FLOAT32);
    values->add_shape(count);
    values->add_shape(dim);
    values->mutable_data()->resize(count * dim * sizeof(float));
    EMBEDDING_RETURN_IF_ERROR(table->ReadRows(
        chunk, reinterpret_cast<float*>(values->mutable_data()->data()),
        cancel));
    return WriteToClient(context, writer, response);
  };
  if (!by_range) {
    for (size_t next = 0; next < indices.size();) {
      const size_t count = std::min(indices.size() - next,
                                    static_cast<size_t>(rows_per_message));
      EMBEDDING_RETURN_IF_ERROR(send(indices.subspan(next, count)));
      next += count;
    }
    return absl::OkStatus();
  }
  if (dynamic) {
    // Every held row of a dynamic table, a chunk of slots at a time.
    for (int64_t cursor = 0;;) {
      EMBEDDING_ASSIGN_OR_RETURN(const std::vector<int64_t> chunk,
                                 table->HeldIds(&cursor, rows_per_message));
      if (chunk.empty()) return absl::OkStatus();
      EMBEDDING_RETURN_IF_ERROR(send(chunk));
    }
  }
  // Row ids a chunk at a time: never a list of the whole range.
  for (int64_t next = start;;) {
    EMBEDDING_ASSIGN_OR_RETURN(const std::vector<int64_t> chunk,
                               table->HeldRows(next, end, rows_per_message));
    if (chunk.empty()) return absl::OkStatus();
    EMBEDDING_RETURN_IF_ERROR(send(chunk));
    next = chunk.back() + 1;
  }
}

}  // namespace embedding
