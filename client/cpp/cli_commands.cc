#include "client/cpp/cli_commands.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace embedding::cli {

const char kUsage[] =
    R"(manage and query the tables of an Embedding Service server.

Usage: embedding_cli [--server=HOST:PORT] [--timeout=30s] COMMAND [NAME] [FLAGS]

Tables
  create-table NAME --num_embeddings=N --embedding_dim=D
               [--padding_idx=I] [--max_norm=M] [--norm_type=P]
               [--scale_grad_by_freq] [--seed=S]
               [--initializer=normal:MEAN,STD|uniform:LOW,HIGH|constant:V]
               [--optimizer=sgd|adagrad|sparse_adam|rowwise_adagrad]
               [--lr=X] [--lr_decay=X] [--initial_accumulator_value=X]
               [--eps=X] [--beta1=X] [--beta2=X]
  list                          one line per table
  describe NAME                 spec, optimizer and counters of a table
  delete NAME
  set-optimizer NAME --optimizer=KIND [--lr=X ...]
                                replaces the hyper-parameters (same kind)

Rows (lists are comma-separated; matrices are row-major)
  lookup NAME --indices=1,2,3 [--shape=3] [--dtype=float32|float16|bfloat16]
                                prints "shape [..]", then "INDEX: v0 v1 ..."
  push NAME --indices=1,2 --grad=G00,G01,...,G10,... [--lr=X]
        [--client_id=ID --sequence=N]
                                one optimizer step with grad [len(indices), dim]
  write-rows NAME (--indices=1,2 | --start=ROW) --values=V00,V01,...
  read-rows NAME [--indices=1,2 | --start=ROW --end=ROW]
                                prints "shape [..]", then "INDEX: v0 v1 ..."

Bags (nn.EmbeddingBag)
  lookup-bag NAME --indices=... --offsets=0,2 [--mode=sum|mean|max]
             [--per_sample_weights=...] [--include_last_offset] [--dtype=...]
                                prints "bag I: v0 v1 ..." (and max_indices)
  push-bag NAME --indices=... --offsets=... [--mode=...] --grad=... [--lr=X]
           [--per_sample_weights=...] [--include_last_offset]
           [--max_indices=...]  grad is [bags, dim]; in max mode the
                                max_indices default to a fresh lookup-bag's

Errors print "error: CODE: message" to stderr and exit with status 1.
)";

