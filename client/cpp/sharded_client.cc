#include "client/cpp/sharded_client.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cpp/bag_pooling.h"
#include "client/cpp/dynamic_table.h"
#include "client/cpp/shard_fanout.h"
#include "client/cpp/wire_codec.h"
#include "common/checked_math.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/text_format.h"

namespace embedding {
namespace {

using internal::FanOut;
using internal::Stub;
using internal::SubCall;

using Routes = internal::ShardRoutes;

Routes Route(const ShardLayout& layout, absl::Span<const int64_t> indices) {
  Routes routes;
  routes.indices.resize(layout.shard_count());
  routes.positions.resize(layout.shard_count());
  // Rows spread about evenly: one allocation per shard, mostly.
  const size_t expected = indices.size() / layout.shard_count() + 16;
  for (int32_t k = 0; k < layout.shard_count(); ++k) {
    routes.indices[k].reserve(expected);
    routes.positions[k].reserve(expected);
  }
  for (size_t i = 0; i < indices.size(); ++i) {
    const int32_t shard = layout.OwnerShard(indices[i]);
    routes.indices[shard].push_back(indices[i]);
    routes.positions[shard].push_back(i);
  }
  return routes;
}

// The rows at `positions` of `values` ([*, dim]), in that order.
std::vector<float> GatherRows(absl::Span<const float> values, int64_t dim,
                              absl::Span<const size_t> positions) {
  std::vector<float> rows(positions.size() * dim);
  for (size_t i = 0; i < positions.size(); ++i) {
    std::memcpy(&rows[i * dim], &values[positions[i] * dim],
                dim * sizeof(float));
  }
  return rows;
}

// Puts the rows of `rows` ([positions.size(), dim]) at `positions` of `out`.
void ScatterRows(absl::Span<const float> rows, int64_t dim,
                 absl::Span<const size_t> positions, std::vector<float>& out) {
  for (size_t i = 0; i < positions.size(); ++i) {
    std::memcpy(&out[positions[i] * dim], &rows[i * dim], dim * sizeof(float));
  }
}

// The server's check and message (EmbeddingTable::ValidateIndices), so that
// positions are the caller's, not a shard's: a dense table's rows are
// [0, num_embeddings), a dynamic table's ids any int64 but the reserved one.
absl::Status ValidateIndices(absl::Span<const int64_t> indices,
                             const v1::TableSpec& spec) {
  if (spec.has_dynamic()) return CheckDynamicIds(indices);
  const int64_t num_embeddings = spec.num_embeddings();
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= num_embeddings) {
      return absl::InvalidArgumentError(
          absl::StrCat("index ", indices[i], " at position ", i,
                       " is outside [0, ", num_embeddings, ")"));
    }
  }
  return absl::OkStatus();
}

bool KnownDType(v1::DType dtype) {
  return dtype == v1::DTYPE_FLOAT32 || dtype == v1::DTYPE_FLOAT16 ||
         dtype == v1::DTYPE_BFLOAT16;
}

// Whether a lookup of `count` indices of shape `shape` is well formed.
bool ShapeFits(absl::Span<const int64_t> shape, size_t count) {
  if (shape.empty()) return count > 0;
  int64_t elements = 1;
  for (int64_t dimension : shape) {
    const std::optional<int64_t> product =
        dimension < 0 ? std::nullopt : CheckedMul(elements, dimension);
    if (!product.has_value()) return false;
    elements = *product;
  }
  return count > 0 && elements == static_cast<int64_t>(count);
}

// A float32 tensor [rows, dim] (also for zero rows, which EncodeRows cannot
// shape: a sub-push with none of a shard's rows is [0, dim]).
void SetRows(absl::Span<const float> values, int64_t rows, int64_t dim,
             v1::Tensor* tensor) {
  tensor->set_dtype(v1::DTYPE_FLOAT32);
  tensor->add_shape(rows);
  tensor->add_shape(dim);
  tensor->mutable_data()->assign(reinterpret_cast<const char*>(values.data()),
                                 values.size() * sizeof(float));
}

// The shards that hold some of the routed rows.
std::vector<int> RoutedShards(const Routes& routes) {
  std::vector<int> shards;
  for (size_t k = 0; k < routes.indices.size(); ++k) {
    if (!routes.indices[k].empty()) shards.push_back(static_cast<int>(k));
  }
  return shards;
}

