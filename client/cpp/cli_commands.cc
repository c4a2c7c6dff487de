#include "client/cpp/cli_commands.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/cpp/npy_transfer.h"
#include "common/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace embedding::cli {

std::string Usage() {
  return absl::StrCat(
      R"(manage and query the tables of an Embedding Service server.

Usage: embedding_cli [--server=HOST:PORT[,HOST:PORT...]] [--timeout=DURATION]
                     COMMAND [NAME] [FLAGS]

--server takes one server, or every server of a cluster in shard-index
order (the server started with --shard_index=k is the k-th): each command
then works on the whole table as if one server held it.

Security: --tls_ca_file=CA.pem turns TLS on (--tls_cert_file and
--tls_key_file add a client certificate for mutual TLS, --tls_server_name
overrides the name checked); the bearer token comes from --token_file=PATH
or $EMBEDDING_TOKEN, never from the command line.

Servers
  health                        asks each server of --server for its gRPC
                                health; prints "ADDRESS: SERVING" per
                                server, exit status 0 only if all serve

Tables
  create-table NAME --num_embeddings=N --embedding_dim=D
               [--padding_idx=I] [--max_norm=M] [--norm_type=P]
               [--scale_grad_by_freq] [--seed=S]
               [--initializer=normal:MEAN,STD|uniform:LOW,HIGH|constant:V]
               [--optimizer=NAME] [--PARAM=VALUE ...]
                                the optimizers and their PARAMs are below
  create-table NAME --capacity=C --embedding_dim=D [--admit_after=N]
               [--eviction=lru|lfu] [--ttl_pushes=T] [the options above]
                                a dynamic table: ids are any int64 (but
                                -9223372036854775808), a row exists once its
                                id was pushed N times (default 1), each
                                server holds at most C rows and evicts the
                                least recently (lru) or least often (lfu)
                                pushed one; with --ttl_pushes, rows not
                                pushed in T pushes expire; --padding_idx is
                                an id, taken as it is
  list                          one line per table (a dynamic table's ROWS:
                                rows held/capacity)
  describe NAME                 spec, optimizer and counters of a table (a
                                dynamic table's: capacity, rows_held,
                                admissions, evictions, expirations,
                                dropped_rows, absent_rows_looked_up)
  delete NAME
  set-optimizer NAME --optimizer=NAME [--PARAM=VALUE ...]
                                replaces the hyper-parameters (same kind;
                                unset ones take their defaults)

Rows (lists are comma-separated; matrices are row-major)
  lookup NAME --indices=1,2,3 [--shape=3] [--dtype=float32|float16|bfloat16]
                                prints "shape [..]", then "INDEX: v0 v1 ..."
  push NAME --indices=1,2 --grad=G00,G01,...,G10,... [--lr=X]
        [--client_id=ID] [--sequence=N]
                                one optimizer step with grad [len(indices), dim]
                                (a dynamic table's push also prints the rows
                                it admitted, dropped and evicted)
  write-rows NAME (--indices=1,2 | --start=ROW) --values=V00,V01,...
  read-rows NAME [--indices=1,2 | --start=ROW --end=ROW]
                                prints "shape [..]", then "INDEX: v0 v1 ..."

Checkpoints and NumPy files
  checkpoint [NAME...] [--incremental]
                                saves the tables (all when none is named) to
                                the server's --checkpoint_dir; prints "saved
                                NAME: version V, N rows, B bytes,
                                full|incremental, PATH" per table
  export NAME FILE.npy          writes the table as float32 [num_embeddings,
                                embedding_dim] for numpy.load, in chunks
  export NAME FILE.npz          writes the rows the table holds with their
                                ids (a dynamic table's): ids int64 [n],
                                weights float32 [n, embedding_dim]
  import NAME FILE.npy          overwrites every row of an existing table of
                                that shape from a float32 C-order .npy file
                                (as numpy.save writes it), in chunks
  import NAME FILE.npz          writes the rows of an export .npz (or of
                                numpy.savez(f, ids=..., weights=...)) at
                                their ids; a dynamic table admits the ids it
                                does not hold, with fresh optimizer state

Bags (nn.EmbeddingBag)
  lookup-bag NAME --indices=... --offsets=0,2 [--mode=sum|mean|max]
             [--per_sample_weights=...] [--include_last_offset] [--dtype=...]
                                prints "bag I: v0 v1 ..." (and max_indices);
                                --mode defaults to )",
      BagModeName(kDefaultBagMode), R"(, as nn.EmbeddingBag
  push-bag NAME --indices=... --offsets=... [--mode=...] --grad=... [--lr=X]
           [--per_sample_weights=...] [--include_last_offset]
           [--max_indices=...]  grad is [bags, dim]; in max mode the
                                max_indices default to a fresh lookup-bag's

Optimizers (--optimizer=NAME, then --PARAM=VALUE for its hyper-parameters;
unset ones take the defaults shown)
)",
      OptimizerHelp(), R"(
Errors print "error: CODE: message" to stderr and exit with status 1.
)");
}