namespace {

// The list and enum flags, parsed once for every command.
struct ParsedFlags {
  std::vector<int64_t> indices;
  std::vector<int64_t> shape;
  std::vector<float> grad;
  std::vector<float> values;
  std::vector<int64_t> offsets;
  std::vector<float> per_sample_weights;
  std::vector<int64_t> max_indices;
  v1::DType dtype = v1::DTYPE_FLOAT32;
  Bags bags;  // Views `indices`, `offsets` and `per_sample_weights`.
};

absl::Status ParseFlags(const CommandFlags& flags, ParsedFlags* parsed) {
  for (const absl::Status& status :
       {ParseList("indices", flags.indices, &parsed->indices),
        ParseList("shape", flags.shape, &parsed->shape),
        ParseList("grad", flags.grad, &parsed->grad),
        ParseList("values", flags.values, &parsed->values),
        ParseList("offsets", flags.offsets, &parsed->offsets),
        ParseList("per_sample_weights", flags.per_sample_weights,
                  &parsed->per_sample_weights),
        ParseList("max_indices", flags.max_indices, &parsed->max_indices)}) {
    if (!status.ok()) return status;
  }
  absl::StatusOr<v1::DType> dtype = ParseDType(flags.dtype);
  if (!dtype.ok()) return dtype.status();
  absl::StatusOr<v1::BagMode> mode = ParseBagMode(flags.mode);
  if (!mode.ok()) return mode.status();
  parsed->dtype = *dtype;
  parsed->bags.indices = parsed->indices;
  parsed->bags.offsets = parsed->offsets;
  parsed->bags.per_sample_weights = parsed->per_sample_weights;
  parsed->bags.mode = *mode;
  parsed->bags.include_last_offset = flags.include_last_offset;
  return absl::OkStatus();
}

// What a command needs to run.
struct Context {
  const EmbeddingClient& client;
  const std::string& table;  // Empty for commands without a NAME.
  const CommandFlags& flags;
  const ParsedFlags& parsed;
  std::ostream& out;
};

bool HasOptimizerFlags(const OptimizerFlags& flags) {
  return !flags.kind.empty() || flags.lr || flags.lr_decay ||
         flags.initial_accumulator_value || flags.eps || flags.beta1 ||
         flags.beta2;
}

absl::StatusOr<v1::Optimizer> OptimizerFromFlags(const CommandFlags& flags) {
  OptimizerFlags optimizer = flags.optimizer;
  if (optimizer.kind.empty()) optimizer.kind = "sgd";
  return BuildOptimizer(optimizer);
}

PushOptions PushOptionsFromFlags(const CommandFlags& flags) {
  PushOptions push;
  push.learning_rate = flags.optimizer.lr;
  push.client_id = flags.client_id;
  push.sequence = flags.sequence;
  return push;
}

// Prints "shape [..]", then `rows` one per line labelled by `labels`.
void PrintRows(const FloatTensor& rows, const std::vector<std::string>& labels,
               std::ostream& out) {
  out << "shape " << FormatShape(rows.shape) << "\n";
  const size_t dim = rows.shape.empty() ? 0 : rows.shape.back();
  for (size_t i = 0; i < labels.size(); ++i) {
    out << FormatRow(labels[i],
                     absl::MakeConstSpan(rows.data).subspan(i * dim, dim))
        << "\n";
  }
}

std::vector<std::string> IndexLabels(absl::Span<const int64_t> indices) {
  std::vector<std::string> labels;
  labels.reserve(indices.size());
  for (int64_t index : indices) labels.push_back(absl::StrCat(index));
  return labels;
}

absl::Status PrintPush(const Context& ctx,
                       const absl::StatusOr<PushResult>& result) {
  if (!result.ok()) return result.status();
  ctx.out << "pushed to " << ctx.table << ": " << result->rows_updated
          << " rows updated, version " << result->version
          << (result->duplicate ? " (duplicate: already applied before)" : "")
          << "\n";
  return absl::OkStatus();
}

absl::Status CreateTable(const Context& ctx) {
  const CommandFlags& flags = ctx.flags;
  if (!flags.num_embeddings || !flags.embedding_dim) {
    return absl::InvalidArgumentError(
        "create-table needs --num_embeddings and --embedding_dim");
  }
  v1::TableSpec spec;
  spec.set_name(ctx.table);
  spec.set_num_embeddings(*flags.num_embeddings);
  spec.set_embedding_dim(*flags.embedding_dim);
  if (flags.padding_idx) spec.set_padding_idx(*flags.padding_idx);
  if (flags.max_norm) spec.set_max_norm(*flags.max_norm);
  if (flags.norm_type) spec.set_norm_type(*flags.norm_type);
  spec.set_scale_grad_by_freq(flags.scale_grad_by_freq);
  spec.set_seed(flags.seed);
  if (!flags.initializer.empty()) {
    absl::StatusOr<v1::Initializer> initializer =
        ParseInitializer(flags.initializer);
    if (!initializer.ok()) return initializer.status();
    *spec.mutable_initializer() = *std::move(initializer);
  }
  if (HasOptimizerFlags(flags.optimizer)) {
    absl::StatusOr<v1::Optimizer> optimizer = OptimizerFromFlags(flags);
    if (!optimizer.ok()) return optimizer.status();
    *spec.mutable_optimizer() = *std::move(optimizer);
  }
  absl::StatusOr<v1::TableInfo> info = ctx.client.CreateTable(spec);
  if (!info.ok()) return info.status();
  ctx.out << "created table " << ctx.table << "\n" << FormatTableInfo(*info);
  return absl::OkStatus();
}

absl::Status List(const Context& ctx) {
  absl::StatusOr<std::vector<v1::TableInfo>> tables = ctx.client.ListTables();
  if (!tables.ok()) return tables.status();
  ctx.out << FormatTableList(*tables);
  return absl::OkStatus();
}

absl::Status Describe(const Context& ctx) {
  absl::StatusOr<v1::TableInfo> info = ctx.client.GetTable(ctx.table);
  if (!info.ok()) return info.status();
  ctx.out << FormatTableInfo(*info);
  return absl::OkStatus();
}

absl::Status Delete(const Context& ctx) {
  absl::Status status = ctx.client.DeleteTable(ctx.table);
  if (!status.ok()) return status;
  ctx.out << "deleted table " << ctx.table << "\n";
  return absl::OkStatus();
}

absl::Status SetOptimizer(const Context& ctx) {
  if (ctx.flags.optimizer.kind.empty()) {
    return absl::InvalidArgumentError("set-optimizer needs --optimizer");
  }
  absl::StatusOr<v1::Optimizer> optimizer = OptimizerFromFlags(ctx.flags);
  if (!optimizer.ok()) return optimizer.status();
  absl::StatusOr<v1::TableInfo> info =
      ctx.client.SetOptimizer(ctx.table, *optimizer);
  if (!info.ok()) return info.status();
  ctx.out << "optimizer of " << ctx.table << ": "
          << FormatOptimizer(info->spec().optimizer()) << "\n";
  return absl::OkStatus();
}

absl::Status Lookup(const Context& ctx) {
  LookupOptions options;
  options.shape = ctx.parsed.shape;
  options.dtype = ctx.parsed.dtype;
  absl::StatusOr<FloatTensor> rows =
      ctx.client.Lookup(ctx.table, ctx.parsed.indices, options);
  if (!rows.ok()) return rows.status();
  PrintRows(*rows, IndexLabels(ctx.parsed.indices), ctx.out);
  return absl::OkStatus();
}

absl::Status Push(const Context& ctx) {
  return PrintPush(ctx, ctx.client.PushGradients(
                            ctx.table, ctx.parsed.indices, ctx.parsed.grad,
                            PushOptionsFromFlags(ctx.flags)));
}

absl::Status WriteRows(const Context& ctx) {
  absl::StatusOr<WriteResult> result;
  if (ctx.flags.start.has_value()) {
    if (!ctx.parsed.indices.empty()) {
      return absl::InvalidArgumentError(
          "write-rows takes --indices or --start, not both");
    }
    absl::StatusOr<v1::TableInfo> info = ctx.client.GetTable(ctx.table);
    if (!info.ok()) return info.status();
    result = ctx.client.WriteRowRange(ctx.table, *ctx.flags.start,
                                      info->spec().embedding_dim(),
                                      ctx.parsed.values);
  } else {
    result =
        ctx.client.WriteRows(ctx.table, ctx.parsed.indices, ctx.parsed.values);
  }
  if (!result.ok()) return result.status();
  ctx.out << "wrote " << result->rows_written << " rows to " << ctx.table
          << ", version " << result->version << "\n";
  return absl::OkStatus();
}

absl::Status ReadRows(const Context& ctx) {
  absl::StatusOr<ReadRowsResult> result;
  if (!ctx.parsed.indices.empty()) {
    if (ctx.flags.start || ctx.flags.end) {
      return absl::InvalidArgumentError(
          "read-rows takes --indices or --start/--end, not both");
    }
    result = ctx.client.ReadRows(ctx.table, ctx.parsed.indices);
  } else {
    result = ctx.client.ReadRowRange(ctx.table, ctx.flags.start.value_or(0),
                                     ctx.flags.end.value_or(0));
  }
  if (!result.ok()) return result.status();
  PrintRows(result->values, IndexLabels(result->indices), ctx.out);
  return absl::OkStatus();
}

absl::Status LookupBag(const Context& ctx) {
  absl::StatusOr<BagLookupResult> result =
      ctx.client.LookupBag(ctx.table, ctx.parsed.bags, ctx.parsed.dtype);
  if (!result.ok()) return result.status();
  const int64_t bags =
      result->embeddings.shape.empty() ? 0 : result->embeddings.shape[0];
  std::vector<std::string> labels;
  for (int64_t bag = 0; bag < bags; ++bag) {
    labels.push_back(absl::StrCat("bag ", bag));
  }
  PrintRows(result->embeddings, labels, ctx.out);
  if (!result->max_indices.empty()) {
    ctx.out << "max_indices: " << FormatInt64List(result->max_indices) << "\n";
  }
  return absl::OkStatus();
}

absl::Status PushBag(const Context& ctx) {
  std::vector<int64_t> max_indices = ctx.parsed.max_indices;
  if (ctx.parsed.bags.mode == v1::BAG_MODE_MAX && max_indices.empty()) {
    absl::StatusOr<BagLookupResult> forward =
        ctx.client.LookupBag(ctx.table, ctx.parsed.bags);
    if (!forward.ok()) return forward.status();
    max_indices = std::move(forward->max_indices);
  }
  return PrintPush(ctx, ctx.client.PushBagGradients(
                            ctx.table, ctx.parsed.bags, ctx.parsed.grad,
                            max_indices, PushOptionsFromFlags(ctx.flags)));
}

struct Command {
  const char* name;
  bool takes_table;
  absl::Status (*run)(const Context&);
};

constexpr Command kCommands[] = {
    {"create-table", true, CreateTable},
    {"list", false, List},
    {"describe", true, Describe},
    {"delete", true, Delete},
    {"set-optimizer", true, SetOptimizer},
    {"lookup", true, Lookup},
    {"push", true, Push},
    {"write-rows", true, WriteRows},
    {"read-rows", true, ReadRows},
    {"lookup-bag", true, LookupBag},
    {"push-bag", true, PushBag},
};

}  // namespace

absl::Status RunCommand(const EmbeddingClient& client,
                        absl::Span<const std::string> args,
                        const CommandFlags& flags, std::ostream& out) {
  if (args.empty()) {
    return absl::InvalidArgumentError(
        "no command given; run embedding_cli --help");
  }
  for (const Command& command : kCommands) {
    if (args[0] != command.name) continue;
    const size_t expected = command.takes_table ? 2 : 1;
    if (args.size() != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          command.name,
          command.takes_table ? " takes one table NAME" : " takes no operands",
          ", got ", args.size() - 1, " operands"));
    }
    ParsedFlags parsed;
    absl::Status status = ParseFlags(flags, &parsed);
    if (!status.ok()) return status;
    const std::string no_table;
    return command.run(Context{client, command.takes_table ? args[1] : no_table,
                               flags, parsed, out});
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown command \"", args[0], "\"; run embedding_cli --help"));
}

}  // namespace embedding::cli