// Whether a shard's failure says it is down (so others may still serve).
bool ShardIsDown(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

int64_t PaddingRow(const v1::TableSpec& spec) {
  return spec.has_padding_idx() ? spec.padding_idx() : -1;
}

// `status` of shard `k`, its message prefixed with the shard.
absl::Status PrefixShard(absl::Span<const std::string> addresses, int k,
                         const absl::Status& status) {
  return absl::Status(
      status.code(),
      absl::StrCat("shard ", k, " (", addresses[k], "): ", status.message()));
}

// The failures among `calls`, all in one status (the first one's code).
template <typename Request, typename Response>
absl::Status Failures(absl::Span<const std::string> addresses,
                      const std::vector<SubCall<Request, Response>>& calls) {
  std::optional<absl::StatusCode> code;
  std::vector<std::string> messages;
  for (const auto& sub : calls) {
    if (sub.result.ok()) continue;
    if (!code.has_value()) code = sub.result.status().code();
    messages.emplace_back(
        PrefixShard(addresses, sub.shard, sub.result.status()).message());
  }
  if (!code.has_value()) return absl::OkStatus();
  return absl::Status(*code, absl::StrJoin(messages, "; "));
}

// One sub-call per shard, each with `request`.
template <typename Response, typename Request>
std::vector<SubCall<Request, Response>> Broadcast(int shards,
                                                  const Request& request) {
  std::vector<SubCall<Request, Response>> calls(shards);
  for (int k = 0; k < shards; ++k) {
    calls[k].shard = k;
    calls[k].request = request;
  }
  return calls;
}

// Adds a dynamic table's counters on another shard to `total`.
void AddDynamicStats(const v1::DynamicStats& other, v1::DynamicStats* total) {
  total->set_rows_held(total->rows_held() + other.rows_held());
  total->set_capacity(total->capacity() + other.capacity());
  total->set_admissions(total->admissions() + other.admissions());
  total->set_evictions(total->evictions() + other.evictions());
  total->set_expirations(total->expirations() + other.expirations());
  total->set_dropped_rows(total->dropped_rows() + other.dropped_rows());
  total->set_absent_rows_looked_up(total->absent_rows_looked_up() +
                                   other.absent_rows_looked_up());
}

// Adds the checkpoint of another shard of the table to `total` (whose path,
// shard 0's, stays).
void AddCheckpoint(const v1::CheckpointInfo& other, v1::CheckpointInfo* total) {
  total->set_version(total->version() + other.version());
  total->set_time_unix_micros(
      std::min(total->time_unix_micros(), other.time_unix_micros()));
  total->set_incremental(total->incremental() || other.incremental());
}

// "FIELD: VALUE vs OTHER_VALUE" for the first top-level field in which two
// specs differ; nullopt when they are equal.
std::optional<std::string> FirstDifference(const v1::TableSpec& spec,
                                           const v1::TableSpec& other) {
  const google::protobuf::Descriptor* descriptor = spec.GetDescriptor();
  const google::protobuf::Reflection* reflection = spec.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(i);
    std::string value;
    std::string other_value;
    google::protobuf::TextFormat::PrintFieldValueToString(spec, field, -1,
                                                          &value);
    google::protobuf::TextFormat::PrintFieldValueToString(other, field, -1,
                                                          &other_value);
    const bool set =
        !field->has_presence() || reflection->HasField(spec, field);
    const bool other_set =
        !field->has_presence() || reflection->HasField(other, field);
    if (value != other_value || set != other_set) {
      return absl::StrCat(field->name(), ": ", set ? value : "unset", " vs ",
                          other_set ? other_value : "unset");
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShardedEmbeddingClient>>
ShardedEmbeddingClient::Connect(std::vector<std::string> addresses,
                                const ClientOptions& options) {
  if (addresses.empty()) {
    return absl::InvalidArgumentError("no server address given");
  }
  std::vector<std::unique_ptr<EmbeddingClient>> shards;
  ClientOptions shard_options = options;
  for (const std::string& address : addresses) {
    EMBEDDING_ASSIGN_OR_RETURN(
        std::unique_ptr<EmbeddingClient> shard,
        EmbeddingClient::Connect(address, shard_options));
    // Every shard's pushes carry the first one's id.
    shard_options.client_id = shard->client_id();
    shards.push_back(std::move(shard));
  }
  return std::make_unique<ShardedEmbeddingClient>(std::move(shards),
                                                  std::move(addresses));
}

ShardedEmbeddingClient::ShardedEmbeddingClient(
    std::vector<std::unique_ptr<EmbeddingClient>> shards,
    std::vector<std::string> addresses)
    : shards_(std::move(shards)), addresses_(std::move(addresses)) {}

absl::Status ShardedEmbeddingClient::ShardError(
    int k, const absl::Status& status) const {
  return PrefixShard(addresses_, k, status);
}

std::vector<int> ShardedEmbeddingClient::AllShards() const {
  std::vector<int> shards(shard_count());
  for (int k = 0; k < shard_count(); ++k) shards[k] = k;
  return shards;
}

ShardedEmbeddingClient::TableInfoCalls ShardedEmbeddingClient::AskTables(
    absl::string_view name, absl::Span<const int> shards,
    const CallOptions& call) const {
  TableInfoCalls calls(shards.size());
  for (size_t i = 0; i < shards.size(); ++i) {
    calls[i].shard = shards[i];
    calls[i].request.set_name(std::string(name));
  }
  FanOut(absl::MakeConstSpan(shards_), &Stub::AsyncGetTable, /*retry=*/true,
         call, calls);
  return calls;
}

absl::StatusOr<std::shared_ptr<const ShardedEmbeddingClient::CheckedTable>>
ShardedEmbeddingClient::Table(absl::string_view name,
                              const CallOptions& call) const {
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = tables_.find(name);
    if (it != tables_.end()) return it->second.table;
  }
  const TableInfoCalls calls = AskTables(name, AllShards(), call);
  bool answered = false;
  bool only_down = true;  // Every failure is of a shard that is down.
  for (const auto& sub : calls) {
    answered = answered || sub.result.ok();
    only_down =
        only_down && (sub.result.ok() || ShardIsDown(sub.result.status()));
  }
  if (!answered || !only_down) return Failures(addresses_, calls);
  return CheckCluster(name, calls);
}

absl::Status ShardedEmbeddingClient::CheckShard(
    const CheckedTable& table, int k, const v1::TableInfo& info) const {
  const v1::TableSpec& spec = info.spec();
  if (spec.shard_index() != k || spec.shard_count() != shard_count()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shard ", k, " (", addresses_[k], "): reports shard_index ",
        spec.shard_index(), " of shard_count ", spec.shard_count(),
        ", expected ", k, " of ", shard_count()));
  }
  v1::TableSpec global = spec;
  global.set_shard_index(0);
  if (std::optional<std::string> field = FirstDifference(global, table.spec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shard ", k, " (", addresses_[k], "): table ", spec.name(),
        " differs from shard ", table.reference_shard, " in ", *field));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const ShardedEmbeddingClient::CheckedTable>>
ShardedEmbeddingClient::CheckCluster(absl::string_view name,
                                     const TableInfoCalls& calls) const {
  std::shared_ptr<CheckedTable> table;
  std::vector<bool> checked(shard_count(), false);
  for (const auto& sub : calls) {  // In shard order.
    if (!sub.result.ok()) continue;
    if (table == nullptr) {
      table = std::make_shared<CheckedTable>();
      table->spec = sub.result->spec();
      table->spec.set_shard_index(0);
      // A dynamic table's ids go by their hash, a dense one's rows by g % M.
      table->layout = *ShardLayout::Create(shard_count(),
                                           table->spec.has_dynamic()
                                               ? ShardLayout::Routing::kHash
                                               : ShardLayout::Routing::kModulo);
      table->reference_shard = sub.shard;
    }
    EMBEDDING_RETURN_IF_ERROR(CheckShard(*table, sub.shard, *sub.result));
    checked[sub.shard] = true;
  }
  absl::MutexLock lock(&mu_);
  tables_[name] = CachedTable{table, std::move(checked)};
  return table;
}

absl::Status ShardedEmbeddingClient::CheckShards(
    absl::string_view name, const CheckedTable& table,
    absl::Span<const int> shards, const CallOptions& call) const {
  std::vector<int> missing;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = tables_.find(name);
    for (int k : shards) {
      if (it == tables_.end() || !it->second.checked[k]) missing.push_back(k);
    }
  }
  if (missing.empty()) return absl::OkStatus();
  const TableInfoCalls calls = AskTables(name, missing, call);
  EMBEDDING_RETURN_IF_ERROR(Failures(addresses_, calls));
  for (const auto& sub : calls) {
    EMBEDDING_RETURN_IF_ERROR(CheckShard(table, sub.shard, *sub.result));
  }
  absl::MutexLock lock(&mu_);
  auto it = tables_.find(name);
  // Only if the cache still holds the spec they were checked against.
  if (it != tables_.end() && it->second.table.get() == &table) {
    for (int k : missing) it->second.checked[k] = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<ShardedEmbeddingClient::RoutedRows>
ShardedEmbeddingClient::CheckAndRoute(absl::string_view name,
                                      absl::Span<const int64_t> indices,
                                      const CallOptions& call) const {
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<const CheckedTable> table,
                             Table(name, call));
  EMBEDDING_RETURN_IF_ERROR(ValidateIndices(indices, table->spec));
  Routes routes = Route(table->layout, indices);
  EMBEDDING_RETURN_IF_ERROR(
      CheckShards(name, *table, RoutedShards(routes), call));
  return RoutedRows{std::move(table), std::move(routes)};
}

void ShardedEmbeddingClient::Forget(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  tables_.erase(name);
}

v1::TableInfo ShardedEmbeddingClient::Merge(
    absl::Span<const v1::TableInfo> infos) const {
  v1::TableInfo merged = infos[0];
  merged.mutable_spec()->set_shard_index(0);
  merged.mutable_spec()->set_shard_count(shard_count());
  bool all_checkpointed = true;
  for (size_t k = 1; k < infos.size(); ++k) {
    const v1::TableInfo& info = infos[k];
    merged.set_local_rows(merged.local_rows() + info.local_rows());
    merged.set_memory_bytes(merged.memory_bytes() + info.memory_bytes());
    merged.set_version(merged.version() + info.version());
    merged.set_step(std::max(merged.step(), info.step()));
    if (info.has_dynamic_stats()) {
      AddDynamicStats(info.dynamic_stats(), merged.mutable_dynamic_stats());
    }
  }
  for (const v1::TableInfo& info : infos) {
    all_checkpointed = all_checkpointed && info.has_last_checkpoint();
  }
  if (!all_checkpointed) {
    merged.clear_last_checkpoint();
    return merged;
  }
  v1::CheckpointInfo* checkpoint = merged.mutable_last_checkpoint();
  for (size_t k = 1; k < infos.size(); ++k) {
    AddCheckpoint(infos[k].last_checkpoint(), checkpoint);
  }
  return merged;
}

absl::StatusOr<v1::TableInfo> ShardedEmbeddingClient::CreateTable(
    const v1::TableSpec& spec, const CallOptions& call) const {
  return CreateTable(spec, {}, call);
}

absl::StatusOr<v1::TableInfo> ShardedEmbeddingClient::CreateTable(
    const v1::TableSpec& spec, absl::Span<const float> initial_weights,
    const CallOptions& call) const {
  if (single()) return shards_[0]->CreateTable(spec, initial_weights, call);
  if (spec.has_dynamic() && !initial_weights.empty()) {
    return absl::InvalidArgumentError(kNoInitialWeightsForDynamicTables);
  }
  Forget(spec.name());
  const int64_t rows = spec.num_embeddings();
  const int64_t dim = spec.embedding_dim();
  const bool with_weights = !initial_weights.empty() && rows > 0 && dim > 0;
  if (with_weights &&
      CheckedMul(rows, dim) != static_cast<int64_t>(initial_weights.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "initial_weights has ", initial_weights.size(),
        " values, expected num_embeddings x embedding_dim = ", rows, " x ",
        dim));
  }
  // Each shard keeps its rows of inline weights; weights too big for one
  // message are written after creating the table zeroed.
  const bool inline_weights =
      with_weights && rows <= BulkRows(dim, /*with_indices=*/false);
  v1::CreateTableRequest request;
  *request.mutable_spec() = spec;
  if (inline_weights) {
    EMBEDDING_RETURN_IF_ERROR(
        internal::EncodeRows(initial_weights, rows, "initial_weights",
                             request.mutable_initial_weights()));
  } else if (with_weights) {
    request.mutable_spec()
        ->mutable_initializer()
        ->mutable_constant()
        ->set_value(0);
  }
  auto calls = Broadcast<v1::TableInfo>(shard_count(), request);
  FanOut(absl::MakeConstSpan(shards_), &Stub::AsyncCreateTable,
         /*retry=*/false, call, calls);
  absl::Status status = Failures(addresses_, calls);
  std::vector<v1::TableInfo> infos;
  TableInfoCalls checks;  // The replies, as CheckCluster takes them.
  for (auto& sub : calls) {
    if (sub.result.ok()) infos.push_back(*sub.result);
    checks.push_back({sub.shard, {}, sub.result});
  }
  if (status.ok()) status = CheckCluster(spec.name(), checks).status();
  if (status.ok() && with_weights && !inline_weights) {
    // The padding row stays as created: zero.
    std::vector<int64_t> indices;
    indices.reserve(rows);
    const int64_t padding_row = PaddingRow(infos[0].spec());
    for (int64_t row = 0; row < rows; ++row) {
      if (row != padding_row) indices.push_back(row);
    }
    std::vector<float> values;
    if (padding_row >= 0) {
      values.assign(initial_weights.begin(),
                    initial_weights.begin() + padding_row * dim);
      values.insert(values.end(),
                    initial_weights.begin() + (padding_row + 1) * dim,
                    initial_weights.end());
    }
    status = WriteRows(spec.name(), indices,
                       padding_row >= 0 ? absl::MakeConstSpan(values)
                                        : initial_weights,
                       call)
                 .status();
  }
  if (!status.ok()) {
    // Only where this call created it: never a table that was there before.
    std::vector<SubCall<v1::DeleteTableRequest, v1::DeleteTableResponse>>
        deletes;
    for (const auto& sub : calls) {
      if (!sub.result.ok()) continue;
      auto& del = deletes.emplace_back();
      del.shard = sub.shard;
      del.request.set_name(spec.name());
    }
    FanOut(absl::MakeConstSpan(shards_), &Stub::AsyncDeleteTable,
           /*retry=*/false, call, deletes);
    Forget(spec.name());
    return status;
  }
  if (with_weights && !inline_weights) return GetTable(spec.name(), call);
  return Merge(infos);
}