SplitArgs ExtractOptimizerParams(int argc, char** argv) {
  SplitArgs split;
  if (argc > 0) split.argv.push_back(argv[0]);
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") {  // The rest is positional.
      split.argv.insert(split.argv.end(), argv + i, argv + argc);
      break;
    }
    absl::string_view name = arg;
    if (!absl::ConsumePrefix(&name, "--")) absl::ConsumePrefix(&name, "-");
    if (name.size() == arg.size()) {  // Not a flag.
      split.argv.push_back(argv[i]);
      continue;
    }
    const size_t equals = name.find('=');
    if (!IsHyperParameter(name.substr(0, equals))) {
      split.argv.push_back(argv[i]);
      continue;
    }
    if (equals != absl::string_view::npos) {
      split.params.push_back({std::string(name.substr(0, equals)),
                              std::string(name.substr(equals + 1))});
    } else {  // --NAME VALUE; a missing value is an empty one (not a number).
      split.params.push_back(
          {std::string(name), i + 1 < argc ? std::string(argv[++i]) : ""});
    }
  }
  return split;
}

namespace {

// What a command needs to run: an EmbeddingClient (one server) or a
// ShardedEmbeddingClient (one or several), which have the same methods.
template <typename Client>
struct Context {
  const Client& client;
  const std::string& table;  // Empty for commands without a NAME.
  // Everything after the command's name (the NAME first, if it takes one).
  absl::Span<const std::string> operands;
  const CommandFlags& flags;
  std::ostream& out;
};

// The bag flags, parsed; `bags` views the vectors.
struct BagFlags {
  std::vector<int64_t> indices;
  std::vector<int64_t> offsets;
  std::vector<float> per_sample_weights;
  Bags bags;
};

absl::StatusOr<std::unique_ptr<BagFlags>> ParseBags(const CommandFlags& flags) {
  auto parsed = std::make_unique<BagFlags>();
  EMBEDDING_ASSIGN_OR_RETURN(parsed->indices,
                             ParseInt64List("indices", flags.indices));
  EMBEDDING_ASSIGN_OR_RETURN(parsed->offsets,
                             ParseInt64List("offsets", flags.offsets));
  EMBEDDING_ASSIGN_OR_RETURN(
      parsed->per_sample_weights,
      ParseFloatList("per_sample_weights", flags.per_sample_weights));
  EMBEDDING_ASSIGN_OR_RETURN(parsed->bags.mode, ParseBagMode(flags.mode));
  parsed->bags.indices = parsed->indices;
  parsed->bags.offsets = parsed->offsets;
  parsed->bags.per_sample_weights = parsed->per_sample_weights;
  parsed->bags.include_last_offset = flags.include_last_offset;
  return parsed;
}

absl::StatusOr<v1::Optimizer> OptimizerFromFlags(const CommandFlags& flags) {
  return BuildOptimizer(flags.optimizer.empty() ? "sgd" : flags.optimizer,
                        flags.params);
}

// push and push-bag take --lr (only) as this push's learning rate.
absl::StatusOr<PushGradientsOptions> PushOptionsFromFlags(
    const CommandFlags& flags) {
  PushGradientsOptions push;
  for (const ParamFlag& param : flags.params) {
    if (param.name != "lr") {
      return absl::InvalidArgumentError(
          absl::StrCat("--", param.name,
                       " is not a flag of a push (only --lr, the learning "
                       "rate of this push)"));
    }
    EMBEDDING_ASSIGN_OR_RETURN(push.learning_rate,
                               ParseFloatFlag(param.name, param.value));
  }
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

template <typename Client>
absl::Status PrintPush(const Context<Client>& ctx,
                       const absl::StatusOr<PushGradientsResult>& result) {
  EMBEDDING_RETURN_IF_ERROR(result.status());
  ctx.out << "pushed to " << ctx.table << ": " << result->rows_updated
          << " rows updated, version " << result->version;
  if (result->rows_admitted != 0 || result->rows_dropped != 0 ||
      result->rows_evicted != 0) {  // Only a dynamic table's push.
    ctx.out << "; " << result->rows_admitted << " admitted, "
            << result->rows_dropped << " dropped, " << result->rows_evicted
            << " evicted";
  }
  ctx.out << (result->duplicate ? " (duplicate: already applied before)" : "")
          << "\n";
  return absl::OkStatus();
}

// The dynamic table of --capacity, --admit_after, --eviction and
// --ttl_pushes into `spec` (ranges are the server's to check).
absl::Status SetDynamicFromFlags(const CommandFlags& flags,
                                 v1::TableSpec* spec) {
  if (!flags.capacity.has_value()) {
    if (flags.admit_after || !flags.eviction.empty() || flags.ttl_pushes) {
      return absl::InvalidArgumentError(
          "--admit_after, --eviction and --ttl_pushes are options of a "
          "dynamic table: give its --capacity too");
    }
    return absl::OkStatus();
  }
  if (flags.num_embeddings.has_value()) {
    return absl::InvalidArgumentError(
        "create-table takes --num_embeddings (a table of rows [0, N)) or "
        "--capacity (a dynamic table of any int64 ids), not both");
  }
  v1::DynamicTable* dynamic = spec->mutable_dynamic();
  dynamic->set_capacity(*flags.capacity);
  if (flags.admit_after) dynamic->set_admit_after(*flags.admit_after);
  if (!flags.eviction.empty()) {
    EMBEDDING_ASSIGN_OR_RETURN(const v1::DynamicTable::Eviction eviction,
                               ParseEviction(flags.eviction));
    dynamic->set_eviction(eviction);
  }
  if (flags.ttl_pushes) dynamic->set_ttl_pushes(*flags.ttl_pushes);
  return absl::OkStatus();
}

template <typename Client>
absl::Status CreateTable(const Context<Client>& ctx) {
  const CommandFlags& flags = ctx.flags;
  v1::TableSpec spec;
  spec.set_name(ctx.table);
  EMBEDDING_RETURN_IF_ERROR(SetDynamicFromFlags(flags, &spec));
  if (!flags.embedding_dim || (!flags.num_embeddings && !spec.has_dynamic())) {
    return absl::InvalidArgumentError(
        spec.has_dynamic()
            ? "create-table needs --embedding_dim"
            : "create-table needs --num_embeddings and --embedding_dim");
  }
  spec.set_num_embeddings(flags.num_embeddings.value_or(0));
  spec.set_embedding_dim(*flags.embedding_dim);
  if (flags.padding_idx) spec.set_padding_idx(*flags.padding_idx);
  if (flags.max_norm) spec.set_max_norm(*flags.max_norm);
  if (flags.norm_type) spec.set_norm_type(*flags.norm_type);
  spec.set_scale_grad_by_freq(flags.scale_grad_by_freq);
  spec.set_seed(flags.seed);
  if (!flags.initializer.empty()) {
    EMBEDDING_ASSIGN_OR_RETURN(*spec.mutable_initializer(),
                               ParseInitializer(flags.initializer));
  }
  if (!flags.optimizer.empty() || !flags.params.empty()) {
    EMBEDDING_ASSIGN_OR_RETURN(*spec.mutable_optimizer(),
                               OptimizerFromFlags(flags));
  }
  EMBEDDING_ASSIGN_OR_RETURN(const v1::TableInfo info,
                             ctx.client.CreateTable(spec));
  ctx.out << "created table " << ctx.table << "\n" << FormatTableInfo(info);
  return absl::OkStatus();
}

template <typename Client>
absl::Status List(const Context<Client>& ctx) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::vector<v1::TableInfo> tables,
                             ctx.client.ListTables());
  ctx.out << FormatTableList(tables);
  return absl::OkStatus();
}

