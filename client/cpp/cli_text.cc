#include "client/cpp/cli_text.h"

#include <algorithm>
#include <charconv>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/optimizer_kinds.h"
#include "common/optimizer_proto.h"
#include "common/status_macros.h"

namespace embedding::cli {
namespace {

// The names of an enum, for both directions.
template <typename Enum>
struct NamedValue {
  absl::string_view name;
  Enum value;
};

constexpr NamedValue<v1::DType> kDTypes[] = {
    {"float32", v1::DTYPE_FLOAT32},
    {"float16", v1::DTYPE_FLOAT16},
    {"bfloat16", v1::DTYPE_BFLOAT16},
};

constexpr NamedValue<v1::BagMode> kBagModes[] = {
    {"sum", v1::BAG_MODE_SUM},
    {"mean", v1::BAG_MODE_MEAN},
    {"max", v1::BAG_MODE_MAX},
};

constexpr NamedValue<v1::DynamicTable::Eviction> kEvictions[] = {
    {"lru", v1::DynamicTable::EVICTION_LRU},
    {"lfu", v1::DynamicTable::EVICTION_LFU},
};

template <typename Enum, size_t n>
absl::StatusOr<Enum> ParseName(const NamedValue<Enum> (&names)[n],
                               absl::string_view flag, absl::string_view text) {
  std::vector<absl::string_view> expected;
  for (const NamedValue<Enum>& named : names) {
    if (named.name == text) return named.value;
    expected.push_back(named.name);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--", flag, "=", text, ": expected ", absl::StrJoin(expected, ", ")));
}

template <typename Enum, size_t n>
absl::string_view NameOf(const NamedValue<Enum> (&names)[n], Enum value) {
  for (const NamedValue<Enum>& named : names) {
    if (named.value == value) return named.name;
  }
  return "unknown";
}

template <typename T>
absl::StatusOr<std::vector<T>> ParseListOf(absl::string_view flag,
                                           absl::string_view text) {
  std::vector<T> out;
  if (absl::StripAsciiWhitespace(text).empty()) return out;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    piece = absl::StripAsciiWhitespace(piece);
    T value;
    bool ok;
    if constexpr (std::is_integral_v<T>) {
      ok = absl::SimpleAtoi(piece, &value);
    } else {
      ok = absl::SimpleAtof(piece, &value);
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": element ", out.size(), " (\"", piece, "\") is not a",
          std::is_integral_v<T> ? "n integer" : " number"));
    }
    out.push_back(value);
  }
  return out;
}

// A "key=value" piece of a formatted initializer or optimizer.
std::string Param(absl::string_view key, float value) {
  return absl::StrCat(key, "=", FormatFloat(value));
}

const HyperParameter* FindParam(const OptimizerInfo& info,
                                absl::string_view name) {
  for (const HyperParameter& param : info.params) {
    if (param.name == name) return &param;
  }
  return nullptr;
}

std::string OptimizerNames() {
  std::vector<absl::string_view> names;
  for (const OptimizerInfo& info : AllOptimizers()) names.push_back(info.name);
  return absl::StrJoin(names, ", ");
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> ParseInt64List(absl::string_view flag,
                                                    absl::string_view text) {
  return ParseListOf<int64_t>(flag, text);
}

absl::StatusOr<std::vector<float>> ParseFloatList(absl::string_view flag,
                                                  absl::string_view text) {
  return ParseListOf<float>(flag, text);
}

absl::StatusOr<v1::Initializer> ParseInitializer(absl::string_view text) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits(':', 1));
  EMBEDDING_ASSIGN_OR_RETURN(const std::vector<float> args,
                             ParseFloatList("initializer", parts.second));
  v1::Initializer initializer;
  const absl::string_view kind = parts.first;
  if (kind == "normal" && (args.empty() || args.size() == 2)) {
    initializer.mutable_normal()->set_mean(args.empty() ? 0 : args[0]);
    initializer.mutable_normal()->set_std(args.empty() ? 1 : args[1]);
  } else if (kind == "uniform" && args.size() == 2) {
    initializer.mutable_uniform()->set_low(args[0]);
    initializer.mutable_uniform()->set_high(args[1]);
  } else if (kind == "constant" && args.size() == 1) {
    initializer.mutable_constant()->set_value(args[0]);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--initializer=", text,
        ": expected normal:MEAN,STD, uniform:LOW,HIGH or constant:VALUE"));
  }
  return initializer;
}

absl::StatusOr<v1::DType> ParseDType(absl::string_view text) {
  return ParseName(kDTypes, "dtype", text);
}

absl::string_view DTypeName(v1::DType dtype) { return NameOf(kDTypes, dtype); }

absl::StatusOr<v1::BagMode> ParseBagMode(absl::string_view text) {
  return ParseName(kBagModes, "mode", text);
}