absl::StatusOr<v1::TableInfo> ShardedEmbeddingClient::GetTable(
    absl::string_view name, const CallOptions& call) const {
  if (single()) return shards_[0]->GetTable(name, call);
  // A cached check is not enough: the counters are asked for now, of every
  // shard.
  Forget(name);
  const TableInfoCalls calls = AskTables(name, AllShards(), call);
  EMBEDDING_RETURN_IF_ERROR(Failures(addresses_, calls));
  EMBEDDING_RETURN_IF_ERROR(CheckCluster(name, calls).status());
  std::vector<v1::TableInfo> infos;
  for (const auto& sub : calls) infos.push_back(*sub.result);
  return Merge(infos);
}

absl::StatusOr<std::vector<v1::TableInfo>> ShardedEmbeddingClient::ListTables(
    const CallOptions& call) const {
  if (single()) return shards_[0]->ListTables(call);
  auto calls =
      Broadcast<v1::ListTablesResponse>(shard_count(), v1::ListTablesRequest());
  FanOut(absl::MakeConstSpan(shards_), &Stub::AsyncListTables,
         /*retry=*/true, call, calls);
  EMBEDDING_RETURN_IF_ERROR(Failures(addresses_, calls));
  std::map<std::string, std::vector<v1::TableInfo>> by_name;
  for (const auto& sub : calls) {
    for (const v1::TableInfo& info : sub.result->tables()) {
      by_name[info.spec().name()].push_back(info);
    }
  }
  std::vector<v1::TableInfo> tables;
  for (const auto& [name, infos] : by_name) {
    // A table missing on some shard is not a table of the cluster.
    if (static_cast<int>(infos.size()) == shard_count()) {
      tables.push_back(Merge(infos));
    }
  }
  return tables;
}