template <typename Client>
absl::Status Describe(const Context<Client>& ctx) {
  EMBEDDING_ASSIGN_OR_RETURN(const v1::TableInfo info,
                             ctx.client.GetTable(ctx.table));
  ctx.out << FormatTableInfo(info);
  return absl::OkStatus();
}

template <typename Client>
absl::Status Delete(const Context<Client>& ctx) {
  EMBEDDING_RETURN_IF_ERROR(ctx.client.DeleteTable(ctx.table));
  ctx.out << "deleted table " << ctx.table << "\n";
  return absl::OkStatus();
}

template <typename Client>
absl::Status SetOptimizer(const Context<Client>& ctx) {
  if (ctx.flags.optimizer.empty()) {
    return absl::InvalidArgumentError("set-optimizer needs --optimizer");
  }
  EMBEDDING_ASSIGN_OR_RETURN(const v1::Optimizer optimizer,
                             OptimizerFromFlags(ctx.flags));
  EMBEDDING_ASSIGN_OR_RETURN(const v1::TableInfo info,
                             ctx.client.SetOptimizer(ctx.table, optimizer));
  ctx.out << "optimizer of " << ctx.table << ": "
          << FormatOptimizer(info.spec().optimizer()) << "\n";
  return absl::OkStatus();
}