absl::string_view BagModeName(v1::BagMode mode) {
  return NameOf(kBagModes, mode);
}

absl::StatusOr<v1::DynamicTable::Eviction> ParseEviction(
    absl::string_view text) {
  return ParseName(kEvictions, "eviction", text);
}

absl::string_view EvictionName(v1::DynamicTable::Eviction eviction) {
  return NameOf(kEvictions, eviction);
}

bool IsHyperParameter(absl::string_view name) {
  for (const OptimizerInfo& info : AllOptimizers()) {
    if (FindParam(info, name) != nullptr) return true;
  }
  return false;
}

absl::StatusOr<float> ParseFloatFlag(absl::string_view flag,
                                     absl::string_view text) {
  float value;
  if (!absl::SimpleAtof(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", text, ": not a number"));
  }
  return value;
}

absl::StatusOr<v1::Optimizer> BuildOptimizer(
    absl::string_view name, absl::Span<const ParamFlag> params) {
  const OptimizerInfo* info = FindOptimizer(name);
  if (info == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--optimizer=", name, ": expected one of ", OptimizerNames()));
  }
  OptimizerSpec spec = DefaultOptimizerSpec(info->kind);
  for (const ParamFlag& flag : params) {
    const HyperParameter* param = FindParam(*info, flag.name);
    if (param == nullptr) {
      std::vector<std::string> own;
      for (const HyperParameter& p : info->params) {
        own.push_back(absl::StrCat("--", p.name));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag.name, " is not a parameter of the ", info->name,
          " optimizer (it takes ", absl::StrJoin(own, ", "), ")"));
    }
    EMBEDDING_ASSIGN_OR_RETURN(spec.*param->field,
                               ParseFloatFlag(flag.name, flag.value));
  }
  v1::Optimizer optimizer;
  OptimizerToProto(spec, &optimizer);
  return optimizer;
}