absl::Status ShardedEmbeddingClient::DeleteTable(
    absl::string_view name, const CallOptions& call) const {
  if (single()) return shards_[0]->DeleteTable(name, call);
  Forget(name);
  v1::DeleteTableRequest request;
  request.set_name(std::string(name));
  auto calls = Broadcast<v1::DeleteTableResponse>(shard_count(), request);
  FanOut(absl::MakeConstSpan(shards_), &Stub::AsyncDeleteTable,
         /*retry=*/false, call, calls);
  return Failures(addresses_, calls);
}

absl::Status ShardedEmbeddingClient::RoutedLookup(
    const CheckedTable& table, absl::string_view name,
    absl::Span<const int64_t> indices, v1::DType dtype, const CallOptions& call,
    std::vector<float>* out) const {
  const int64_t dim = table.spec.embedding_dim();
  Routes routes = Route(table.layout, indices);
  EMBEDDING_RETURN_IF_ERROR(
      CheckShards(name, table, RoutedShards(routes), call));
  std::vector<SubCall<v1::LookupRequest, v1::LookupResponse>> calls;
  for (int k = 0; k < shard_count(); ++k) {
    if (routes.indices[k].empty()) continue;
    auto& sub = calls.emplace_back();
    sub.shard = k;
    sub.request.set_table(std::string(name));
    internal::SetIndicesLe(routes.indices[k], sub.request.mutable_indices_le());
    sub.request.set_dtype(dtype);
  }
  FanOut(absl::MakeConstSpan(shards_), &Stub::AsyncLookup, /*retry=*/true, call,
         calls);
  EMBEDDING_RETURN_IF_ERROR(Failures(addresses_, calls));
  out->resize(indices.size() * dim);
  std::vector<float> decoded;
  for (const auto& sub : calls) {
    const v1::Tensor& tensor = sub.result->embeddings();
    const std::vector<size_t>& positions = routes.positions[sub.shard];
    const size_t floats = positions.size() * dim;
    absl::Span<const float> rows;
    if (tensor.dtype() == v1::DTYPE_FLOAT32 &&
        tensor.data().size() == floats * sizeof(float)) {
      // Straight from the reply's bytes (little-endian, as the wire).
      rows = absl::MakeConstSpan(
          reinterpret_cast<const float*>(tensor.data().data()), floats);
    } else {
      decoded.clear();
      EMBEDDING_RETURN_IF_ERROR(internal::AppendTensorData(tensor, &decoded));
      rows = decoded;
    }
    if (rows.size() != floats) {
      return ShardError(sub.shard,
                        absl::InternalError(absl::StrCat(
                            "server sent ", rows.size(), " floats for ",
                            positions.size(), " rows of dimension ", dim)));
    }
    ScatterRows(rows, dim, positions, *out);
  }
  return absl::OkStatus();
}