template <typename Client>
absl::Status Lookup(const Context<Client>& ctx) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::vector<int64_t> indices,
                             ParseInt64List("indices", ctx.flags.indices));
  LookupOptions options;
  EMBEDDING_ASSIGN_OR_RETURN(options.shape,
                             ParseInt64List("shape", ctx.flags.shape));
  EMBEDDING_ASSIGN_OR_RETURN(options.dtype, ParseDType(ctx.flags.dtype));
  EMBEDDING_ASSIGN_OR_RETURN(const FloatTensor rows,
                             ctx.client.Lookup(ctx.table, indices, options));
  PrintRows(rows, IndexLabels(indices), ctx.out);
  return absl::OkStatus();
}

template <typename Client>
absl::Status Push(const Context<Client>& ctx) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::vector<int64_t> indices,
                             ParseInt64List("indices", ctx.flags.indices));
  EMBEDDING_ASSIGN_OR_RETURN(const std::vector<float> grad,
                             ParseFloatList("grad", ctx.flags.grad));
  EMBEDDING_ASSIGN_OR_RETURN(const PushGradientsOptions push,
                             PushOptionsFromFlags(ctx.flags));
  return PrintPush(ctx,
                   ctx.client.PushGradients(ctx.table, indices, grad, push));
}

template <typename Client>
absl::Status WriteRows(const Context<Client>& ctx) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::vector<int64_t> indices,
                             ParseInt64List("indices", ctx.flags.indices));
  EMBEDDING_ASSIGN_OR_RETURN(const std::vector<float> values,
                             ParseFloatList("values", ctx.flags.values));
  absl::StatusOr<WriteResult> result;
  if (ctx.flags.start.has_value()) {
    if (!indices.empty()) {
      return absl::InvalidArgumentError(
          "write-rows takes --indices or --start, not both");
    }
    EMBEDDING_ASSIGN_OR_RETURN(const v1::TableInfo info,
                               ctx.client.GetTable(ctx.table));
    result = ctx.client.WriteRowRange(ctx.table, *ctx.flags.start,
                                      info.spec().embedding_dim(), values);
  } else {
    result = ctx.client.WriteRows(ctx.table, indices, values);
  }
  EMBEDDING_RETURN_IF_ERROR(result.status());
  ctx.out << "wrote " << result->rows_written << " rows to " << ctx.table
          << ", version " << result->version << "\n";
  return absl::OkStatus();
}

