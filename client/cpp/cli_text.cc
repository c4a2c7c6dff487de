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

namespace embedding::cli {
namespace {

template <typename T>
absl::Status ParseListOf(absl::string_view flag, absl::string_view text,
                         std::vector<T>* out) {
  out->clear();
  if (absl::StripAsciiWhitespace(text).empty()) return absl::OkStatus();
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
          "--", flag, ": element ", out->size(), " (\"", piece, "\") is not a",
          std::is_integral_v<T> ? "n integer" : " number"));
    }
    out->push_back(value);
  }
  return absl::OkStatus();
}

// A "key=value" piece of a formatted optimizer; lr 0 means the default.
std::string Param(absl::string_view key, float value) {
  return absl::StrCat(key, "=", FormatFloat(value));
}

std::string LearningRate(float lr) {
  return lr == 0 ? "lr=default" : Param("lr", lr);
}

// Names a hyper-parameter flag that `kind` does not take, if any.
std::optional<std::string> ForeignParameter(const OptimizerFlags& flags,
                                            bool lr_decay, bool accumulator,
                                            bool eps, bool betas) {
  const std::pair<const char*, bool> checks[] = {
      {"lr_decay", !lr_decay && flags.lr_decay.has_value()},
      {"initial_accumulator_value",
       !accumulator && flags.initial_accumulator_value.has_value()},
      {"eps", !eps && flags.eps.has_value()},
      {"beta1", !betas && flags.beta1.has_value()},
      {"beta2", !betas && flags.beta2.has_value()},
  };
  for (const auto& [name, foreign] : checks) {
    if (foreign) return std::string(name);
  }
  return std::nullopt;
}

}  // namespace

absl::Status ParseList(absl::string_view flag, absl::string_view text,
                       std::vector<int64_t>* out) {
  return ParseListOf(flag, text, out);
}

absl::Status ParseList(absl::string_view flag, absl::string_view text,
                       std::vector<float>* out) {
  return ParseListOf(flag, text, out);
}

absl::StatusOr<v1::Initializer> ParseInitializer(absl::string_view text) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits(':', 1));
  std::vector<float> args;
  absl::Status status = ParseList("initializer", parts.second, &args);
  if (!status.ok()) return status;
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
  if (text == "float32") return v1::DTYPE_FLOAT32;
  if (text == "float16") return v1::DTYPE_FLOAT16;
  if (text == "bfloat16") return v1::DTYPE_BFLOAT16;
  return absl::InvalidArgumentError(absl::StrCat(
      "--dtype=", text, ": expected float32, float16 or bfloat16"));
}

absl::StatusOr<v1::BagMode> ParseBagMode(absl::string_view text) {
  if (text == "sum") return v1::BAG_MODE_SUM;
  if (text == "mean") return v1::BAG_MODE_MEAN;
  if (text == "max") return v1::BAG_MODE_MAX;
  return absl::InvalidArgumentError(
      absl::StrCat("--mode=", text, ": expected sum, mean or max"));
}