absl::StatusOr<FloatTensor> ShardedEmbeddingClient::Lookup(
    absl::string_view table, absl::Span<const int64_t> indices,
    const LookupOptions& options, const CallOptions& call) const {
  FloatTensor result;
  EMBEDDING_RETURN_IF_ERROR(LookupInto(table, indices, &result, options, call));
  return result;
}

absl::Status ShardedEmbeddingClient::LookupInto(
    absl::string_view table, absl::Span<const int64_t> indices,
    FloatTensor* result, const LookupOptions& options,
    const CallOptions& call) const {
  if (single()) {
    return shards_[0]->LookupInto(table, indices, result, options, call);
  }
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<const CheckedTable> checked,
                             Table(table, call));
  if (!ShapeFits(options.shape, indices.size()) || !KnownDType(options.dtype)) {
    // The server's own verdict on the request (it checks the request before
    // the rows): one shard sees it whole.
    absl::StatusOr<FloatTensor> whole =
        shards_[0]->Lookup(table, indices, options, call);
    if (!whole.ok()) return ShardError(0, whole.status());
  }
  EMBEDDING_RETURN_IF_ERROR(ValidateIndices(indices, checked->spec));
  EMBEDDING_RETURN_IF_ERROR(RoutedLookup(*checked, table, indices,
                                         options.dtype, call, &result->data));
  result->shape = options.shape;
  if (result->shape.empty()) {
    result->shape.push_back(static_cast<int64_t>(indices.size()));
  }
  result->shape.push_back(checked->spec.embedding_dim());
  return absl::OkStatus();
}

namespace {

// The server's BagMarkers of the table (EmbeddingTable::CheckBagMode).
BagMarkers BagMarkersOf(const v1::TableSpec& spec) {
  return BagMarkers::ForTable(spec.has_dynamic(),
                              spec.has_padding_idx()
                                  ? std::optional<int64_t>(spec.padding_idx())
                                  : std::nullopt);
}

}  // namespace

// Checks a bag call as the server does, in its order.
absl::Status ShardedEmbeddingClient::CheckBagCall(const CheckedTable& table,
                                                  const Bags& bags) const {
  EMBEDDING_RETURN_IF_ERROR(internal::ValidateBags(bags));
  if (bags.mode == v1::BAG_MODE_MAX && table.spec.scale_grad_by_freq()) {
    return absl::InvalidArgumentError(
        "mode MAX does not support scale_grad_by_freq (torch refuses it too)");
  }
  return ValidateIndices(bags.indices, table.spec);
}

absl::StatusOr<BagLookupResult> ShardedEmbeddingClient::LookupBag(
    absl::string_view table, const Bags& bags, v1::DType dtype,
    const CallOptions& call) const {
  if (single()) return shards_[0]->LookupBag(table, bags, dtype, call);
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<const CheckedTable> checked,
                             Table(table, call));
  if (!KnownDType(dtype)) {
    absl::StatusOr<BagLookupResult> whole =
        shards_[0]->LookupBag(table, bags, dtype, call);
    if (!whole.ok()) return ShardError(0, whole.status());
  }
  EMBEDDING_RETURN_IF_ERROR(CheckBagCall(*checked, bags));
  const int64_t dim = checked->spec.embedding_dim();
  const BagMarkers markers = BagMarkersOf(checked->spec);
  // Each distinct row once, as float32: the pooling rounds to `dtype` last.
  const std::vector<int64_t> rows = internal::PooledRows(bags, markers);
  std::vector<float> values;
  if (!rows.empty()) {
    EMBEDDING_RETURN_IF_ERROR(
        RoutedLookup(*checked, table, rows, v1::DTYPE_FLOAT32, call, &values));
  }
  absl::flat_hash_map<int64_t, const float*> row_of;
  for (size_t i = 0; i < rows.size(); ++i) row_of[rows[i]] = &values[i * dim];
  return internal::PoolBags(
      bags, dim, markers, [&](int64_t index) { return row_of.at(index); },
      dtype);
}