template <typename Client>
absl::Status ReadRows(const Context<Client>& ctx) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::vector<int64_t> indices,
                             ParseInt64List("indices", ctx.flags.indices));
  absl::StatusOr<ReadRowsResult> result;
  if (!indices.empty()) {
    if (ctx.flags.start || ctx.flags.end) {
      return absl::InvalidArgumentError(
          "read-rows takes --indices or --start/--end, not both");
    }
    result = ctx.client.ReadRows(ctx.table, indices);
  } else {
    result = ctx.client.ReadRowRange(ctx.table, ctx.flags.start.value_or(0),
                                     ctx.flags.end.value_or(0));
  }
  EMBEDDING_RETURN_IF_ERROR(result.status());
  PrintRows(result->values, IndexLabels(result->indices), ctx.out);
  return absl::OkStatus();
}

template <typename Client>
absl::Status Checkpoint(const Context<Client>& ctx) {
  const std::vector<std::string> tables(ctx.operands.begin(),
                                        ctx.operands.end());
  EMBEDDING_ASSIGN_OR_RETURN(
      const v1::SaveCheckpointResponse response,
      ctx.client.SaveCheckpoint(tables, ctx.flags.incremental));
  for (const v1::SaveCheckpointResponse::Saved& saved : response.saved()) {
    ctx.out << FormatSavedCheckpoint(saved) << "\n";
  }
  return absl::OkStatus();
}

// A .npz file carries ids with the rows; any other a .npy matrix.
bool IsNpz(absl::string_view file) { return absl::EndsWith(file, ".npz"); }

template <typename Client>
absl::Status Export(const Context<Client>& ctx) {
  const std::string& file = ctx.operands[1];
  EMBEDDING_ASSIGN_OR_RETURN(const NpyTransfer exported,
                             IsNpz(file)
                                 ? ExportNpz(ctx.client, ctx.table, file)
                                 : ExportNpy(ctx.client, ctx.table, file));
  ctx.out << "exported " << ctx.table << ": " << exported.rows << " rows x "
          << exported.dim << " to " << file << " (" << exported.file_bytes
          << " bytes)\n";
  return absl::OkStatus();
}

template <typename Client>
absl::Status Import(const Context<Client>& ctx) {
  const std::string& file = ctx.operands[1];
  EMBEDDING_ASSIGN_OR_RETURN(const NpyTransfer imported,
                             IsNpz(file)
                                 ? ImportNpz(ctx.client, ctx.table, file)
                                 : ImportNpy(ctx.client, ctx.table, file));
  ctx.out << "imported " << ctx.table << ": " << imported.rows << " rows x "
          << imported.dim << " from " << file << ", version "
          << imported.version << "\n";
  return absl::OkStatus();
}

template <typename Client>
absl::Status LookupBag(const Context<Client>& ctx) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::unique_ptr<BagFlags> parsed,
                             ParseBags(ctx.flags));
  EMBEDDING_ASSIGN_OR_RETURN(const v1::DType dtype,
                             ParseDType(ctx.flags.dtype));
  EMBEDDING_ASSIGN_OR_RETURN(
      const BagLookupResult result,
      ctx.client.LookupBag(ctx.table, parsed->bags, dtype));
  const int64_t bags =
      result.embeddings.shape.empty() ? 0 : result.embeddings.shape[0];
  std::vector<std::string> labels;
  for (int64_t bag = 0; bag < bags; ++bag) {
    labels.push_back(absl::StrCat("bag ", bag));
  }
  PrintRows(result.embeddings, labels, ctx.out);
  if (!result.max_indices.empty()) {
    ctx.out << "max_indices: " << FormatInt64List(result.max_indices) << "\n";
  }
  return absl::OkStatus();
}

