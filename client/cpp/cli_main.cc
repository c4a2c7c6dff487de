// embedding_cli: command-line client of the Embedding Service. Flags become
// ClientOptions and a CommandFlags struct here; everything else lives in
// cli_commands.cc. The connection flags default to the C++ client's
// constants, which are client/CONTRACT.md's defaults. Optimizer
// hyper-parameters (--lr, --l1, ...) are not absl flags: see
// ExtractOptimizerParams in cli_commands.h.
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/cpp/cli_commands.h"
#include "client/cpp/cli_text.h"
#include "client/cpp/client_security.h"
#include "client/cpp/client_security_flags.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/sharded_client.h"

ABSL_FLAG(std::string, server, std::string(embedding::kDefaultAddress),
          "Server address host:port, or the addresses of every server of a "
          "cluster separated by commas, in shard-index order.");
ABSL_FLAG(absl::Duration, timeout, embedding::kDefaultTimeout,
          "Deadline of each RPC (each attempt of a retried one), e.g. 500ms, "
          "30s.");
ABSL_FLAG(int, max_message_bytes, embedding::kDefaultMaxMessageBytes,
          "Largest message sent or received; bulk transfers are chunked "
          "below it.");
ABSL_FLAG(int, max_retries, embedding::kDefaultMaxRetries,
          "Retries of a read or push that failed with UNAVAILABLE.");
ABSL_FLAG(std::optional<int64_t>, num_embeddings, std::nullopt,
          "create-table: rows of the table.");
ABSL_FLAG(std::optional<int64_t>, embedding_dim, std::nullopt,
          "create-table: columns of the table.");
ABSL_FLAG(std::optional<int64_t>, padding_idx, std::nullopt,
          "create-table: row that stays zero (negative counts from the end).");
ABSL_FLAG(std::optional<float>, max_norm, std::nullopt,
          "create-table: renormalise looked-up rows above this norm.");
ABSL_FLAG(std::optional<float>, norm_type, std::nullopt,
          "create-table: p of the p-norm for --max_norm (default 2).");
ABSL_FLAG(bool, scale_grad_by_freq, false,
          "create-table: scale gradients by the inverse index frequency.");
ABSL_FLAG(std::string, initializer, "",
          "create-table: normal:MEAN,STD | uniform:LOW,HIGH | constant:V "
          "(default normal:0,1).");
ABSL_FLAG(uint64_t, seed, 0, "create-table: seed of the initializer.");
ABSL_FLAG(std::optional<int64_t>, capacity, std::nullopt,
          "create-table: a dynamic table (any int64 ids, instead of "
          "--num_embeddings) holding at most this many rows per server.");
ABSL_FLAG(std::optional<uint32_t>, admit_after, std::nullopt,
          "create-table --capacity: pushes of an id before it gets a row "
          "(default 1: the first push).");
ABSL_FLAG(std::string, eviction, "",
          "create-table --capacity: which row a full table evicts: lru "
          "(default) | lfu.");
ABSL_FLAG(std::optional<int64_t>, ttl_pushes, std::nullopt,
          "create-table --capacity: a row not pushed in this many pushes to "
          "the table expires (default: never).");
ABSL_FLAG(std::string, optimizer, "",
          "create-table, set-optimizer: the optimizer's name (default sgd); "
          "the usage text above lists them with their --PARAM flags.");
ABSL_FLAG(std::string, indices, "", "Comma-separated row ids.");
ABSL_FLAG(std::string, shape, "",
          "lookup: shape of the index tensor (default [len(indices)]).");
ABSL_FLAG(
    std::string, dtype,
    std::string(embedding::cli::DTypeName(embedding::kDefaultLookupDType)),
    "lookup, lookup-bag: wire type float32 | float16 | bfloat16.");
ABSL_FLAG(std::string, grad, "",
          "push, push-bag: comma-separated gradient, row-major.");
ABSL_FLAG(std::string, values, "",
          "write-rows: comma-separated row values, row-major.");
ABSL_FLAG(std::optional<int64_t>, start, std::nullopt,
          "read-rows, write-rows: first row of a range.");
ABSL_FLAG(std::optional<int64_t>, end, std::nullopt,
          "read-rows: end of the range (exclusive; default the table's end).");
ABSL_FLAG(std::string, offsets, "", "lookup-bag, push-bag: bag offsets.");
ABSL_FLAG(std::string, mode,
          std::string(embedding::cli::BagModeName(embedding::kDefaultBagMode)),
          "lookup-bag, push-bag: sum | mean | max.");
ABSL_FLAG(std::string, per_sample_weights, "",
          "lookup-bag, push-bag: one weight per index (sum mode).");
ABSL_FLAG(bool, include_last_offset, false,
          "lookup-bag, push-bag: the last offset ends the last bag.");
ABSL_FLAG(std::string, max_indices, "",
          "push-bag (max mode): the max_indices lookup-bag printed.");
ABSL_FLAG(std::string, client_id, "",
          "push, push-bag: exactly-once client id (default: a random one).");
ABSL_FLAG(std::optional<uint64_t>, sequence, std::nullopt,
          "push, push-bag: exactly-once sequence number (> 0). Default 1: "
          "each run is a new client, so with --client_id give it too.");