absl::StatusOr<PushGradientsResult> ShardedEmbeddingClient::ShardedPush(
    const CheckedTable& table, absl::string_view name,
    absl::Span<const int64_t> indices, absl::Span<const float> grad,
    const PushGradientsOptions& push, const CallOptions& call) const {
  const int64_t dim = table.spec.embedding_dim();
  EMBEDDING_RETURN_IF_ERROR(CheckShards(name, table, AllShards(), call));
  const uint64_t sequence =
      push.sequence.has_value()
          ? *push.sequence
          : next_sequence_.fetch_add(1, std::memory_order_relaxed);
  Routes routes = Route(table.layout, indices);
  // Every shard counts the step, with or without rows of this push.
  std::vector<SubCall<v1::PushGradientsRequest, v1::PushGradientsResponse>>
      calls(shards_.size());
  for (int k = 0; k < shard_count(); ++k) {
    auto& sub = calls[k];
    sub.shard = k;
    sub.request.set_table(std::string(name));
    internal::SetIndicesLe(routes.indices[k], sub.request.mutable_indices_le());
    SetRows(GatherRows(grad, dim, routes.positions[k]),
            static_cast<int64_t>(routes.indices[k].size()), dim,
            sub.request.mutable_grad());
    if (push.learning_rate.has_value()) {
      sub.request.set_learning_rate(*push.learning_rate);
    }
    sub.request.set_client_id(client_id());
    sub.request.set_sequence(sequence);
  }
  FanOut(absl::MakeConstSpan(shards_), &Stub::AsyncPushGradients,
         /*retry=*/true, call, calls);
  if (absl::Status failures = Failures(addresses_, calls); !failures.ok()) {
    return absl::Status(
        failures.code(),
        absl::StrCat(failures.message(), " (push sequence ", sequence,
                     "; a retry with that sequence applies it only on the "
                     "shards that missed it)"));
  }
  PushGradientsResult result;
  result.sequence = sequence;
  result.duplicate = true;
  for (const auto& sub : calls) {
    result.rows_updated += sub.result->rows_updated();
    result.version += sub.result->version();
    result.duplicate = result.duplicate && sub.result->duplicate();
    result.rows_admitted += sub.result->rows_admitted();
    result.rows_dropped += sub.result->rows_dropped();
    result.rows_evicted += sub.result->rows_evicted();
  }
  return result;
}

absl::StatusOr<PushGradientsResult> ShardedEmbeddingClient::PushGradients(
    absl::string_view table, absl::Span<const int64_t> indices,
    absl::Span<const float> grad, const PushGradientsOptions& push,
    const CallOptions& call) const {
  if (single()) {
    return shards_[0]->PushGradients(table, indices, grad, push, call);
  }
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<const CheckedTable> checked,
                             Table(table, call));
  EMBEDDING_RETURN_IF_ERROR(ValidateIndices(indices, checked->spec));
  EMBEDDING_RETURN_IF_ERROR(
      internal::CheckRowsShape(grad, static_cast<int64_t>(indices.size()),
                               checked->spec.embedding_dim(), "grad"));
  return ShardedPush(*checked, table, indices, grad, push, call);
}

absl::StatusOr<PushGradientsResult> ShardedEmbeddingClient::PushBagGradients(
    absl::string_view table, const Bags& bags, absl::Span<const float> grad,
    absl::Span<const int64_t> max_indices, const PushGradientsOptions& push,
    const CallOptions& call) const {
  if (single()) {
    return shards_[0]->PushBagGradients(table, bags, grad, max_indices, push,
                                        call);
  }
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<const CheckedTable> checked,
                             Table(table, call));
  EMBEDDING_RETURN_IF_ERROR(CheckBagCall(*checked, bags));
  const int64_t dim = checked->spec.embedding_dim();
  EMBEDDING_RETURN_IF_ERROR(internal::CheckRowsShape(
      grad, static_cast<int64_t>(internal::BagCount(bags)), dim, "grad"));
  EMBEDDING_ASSIGN_OR_RETURN(
      const internal::IndexGradient gradient,
      internal::BagGradientToRows(bags, dim, BagMarkersOf(checked->spec), grad,
                                  max_indices));
  return ShardedPush(*checked, table, gradient.indices, gradient.grad, push,
                     call);
}