template <typename Client>
absl::Status PushBag(const Context<Client>& ctx) {
  EMBEDDING_ASSIGN_OR_RETURN(const std::unique_ptr<BagFlags> parsed,
                             ParseBags(ctx.flags));
  EMBEDDING_ASSIGN_OR_RETURN(const std::vector<float> grad,
                             ParseFloatList("grad", ctx.flags.grad));
  EMBEDDING_ASSIGN_OR_RETURN(
      std::vector<int64_t> max_indices,
      ParseInt64List("max_indices", ctx.flags.max_indices));
  EMBEDDING_ASSIGN_OR_RETURN(const PushGradientsOptions push,
                             PushOptionsFromFlags(ctx.flags));
  if (parsed->bags.mode == v1::BAG_MODE_MAX && max_indices.empty()) {
    EMBEDDING_ASSIGN_OR_RETURN(BagLookupResult forward,
                               ctx.client.LookupBag(ctx.table, parsed->bags));
    max_indices = std::move(forward.max_indices);
  }
  return PrintPush(ctx, ctx.client.PushBagGradients(ctx.table, parsed->bags,
                                                    grad, max_indices, push));
}

// What a command takes after its name.
enum class Operands { kNone, kTable, kTables, kTableAndFile };

// Which hyper-parameter flags a command takes.
enum class Params { kNone, kLearningRate, kOptimizer };

template <typename Client>
struct Command {
  const char* name;
  Operands operands;
  Params params;
  absl::Status (*run)(const Context<Client>&);
};

template <typename Client>
constexpr Command<Client> kCommands[] = {
    {"create-table", Operands::kTable, Params::kOptimizer, CreateTable<Client>},
    {"list", Operands::kNone, Params::kNone, List<Client>},
    {"describe", Operands::kTable, Params::kNone, Describe<Client>},
    {"delete", Operands::kTable, Params::kNone, Delete<Client>},
    {"set-optimizer", Operands::kTable, Params::kOptimizer,
     SetOptimizer<Client>},
    {"lookup", Operands::kTable, Params::kNone, Lookup<Client>},
    {"push", Operands::kTable, Params::kLearningRate, Push<Client>},
    {"write-rows", Operands::kTable, Params::kNone, WriteRows<Client>},
    {"read-rows", Operands::kTable, Params::kNone, ReadRows<Client>},
    {"lookup-bag", Operands::kTable, Params::kNone, LookupBag<Client>},
    {"push-bag", Operands::kTable, Params::kLearningRate, PushBag<Client>},
    {"checkpoint", Operands::kTables, Params::kNone, Checkpoint<Client>},
    {"export", Operands::kTableAndFile, Params::kNone, Export<Client>},
    {"import", Operands::kTableAndFile, Params::kNone, Import<Client>},
};

// INVALID_ARGUMENT unless `command` may take `count` operands.
template <typename Client>
absl::Status CheckOperandCount(const Command<Client>& command, size_t count) {
  const char* expected = nullptr;
  switch (command.operands) {
    case Operands::kNone:
      if (count != 0) expected = " takes no operands";
      break;
    case Operands::kTable:
      if (count != 1) expected = " takes one table NAME";
      break;
    case Operands::kTables:
      break;
    case Operands::kTableAndFile:
      if (count != 2) expected = " takes a table NAME and a FILE";
      break;
  }
  if (expected == nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(command.name, expected, ", got ", count, " operands"));
}