std::string FormatFloat(float value) {
  char buffer[32];
  std::to_chars_result result =
      std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

std::string FormatRow(absl::string_view label, absl::Span<const float> row) {
  std::string line = absl::StrCat(label, ":");
  for (float value : row) absl::StrAppend(&line, " ", FormatFloat(value));
  return line;
}

std::string FormatShape(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::string FormatInt64List(absl::Span<const int64_t> values) {
  return absl::StrJoin(values, ",");
}

std::string FormatOptimizer(const v1::Optimizer& optimizer) {
  const OptimizerSpec spec = OptimizerFromProto(optimizer);
  const OptimizerInfo& info = InfoOf(spec.kind);
  std::vector<std::string> params;
  for (const HyperParameter& param : info.params) {
    params.push_back(Param(param.name, spec.*param.field));
  }
  return absl::StrCat(info.name, "(", absl::StrJoin(params, ", "), ")");
}

std::string OptimizerHelp() {
  std::string text;
  for (const OptimizerInfo& info : AllOptimizers()) {
    absl::StrAppend(&text, "  ", info.name, ": ", info.reference, "\n");
    for (const HyperParameter& param : info.params) {
      absl::StrAppendFormat(&text, "      --%-30s %s\n",
                            Param(param.name, param.default_value), param.help);
    }
  }
  return text;
}

std::string FormatInitializer(const v1::Initializer& initializer) {
  switch (initializer.kind_case()) {
    case v1::Initializer::kUniform:
      return absl::StrCat("uniform(", Param("low", initializer.uniform().low()),
                          ", ", Param("high", initializer.uniform().high()),
                          ")");
    case v1::Initializer::kConstant:
      return absl::StrCat("constant(",
                          Param("value", initializer.constant().value()), ")");
    case v1::Initializer::kNormal:
      return absl::StrCat("normal(", Param("mean", initializer.normal().mean()),
                          ", ", Param("std", initializer.normal().std()), ")");
    case v1::Initializer::KIND_NOT_SET:
      break;
  }
  return "normal(mean=0, std=1)";
}

std::string FormatDynamic(const v1::DynamicTable& dynamic) {
  return absl::StrCat(
      "capacity=", dynamic.capacity(), ", admit_after=", dynamic.admit_after(),
      ", eviction=", EvictionName(dynamic.eviction()), ", ttl_pushes=",
      dynamic.has_ttl_pushes() ? absl::StrCat(dynamic.ttl_pushes()) : "none");
}

namespace {

// Whether `info` covers every shard of its table: a cluster's merged info
// (ShardedEmbeddingClient) sums the rows, or a dynamic table's capacities.
bool CoversAllShards(const v1::TableInfo& info) {
  const v1::TableSpec& spec = info.spec();
  if (spec.shard_count() <= 1) return false;
  if (spec.has_dynamic()) {
    return info.dynamic_stats().capacity() ==
           spec.dynamic().capacity() * spec.shard_count();
  }
  return info.local_rows() == spec.num_embeddings();
}

}  // namespace

std::string FormatTableInfo(const v1::TableInfo& info) {
  const v1::TableSpec& spec = info.spec();
  using Field = std::pair<const char*, std::string>;
  // A dynamic table has no number of rows: its options stand in for it.
  const Field size =
      spec.has_dynamic()
          ? Field("dynamic", FormatDynamic(spec.dynamic()))
          : Field("num_embeddings", absl::StrCat(spec.num_embeddings()));
  const Field fields[] = {
      {"name", spec.name()},
      size,
      {"embedding_dim", absl::StrCat(spec.embedding_dim())},
      {"padding_idx",
       spec.has_padding_idx() ? absl::StrCat(spec.padding_idx()) : "none"},
      {"max_norm", spec.has_max_norm() ? FormatFloat(spec.max_norm()) : "none"},
      {"norm_type", spec.has_norm_type() ? FormatFloat(spec.norm_type()) : "2"},
      {"scale_grad_by_freq", spec.scale_grad_by_freq() ? "true" : "false"},
      {"initializer", FormatInitializer(spec.initializer())},
      {"optimizer", FormatOptimizer(spec.optimizer())},
      {"seed", absl::StrCat(spec.seed())},
      // A cluster's merged info covers every shard.
      {"shard", CoversAllShards(info)
                    ? absl::StrCat("all ", spec.shard_count())
                    : absl::StrCat(spec.shard_index(), " of ",
                                   std::max(spec.shard_count(), 1))},
      {"local_rows", absl::StrCat(info.local_rows())},
      {"memory_bytes", absl::StrCat(info.memory_bytes())},
      {"version", absl::StrCat(info.version())},
      {"step", absl::StrCat(info.step())},
      {"last_checkpoint", info.has_last_checkpoint()
                              ? FormatCheckpoint(info.last_checkpoint())
                              : "none"},
  };
  std::string text;
  for (const auto& [key, value] : fields) {
    absl::StrAppendFormat(&text, "%-19s %s\n", absl::StrCat(key, ":"), value);
  }
  if (!spec.has_dynamic()) return text;
  const v1::DynamicStats& stats = info.dynamic_stats();
  const std::pair<const char*, int64_t> counts[] = {
      {"capacity", stats.capacity()},
      {"rows_held", stats.rows_held()},
      {"admissions", stats.admissions()},
      {"evictions", stats.evictions()},
      {"expirations", stats.expirations()},
      {"dropped_rows", stats.dropped_rows()},
      {"absent_rows_looked_up", stats.absent_rows_looked_up()},
  };
  for (const auto& [key, value] : counts) {
    absl::StrAppendFormat(&text, "%-19s %d\n", absl::StrCat(key, ":"), value);
  }
  return text;
}

std::string FormatCheckpoint(const v1::CheckpointInfo& checkpoint) {
  return absl::StrCat(
      "version ", checkpoint.version(), ", ",
      checkpoint.incremental() ? "incremental" : "full", ", ",
      absl::FormatTime(absl::RFC3339_full,
                       absl::FromUnixMicros(checkpoint.time_unix_micros()),
                       absl::UTCTimeZone()),
      ", ", checkpoint.path());
}

std::string FormatSavedCheckpoint(
    const v1::SaveCheckpointResponse::Saved& saved) {
  return absl::StrCat("saved ", saved.table(), ": version ",
                      saved.checkpoint().version(), ", ", saved.rows(),
                      " rows, ", saved.bytes_written(), " bytes, ",
                      saved.checkpoint().incremental() ? "incremental" : "full",
                      ", ", saved.checkpoint().path());
}

std::string FormatTableList(absl::Span<const v1::TableInfo> tables) {
  if (tables.empty()) return "no tables\n";
  int name_width = 4;
  for (const v1::TableInfo& info : tables) {
    name_width =
        std::max(name_width, static_cast<int>(info.spec().name().size()));
  }
  std::string text =
      absl::StrFormat("%-*s %14s %6s %-16s %10s %14s\n", name_width, "NAME",
                      "ROWS", "DIM", "OPTIMIZER", "VERSION", "MEMORY_BYTES");
  for (const v1::TableInfo& info : tables) {
    const OptimizerKind kind = OptimizerFromProto(info.spec().optimizer()).kind;
    const std::string rows =
        info.spec().has_dynamic()
            ? absl::StrCat(info.dynamic_stats().rows_held(), "/",
                           info.dynamic_stats().capacity())
            : absl::StrCat(info.spec().num_embeddings());
    absl::StrAppendFormat(&text, "%-*s %14s %6d %-16s %10d %14d\n", name_width,
                          info.spec().name(), rows, info.spec().embedding_dim(),
                          InfoOf(kind).name, info.version(),
                          info.memory_bytes());
  }
  return text;
}

}  // namespace embedding::cli