absl::StatusOr<WriteResult> ShardedEmbeddingClient::WriteRows(
    absl::string_view table, absl::Span<const int64_t> indices,
    absl::Span<const float> values, const CallOptions& call) const {
  if (single()) return shards_[0]->WriteRows(table, indices, values, call);
  EMBEDDING_RETURN_IF_ERROR(
      internal::CheckWholeRows(values, indices.size(), "values"));
  EMBEDDING_ASSIGN_OR_RETURN(const RoutedRows routed,
                             CheckAndRoute(table, indices, call));
  const Routes& routes = routed.routes;
  const int64_t dim = routed.table->spec.embedding_dim();
  if (indices.empty()) {  // The server has the last word on that.
    absl::StatusOr<WriteResult> none = shards_[0]->WriteRows(table, {}, {});
    return none.ok() ? none : ShardError(0, none.status());
  }
  // Round r writes the r-th bulk chunk of every shard, the shards at once;
  // a failure stops after its round.
  const size_t step = BulkRows(dim, /*with_indices=*/true);
  std::vector<int64_t> versions(shard_count(), 0);
  WriteResult result;
  for (size_t begin = 0;; begin += step) {
    std::vector<SubCall<v1::WriteRowsRequest, v1::WriteRowsResponse>> calls;
    for (int k = 0; k < shard_count(); ++k) {
      if (routes.indices[k].size() <= begin) continue;
      const size_t count = std::min(step, routes.indices[k].size() - begin);
      auto& sub = calls.emplace_back();
      sub.shard = k;
      sub.request.set_table(std::string(table));
      internal::SetIndices(
          absl::MakeConstSpan(routes.indices[k]).subspan(begin, count),
          sub.request.mutable_indices());
      SetRows(
          GatherRows(
              values, dim,
              absl::MakeConstSpan(routes.positions[k]).subspan(begin, count)),
          static_cast<int64_t>(count), dim, sub.request.mutable_values());
    }
    if (calls.empty()) break;
    FanOut(absl::MakeConstSpan(shards_), &Stub::AsyncWriteRows,
           /*retry=*/false, call, calls);
    EMBEDDING_RETURN_IF_ERROR(Failures(addresses_, calls));
    for (const auto& sub : calls) {
      result.rows_written += sub.result->rows_written();
      versions[sub.shard] = sub.result->version();
    }
  }
  for (int64_t version : versions) result.version += version;
  return result;
}

absl::StatusOr<WriteResult> ShardedEmbeddingClient::WriteRowRange(
    absl::string_view table, int64_t start_row, int64_t embedding_dim,
    absl::Span<const float> values, const CallOptions& call) const {
  if (single()) {
    return shards_[0]->WriteRowRange(table, start_row, embedding_dim, values,
                                     call);
  }
  EMBEDDING_RETURN_IF_ERROR(
      internal::CheckRowsOfDimension(values, embedding_dim));
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<const CheckedTable> checked,
                             Table(table, call));
  EMBEDDING_RETURN_IF_ERROR(DenseOnly(checked->spec, "write a row range"));
  const int64_t rows = values.size() / embedding_dim;
  std::vector<int64_t> indices(rows);
  for (int64_t i = 0; i < rows; ++i) indices[i] = start_row + i;
  return WriteRows(table, indices, values, call);
}

absl::StatusOr<ReadRowsResult> ShardedEmbeddingClient::ReadRows(
    absl::string_view table, absl::Span<const int64_t> indices,
    const CallOptions& call) const {
  if (single()) return shards_[0]->ReadRows(table, indices, call);
  EMBEDDING_ASSIGN_OR_RETURN(const RoutedRows routed,
                             CheckAndRoute(table, indices, call));
  const Routes& routes = routed.routes;
  const int64_t dim = routed.table->spec.embedding_dim();
  ReadRowsResult result;
  result.indices.assign(indices.begin(), indices.end());
  result.values.shape = {static_cast<int64_t>(indices.size()), dim};
  result.values.data.resize(indices.size() * dim);
  for (int k = 0; k < shard_count(); ++k) {
    if (routes.indices[k].empty()) continue;
    absl::StatusOr<ReadRowsResult> read =
        shards_[k]->ReadRows(table, routes.indices[k], call);
    if (!read.ok()) return ShardError(k, read.status());
    if (read->indices != routes.indices[k]) {
      return ShardError(k, absl::InternalError(
                               "server sent other rows than those asked for"));
    }
    ScatterRows(read->values.data, dim, routes.positions[k],
                result.values.data);
  }
  return result;
}

// Reads [start_row, end_row) (end_row resolved, inside the table) from every
// shard holding some of it and merges the rows in global order.
absl::StatusOr<ReadRowsResult> ShardedEmbeddingClient::ReadRangeMerged(
    const CheckedTable& table, absl::string_view name, int64_t start_row,
    int64_t end_row, const CallOptions& call) const {
  const ShardLayout& layout = table.layout;
  const int64_t dim = table.spec.embedding_dim();
  std::vector<int> involved;
  for (int k = 0; k < shard_count(); ++k) {
    // Not the shards with none of their rows in the range.
    if (layout.RowsOnShard(end_row, k) != layout.RowsOnShard(start_row, k)) {
      involved.push_back(k);
    }
  }
  EMBEDDING_RETURN_IF_ERROR(CheckShards(name, table, involved, call));
  std::vector<ReadRowsResult> parts(shard_count());
  for (int k : involved) {
    absl::StatusOr<ReadRowsResult> read =
        shards_[k]->ReadRowRange(name, start_row, end_row, call);
    if (!read.ok()) return ShardError(k, read.status());
    parts[k] = *std::move(read);
  }
  ReadRowsResult result;
  result.indices.reserve(end_row - start_row);
  result.values.data.resize((end_row - start_row) * dim);
  std::vector<size_t> next(shard_count(), 0);
  for (int64_t row = start_row; row < end_row; ++row) {
    const int32_t k = layout.OwnerShard(row);
    const ReadRowsResult& part = parts[k];
    if (next[k] >= part.indices.size() || part.indices[next[k]] != row) {
      return ShardError(k, absl::InternalError(
                               absl::StrCat("server did not send row ", row)));
    }
    std::memcpy(&result.values.data[(row - start_row) * dim],
                &part.values.data[next[k] * dim], dim * sizeof(float));
    result.indices.push_back(row);
    ++next[k];
  }
  result.values.shape = {end_row - start_row, dim};
  return result;
}

