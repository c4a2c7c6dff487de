#include "server/service/proto_convert.h"

#include <cmath>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/checked_math.h"
#include "common/optimizer_proto.h"
#include "common/status_macros.h"

namespace embedding {

namespace {

absl::StatusOr<DynamicSpec::Eviction> FromProto(
    v1::DynamicTable::Eviction eviction) {
  switch (eviction) {
    case v1::DynamicTable::EVICTION_LRU:
      return DynamicSpec::Eviction::kLru;
    case v1::DynamicTable::EVICTION_LFU:
      return DynamicSpec::Eviction::kLfu;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown dynamic eviction ", static_cast<int>(eviction)));
  }
}

}  // namespace

absl::StatusOr<TableSpec> FromProto(const v1::TableSpec& proto) {
  TableSpec spec;
  spec.name = proto.name();
  spec.num_embeddings = proto.num_embeddings();
  spec.embedding_dim = proto.embedding_dim();
  if (proto.has_padding_idx()) spec.padding_idx = proto.padding_idx();
  if (proto.has_max_norm()) spec.max_norm = proto.max_norm();
  if (proto.has_norm_type()) spec.norm_type = proto.norm_type();
  spec.scale_grad_by_freq = proto.scale_grad_by_freq();
  spec.seed = proto.seed();
  const v1::Initializer& init = proto.initializer();
  switch (init.kind_case()) {
    case v1::Initializer::kUniform:
      spec.initializer = {InitializerSpec::Kind::kUniform, init.uniform().low(),
                          init.uniform().high()};
      break;
    case v1::Initializer::kConstant:
      spec.initializer = {InitializerSpec::Kind::kConstant,
                          init.constant().value(), 0.0f};
      break;
    case v1::Initializer::kNormal:
      spec.initializer = {InitializerSpec::Kind::kNormal, init.normal().mean(),
                          init.normal().has_std() ? init.normal().std() : 1.0f};
      break;
    case v1::Initializer::KIND_NOT_SET:
      break;
  }
  spec.optimizer = OptimizerFromProto(proto.optimizer());
  if (proto.has_dynamic()) {
    const v1::DynamicTable& dynamic = proto.dynamic();
    EMBEDDING_ASSIGN_OR_RETURN(const DynamicSpec::Eviction eviction,
                               FromProto(dynamic.eviction()));
    spec.dynamic = DynamicSpec{.capacity = dynamic.capacity(),
                               .admit_after = dynamic.admit_after(),
                               .eviction = eviction};
    if (dynamic.has_ttl_pushes()) {
      spec.dynamic->ttl_pushes = dynamic.ttl_pushes();
    }
  }
  return spec;
}

void ToProto(const TableStats& stats, v1::TableInfo* info) {
  const TableSpec& spec = stats.spec;
  v1::TableSpec* out = info->mutable_spec();
  out->set_name(spec.name);
  out->set_num_embeddings(spec.num_embeddings);
  out->set_embedding_dim(spec.embedding_dim);
  if (spec.padding_idx.has_value()) out->set_padding_idx(*spec.padding_idx);
  if (spec.max_norm.has_value()) out->set_max_norm(*spec.max_norm);
  out->set_norm_type(spec.norm_type);
  out->set_scale_grad_by_freq(spec.scale_grad_by_freq);
  out->set_seed(spec.seed);
  out->set_shard_index(spec.shard_index);
  out->set_shard_count(spec.shard_count);
  const InitializerSpec& init = spec.initializer;
  switch (init.kind) {
    case InitializerSpec::Kind::kNormal:
      out->mutable_initializer()->mutable_normal()->set_mean(init.a);
      out->mutable_initializer()->mutable_normal()->set_std(init.b);
      break;
    case InitializerSpec::Kind::kUniform:
      out->mutable_initializer()->mutable_uniform()->set_low(init.a);
      out->mutable_initializer()->mutable_uniform()->set_high(init.b);
      break;
    case InitializerSpec::Kind::kConstant:
      out->mutable_initializer()->mutable_constant()->set_value(init.a);
      break;
  }
  OptimizerToProto(spec.optimizer, out->mutable_optimizer());
  if (spec.dynamic.has_value()) {
    v1::DynamicTable* dynamic = out->mutable_dynamic();
    dynamic->set_capacity(spec.dynamic->capacity);
    dynamic->set_admit_after(spec.dynamic->admit_after);
    dynamic->set_eviction(spec.dynamic->eviction == DynamicSpec::Eviction::kLfu
                              ? v1::DynamicTable::EVICTION_LFU
                              : v1::DynamicTable::EVICTION_LRU);
    if (spec.dynamic->ttl_pushes.has_value()) {
      dynamic->set_ttl_pushes(*spec.dynamic->ttl_pushes);
    }
  }
  if (stats.dynamic.has_value()) {
    const DynamicCounts& counts = *stats.dynamic;
    v1::DynamicStats* out_stats = info->mutable_dynamic_stats();
    out_stats->set_rows_held(counts.rows_held);
    out_stats->set_capacity(spec.dynamic.has_value() ? spec.dynamic->capacity
                                                     : 0);
    out_stats->set_admissions(counts.admissions);
    out_stats->set_evictions(counts.evictions);
    out_stats->set_expirations(counts.expirations);
    out_stats->set_dropped_rows(counts.dropped_rows);
    out_stats->set_absent_rows_looked_up(counts.absent_rows_looked_up);
  }
  info->set_local_rows(stats.local_rows);
  info->set_memory_bytes(stats.memory_bytes);
  info->set_version(stats.version);
  info->set_step(stats.step);
}

absl::StatusOr<DType> FromProto(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_UNSPECIFIED:
    case v1::DTYPE_FLOAT32:
      return DType::kFloat32;
    case v1::DTYPE_FLOAT16:
      return DType::kFloat16;
    case v1::DTYPE_BFLOAT16:
      return DType::kBFloat16;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown dtype ", static_cast<int>(dtype)));
  }
}