absl::StatusOr<v1::Optimizer> BuildOptimizer(const OptimizerFlags& flags) {
  v1::Optimizer optimizer;
  std::optional<std::string> foreign;
  const float lr = flags.lr.value_or(0);
  if (flags.kind == "sgd") {
    foreign = ForeignParameter(flags, false, false, false, false);
    optimizer.mutable_sgd()->set_lr(lr);
  } else if (flags.kind == "adagrad") {
    foreign = ForeignParameter(flags, true, true, true, false);
    v1::AdagradOptions* adagrad = optimizer.mutable_adagrad();
    adagrad->set_lr(lr);
    adagrad->set_lr_decay(flags.lr_decay.value_or(0));
    adagrad->set_initial_accumulator_value(
        flags.initial_accumulator_value.value_or(0));
    if (flags.eps) adagrad->set_eps(*flags.eps);
  } else if (flags.kind == "sparse_adam") {
    foreign = ForeignParameter(flags, false, false, true, true);
    v1::SparseAdamOptions* adam = optimizer.mutable_sparse_adam();
    adam->set_lr(lr);
    if (flags.beta1) adam->set_beta1(*flags.beta1);
    if (flags.beta2) adam->set_beta2(*flags.beta2);
    if (flags.eps) adam->set_eps(*flags.eps);
  } else if (flags.kind == "rowwise_adagrad") {
    foreign = ForeignParameter(flags, false, false, true, false);
    optimizer.mutable_rowwise_adagrad()->set_lr(lr);
    if (flags.eps) optimizer.mutable_rowwise_adagrad()->set_eps(*flags.eps);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--optimizer=", flags.kind,
        ": expected sgd, adagrad, sparse_adam or rowwise_adagrad"));
  }
  if (foreign) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", *foreign, " is not a parameter of the ", flags.kind,
                     " optimizer"));
  }
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
  switch (optimizer.kind_case()) {
    case v1::Optimizer::kAdagrad: {
      const v1::AdagradOptions& o = optimizer.adagrad();
      std::string text = absl::StrCat(
          "adagrad(", LearningRate(o.lr()), ", ",
          Param("lr_decay", o.lr_decay()), ", ",
          Param("initial_accumulator_value", o.initial_accumulator_value()));
      if (o.has_eps()) absl::StrAppend(&text, ", ", Param("eps", o.eps()));
      return text + ")";
    }
    case v1::Optimizer::kSparseAdam: {
      const v1::SparseAdamOptions& o = optimizer.sparse_adam();
      std::string text = absl::StrCat("sparse_adam(", LearningRate(o.lr()));
      if (o.has_beta1())
        absl::StrAppend(&text, ", ", Param("beta1", o.beta1()));
      if (o.has_beta2())
        absl::StrAppend(&text, ", ", Param("beta2", o.beta2()));
      if (o.has_eps()) absl::StrAppend(&text, ", ", Param("eps", o.eps()));
      return text + ")";
    }
    case v1::Optimizer::kRowwiseAdagrad: {
      const v1::RowwiseAdagradOptions& o = optimizer.rowwise_adagrad();
      std::string text = absl::StrCat("rowwise_adagrad(", LearningRate(o.lr()));
      if (o.has_eps()) absl::StrAppend(&text, ", ", Param("eps", o.eps()));
      return text + ")";
    }
    case v1::Optimizer::kSgd:
      return absl::StrCat("sgd(", LearningRate(optimizer.sgd().lr()), ")");
    case v1::Optimizer::kFtrl:  // TODO(helper): table-driven formatting.
    case v1::Optimizer::KIND_NOT_SET:
      break;
  }
  return "sgd(lr=default)";
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

std::string FormatTableInfo(const v1::TableInfo& info) {
  const v1::TableSpec& spec = info.spec();
  const std::pair<const char*, std::string> fields[] = {
      {"name", spec.name()},
      {"num_embeddings", absl::StrCat(spec.num_embeddings())},
      {"embedding_dim", absl::StrCat(spec.embedding_dim())},
      {"padding_idx",
       spec.has_padding_idx() ? absl::StrCat(spec.padding_idx()) : "none"},
      {"max_norm", spec.has_max_norm() ? FormatFloat(spec.max_norm()) : "none"},
      {"norm_type", spec.has_norm_type() ? FormatFloat(spec.norm_type()) : "2"},
      {"scale_grad_by_freq", spec.scale_grad_by_freq() ? "true" : "false"},
      {"initializer", FormatInitializer(spec.initializer())},
      {"optimizer", FormatOptimizer(spec.optimizer())},
      {"seed", absl::StrCat(spec.seed())},
      {"shard", absl::StrCat(spec.shard_index(), " of ",
                             std::max(spec.shard_count(), 1))},
      {"local_rows", absl::StrCat(info.local_rows())},
      {"memory_bytes", absl::StrCat(info.memory_bytes())},
      {"version", absl::StrCat(info.version())},
      {"step", absl::StrCat(info.step())},
  };
  std::string text;
  for (const auto& [key, value] : fields) {
    absl::StrAppendFormat(&text, "%-19s %s\n", absl::StrCat(key, ":"), value);
  }
  return text;
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
    const std::string optimizer = FormatOptimizer(info.spec().optimizer());
    absl::StrAppendFormat(&text, "%-*s %14d %6d %-16s %10d %14d\n", name_width,
                          info.spec().name(), info.spec().num_embeddings(),
                          info.spec().embedding_dim(),
                          optimizer.substr(0, optimizer.find('(')),
                          info.version(), info.memory_bytes());
  }
  return text;
}

}  // namespace embedding::cli