// The end of a range read (0: the table's end), or the server's error for a
// range outside the table.
absl::StatusOr<int64_t> ShardedEmbeddingClient::RangeEnd(
    const CheckedTable& table, absl::string_view name, int64_t start_row,
    int64_t end_row, const CallOptions& call) const {
  // A dynamic table's ids have no range to split by shard.
  EMBEDDING_RETURN_IF_ERROR(DenseOnly(table.spec, "read a row range"));
  const int64_t rows = table.spec.num_embeddings();
  const int64_t end = end_row == 0 ? rows : end_row;
  if (start_row < 0 || end > rows || start_row > end) {
    // The server's own message: one shard sees the range whole.
    absl::StatusOr<ReadRowsResult> whole =
        shards_[0]->ReadRowRange(name, start_row, end_row, call);
    if (!whole.ok()) return ShardError(0, whole.status());
  }
  return end;
}

absl::StatusOr<ReadRowsResult> ShardedEmbeddingClient::ReadRowRange(
    absl::string_view table, int64_t start_row, int64_t end_row,
    const CallOptions& call) const {
  if (single())
    return shards_[0]->ReadRowRange(table, start_row, end_row, call);
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<const CheckedTable> checked,
                             Table(table, call));
  EMBEDDING_ASSIGN_OR_RETURN(
      const int64_t end, RangeEnd(*checked, table, start_row, end_row, call));
  return ReadRangeMerged(*checked, table, start_row, end, call);
}

absl::Status ShardedEmbeddingClient::ReadRowRangeInChunks(
    absl::string_view table, int64_t start_row, int64_t end_row,
    absl::FunctionRef<absl::Status(const ReadRowsResult& chunk)> sink,
    const CallOptions& call) const {
  if (single()) {
    return shards_[0]->ReadRowRangeInChunks(table, start_row, end_row, sink,
                                            call);
  }
  EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<const CheckedTable> checked,
                             Table(table, call));
  EMBEDDING_ASSIGN_OR_RETURN(
      const int64_t end, RangeEnd(*checked, table, start_row, end_row, call));
  const int64_t dim = checked->spec.embedding_dim();
  // One bulk message of rows per chunk, read from every shard at once.
  const int64_t step = BulkRows(dim, /*with_indices=*/true);
  for (int64_t begin = start_row; begin < end; begin += step) {
    EMBEDDING_ASSIGN_OR_RETURN(
        const ReadRowsResult chunk,
        ReadRangeMerged(*checked, table, begin, std::min(end, begin + step),
                        call));
    EMBEDDING_RETURN_IF_ERROR(sink(chunk));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::TableInfo> ShardedEmbeddingClient::SetOptimizer(
    absl::string_view table, const v1::Optimizer& optimizer,
    const CallOptions& call) const {
  if (single()) return shards_[0]->SetOptimizer(table, optimizer, call);
  Forget(table);  // The spec holds the optimizer.
  v1::SetOptimizerRequest request;
  request.set_table(std::string(table));
  *request.mutable_optimizer() = optimizer;
  auto calls = Broadcast<v1::TableInfo>(shard_count(), request);
  FanOut(absl::MakeConstSpan(shards_), &Stub::AsyncSetOptimizer,
         /*retry=*/false, call, calls);
  EMBEDDING_RETURN_IF_ERROR(Failures(addresses_, calls));
  std::vector<v1::TableInfo> infos;
  for (const auto& sub : calls) infos.push_back(*sub.result);
  return Merge(infos);
}

absl::StatusOr<v1::SaveCheckpointResponse>
ShardedEmbeddingClient::SaveCheckpoint(absl::Span<const std::string> tables,
                                       bool incremental,
                                       const CallOptions& call) const {
  if (single()) return shards_[0]->SaveCheckpoint(tables, incremental, call);
  v1::SaveCheckpointRequest request;
  request.mutable_tables()->Add(tables.begin(), tables.end());
  request.set_incremental(incremental);
  auto calls = Broadcast<v1::SaveCheckpointResponse>(shard_count(), request);
  FanOut(absl::MakeConstSpan(shards_), &Stub::AsyncSaveCheckpoint,
         /*retry=*/false, call, calls);
  EMBEDDING_RETURN_IF_ERROR(Failures(addresses_, calls));
  // Per table, in name order: the shards' saves summed.
  std::map<std::string, v1::SaveCheckpointResponse::Saved> merged;
  for (const auto& sub : calls) {
    for (const v1::SaveCheckpointResponse::Saved& saved : sub.result->saved()) {
      auto [it, first] = merged.try_emplace(saved.table(), saved);
      if (first) continue;
      v1::SaveCheckpointResponse::Saved& total = it->second;
      AddCheckpoint(saved.checkpoint(), total.mutable_checkpoint());
      total.set_bytes_written(total.bytes_written() + saved.bytes_written());
      total.set_rows(total.rows() + saved.rows());
    }
  }
  v1::SaveCheckpointResponse response;
  for (auto& [name, saved] : merged) *response.add_saved() = std::move(saved);
  return response;
}

}  // namespace embedding