v1::DType ToProto(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return v1::DTYPE_FLOAT32;
    case DType::kFloat16:
      return v1::DTYPE_FLOAT16;
    case DType::kBFloat16:
      return v1::DTYPE_BFLOAT16;
  }
  return v1::DTYPE_UNSPECIFIED;
}

absl::StatusOr<BagMode> FromProto(v1::BagMode mode) {
  switch (mode) {
    case v1::BAG_MODE_SUM:
      return BagMode::kSum;
    case v1::BAG_MODE_MEAN:
      return BagMode::kMean;
    case v1::BAG_MODE_MAX:
      return BagMode::kMax;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown bag mode ", static_cast<int>(mode)));
  }
}

absl::Status CheckShapeRank(
    const google::protobuf::RepeatedField<int64_t>& shape,
    absl::string_view what) {
  if (shape.size() > kMaxShapeRank) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", shape.size(), " dimensions; at most ",
                     kMaxShapeRank, " are allowed"));
  }
  return absl::OkStatus();
}

std::string ShapeText(const google::protobuf::RepeatedField<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<absl::Span<const float>> FloatView(const v1::Tensor& tensor,
                                                  const char* what) {
  EMBEDDING_RETURN_IF_ERROR(CheckShapeRank(tensor.shape(), what));
  if (tensor.dtype() != v1::DTYPE_FLOAT32 &&
      tensor.dtype() != v1::DTYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be float32, got ", v1::DType_Name(tensor.dtype())));
  }
  EMBEDDING_ASSIGN_OR_RETURN(const int64_t elements,
                             ShapeElementCount(tensor.shape(), what));
  const size_t bytes = tensor.data().size();
  if (bytes % sizeof(float) != 0 ||
      static_cast<int64_t>(bytes / sizeof(float)) != elements) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " has shape ", ShapeText(tensor.shape()), " (", elements,
        " elements) but ", bytes, " bytes of float32 data"));
  }
  // Little-endian hosts only (x86-64, aarch64): the bytes are the floats.
  return absl::MakeConstSpan(
      reinterpret_cast<const float*>(tensor.data().data()),
      bytes / sizeof(float));
}

absl::StatusOr<absl::Span<const float>> RowsView(const v1::Tensor& tensor,
                                                 int64_t rows, int64_t dim,
                                                 const char* what) {
  EMBEDDING_ASSIGN_OR_RETURN(const absl::Span<const float> view,
                             FloatView(tensor, what));
  const auto& shape = tensor.shape();
  const bool last_is_dim = shape.size() >= 2 && shape[shape.size() - 1] == dim;
  std::optional<int64_t> leading = 1;
  for (int i = 0; last_is_dim && leading.has_value() && i + 1 < shape.size();
       ++i) {
    leading = CheckedMul(*leading, shape[i]);
  }
  if (!last_is_dim || leading != rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has shape ", ShapeText(shape), ", expected [",
                     rows, ", ", dim, "]"));
  }
  return view;
}

}  // namespace embedding