template <typename Client>
absl::Status Run(const Client& client, absl::Span<const std::string> args,
                 const CommandFlags& flags, std::ostream& out) {
  if (args.empty()) {
    return absl::InvalidArgumentError(
        "no command given; run embedding_cli --help");
  }
  for (const Command<Client>& command : kCommands<Client>) {
    if (args[0] != command.name) continue;
    const absl::Span<const std::string> operands = args.subspan(1);
    EMBEDDING_RETURN_IF_ERROR(CheckOperandCount(command, operands.size()));
    if (command.params == Params::kNone && !flags.params.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flags.params[0].name, " is an optimizer hyper-parameter; ",
          command.name, " takes none"));
    }
    const bool named = command.operands == Operands::kTable ||
                       command.operands == Operands::kTableAndFile;
    const std::string no_table;
    return command.run(Context<Client>{client, named ? operands[0] : no_table,
                                       operands, flags, out});
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown command \"", args[0], "\"; run embedding_cli --help"));
}

}  // namespace

absl::Status RunCommand(const EmbeddingClient& client,
                        absl::Span<const std::string> args,
                        const CommandFlags& flags, std::ostream& out) {
  return Run(client, args, flags, out);
}

absl::Status RunCommand(const ShardedEmbeddingClient& client,
                        absl::Span<const std::string> args,
                        const CommandFlags& flags, std::ostream& out) {
  return Run(client, args, flags, out);
}

absl::StatusOr<std::vector<std::string>> ParseAddresses(
    absl::string_view text) {
  std::vector<std::string> addresses = absl::StrSplit(text, ',');
  for (size_t k = 0; k < addresses.size(); ++k) {
    if (addresses[k].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--server=", text, " has an empty address at position ",
                       k, "; give host:port entries separated by commas"));
    }
  }
  return addresses;
}

absl::Status CheckHealth(absl::Span<const std::string> addresses,
                         const ClientOptions& options, std::ostream& out) {
  using grpc::health::v1::Health;
  using grpc::health::v1::HealthCheckRequest;
  using grpc::health::v1::HealthCheckResponse;
  struct Check {
    std::unique_ptr<Health::Stub> stub;
    grpc::ClientContext context;
    HealthCheckResponse response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<HealthCheckResponse>>
        reader;
  };
  // Every channel before any call: a bad option fails before a call is
  // left pending on the queue.
  std::vector<std::unique_ptr<Check>> checks;
  for (const std::string& address : addresses) {
    EMBEDDING_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                               CreateClientChannel(address, options));
    checks.push_back(std::make_unique<Check>());
    checks.back()->stub = Health::NewStub(std::move(channel));
  }
  // All at once: a dead server costs one timeout, not one each.
  grpc::CompletionQueue queue;
  const CallContextPreparer contexts(options);
  for (size_t k = 0; k < checks.size(); ++k) {
    Check& check = *checks[k];
    contexts.Prepare(CallOptions(), &check.context);
    check.reader =
        check.stub->AsyncCheck(&check.context, HealthCheckRequest(), &queue);
    check.reader->Finish(&check.response, &check.status,
                         reinterpret_cast<void*>(k));
  }
  for (size_t done = 0; done < checks.size(); ++done) {
    void* tag = nullptr;
    bool ok = false;
    if (!queue.Next(&tag, &ok)) break;
  }
  queue.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (queue.Next(&tag, &ok)) {
  }
  std::vector<std::string> failing;
  for (size_t k = 0; k < checks.size(); ++k) {
    const Check& check = *checks[k];
    const std::string state =
        check.status.ok()
            ? HealthCheckResponse::ServingStatus_Name(check.response.status())
            : absl::StrCat(
                  absl::StatusCodeToString(
                      static_cast<absl::StatusCode>(check.status.error_code())),
                  " (", check.status.error_message(), ")");
    out << addresses[k] << ": " << state << "\n";
    if (!check.status.ok() ||
        check.response.status() != HealthCheckResponse::SERVING) {
      failing.push_back(absl::StrCat(addresses[k], " is ", state));
    }
  }
  if (failing.empty()) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat(failing.size(), " of ", addresses.size(),
                   " servers not serving: ", absl::StrJoin(failing, "; ")));
}

}  // namespace embedding::cli