ABSL_FLAG(bool, incremental, false,
          "checkpoint: save only the rows changed since each table's last "
          "checkpoint (the server writes a full one when due).");

namespace {

// INVALID_ARGUMENT when --token_file cannot be read.
absl::StatusOr<embedding::ClientOptions> FlagsToClientOptions() {
  embedding::ClientOptions options;
  options.default_timeout = absl::GetFlag(FLAGS_timeout);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.max_retries = absl::GetFlag(FLAGS_max_retries);
  options.client_id = absl::GetFlag(FLAGS_client_id);
  absl::StatusOr<embedding::ClientSecurityOptions> security =
      embedding::ClientSecurityOptionsFromFlags();
  if (!security.ok()) return security.status();
  options.security = *std::move(security);
  return options;
}

embedding::cli::CommandFlags FlagsToCommandFlags(
    std::vector<embedding::cli::ParamFlag> params) {
  embedding::cli::CommandFlags flags;
  flags.num_embeddings = absl::GetFlag(FLAGS_num_embeddings);
  flags.embedding_dim = absl::GetFlag(FLAGS_embedding_dim);
  flags.padding_idx = absl::GetFlag(FLAGS_padding_idx);
  flags.max_norm = absl::GetFlag(FLAGS_max_norm);
  flags.norm_type = absl::GetFlag(FLAGS_norm_type);
  flags.scale_grad_by_freq = absl::GetFlag(FLAGS_scale_grad_by_freq);
  flags.initializer = absl::GetFlag(FLAGS_initializer);
  flags.seed = absl::GetFlag(FLAGS_seed);
  flags.capacity = absl::GetFlag(FLAGS_capacity);
  flags.admit_after = absl::GetFlag(FLAGS_admit_after);
  flags.eviction = absl::GetFlag(FLAGS_eviction);
  flags.ttl_pushes = absl::GetFlag(FLAGS_ttl_pushes);
  flags.optimizer = absl::GetFlag(FLAGS_optimizer);
  flags.params = std::move(params);
  flags.indices = absl::GetFlag(FLAGS_indices);
  flags.shape = absl::GetFlag(FLAGS_shape);
  flags.dtype = absl::GetFlag(FLAGS_dtype);
  flags.grad = absl::GetFlag(FLAGS_grad);
  flags.values = absl::GetFlag(FLAGS_values);
  flags.start = absl::GetFlag(FLAGS_start);
  flags.end = absl::GetFlag(FLAGS_end);
  flags.offsets = absl::GetFlag(FLAGS_offsets);
  flags.mode = absl::GetFlag(FLAGS_mode);
  flags.per_sample_weights = absl::GetFlag(FLAGS_per_sample_weights);
  flags.include_last_offset = absl::GetFlag(FLAGS_include_last_offset);
  flags.max_indices = absl::GetFlag(FLAGS_max_indices);
  flags.sequence = absl::GetFlag(FLAGS_sequence);
  flags.incremental = absl::GetFlag(FLAGS_incremental);
  return flags;
}

int PrintError(const absl::Status& status) {
  std::cerr << "error: " << absl::StatusCodeToString(status.code()) << ": "
            << status.message() << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::FlagsUsageConfig usage_config;
  // --help lists the flags defined in this file and the security ones.
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "cli_main.cc") ||
           embedding::DefinesClientSecurityFlags(file);
  };
  absl::SetFlagsUsageConfig(usage_config);
  const std::string usage = embedding::cli::Usage();
  absl::SetProgramUsageMessage(usage);
  embedding::cli::SplitArgs split =
      embedding::cli::ExtractOptimizerParams(argc, argv);
  std::vector<char*> positional = absl::ParseCommandLine(
      static_cast<int>(split.argv.size()), split.argv.data());
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  if (args.empty() || args[0] == "help") {
    (args.empty() ? std::cerr : std::cout) << "embedding_cli: " << usage;
    return args.empty() ? 2 : 0;
  }

  absl::StatusOr<std::vector<std::string>> addresses =
      embedding::cli::ParseAddresses(absl::GetFlag(FLAGS_server));
  if (!addresses.ok()) return PrintError(addresses.status());
  absl::StatusOr<embedding::ClientOptions> options = FlagsToClientOptions();
  if (!options.ok()) return PrintError(options.status());
  if (args[0] == "health") {
    if (args.size() > 1) {
      return PrintError(absl::InvalidArgumentError(
          absl::StrCat("health takes no operands, got ", args.size() - 1)));
    }
    const absl::Status health =
        embedding::cli::CheckHealth(*addresses, *options, std::cout);
    return health.ok() ? 0 : PrintError(health);
  }
  absl::StatusOr<std::unique_ptr<embedding::ShardedEmbeddingClient>> client =
      embedding::ShardedEmbeddingClient::Connect(*std::move(addresses),
                                                 *options);
  if (!client.ok()) return PrintError(client.status());
  absl::Status status = embedding::cli::RunCommand(
      **client, args, FlagsToCommandFlags(std::move(split.params)), std::cout);
  if (!status.ok()) return PrintError(status);
  return 0;
}
