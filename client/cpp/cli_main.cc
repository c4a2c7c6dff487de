// embedding_cli: command-line client of the Embedding Service. Flags become a
// CommandFlags struct here; everything else lives in cli_commands.cc.
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
#include "absl/time/time.h"
#include "client/cpp/cli_commands.h"
#include "client/cpp/embedding_client.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "Server address host:port.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30),
          "Deadline of each RPC, e.g. 500ms, 30s.");
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
ABSL_FLAG(std::string, optimizer, "",
          "create-table, set-optimizer: sgd | adagrad | sparse_adam | "
          "rowwise_adagrad (default sgd).");
ABSL_FLAG(std::optional<float>, lr, std::nullopt,
          "Optimizer learning rate; with push/push-bag, overrides the "
          "table's for that push.");
ABSL_FLAG(std::optional<float>, lr_decay, std::nullopt, "adagrad: lr_decay.");
ABSL_FLAG(std::optional<float>, initial_accumulator_value, std::nullopt,
          "adagrad: initial_accumulator_value.");
ABSL_FLAG(std::optional<float>, eps, std::nullopt,
          "adagrad, sparse_adam, rowwise_adagrad: eps.");
ABSL_FLAG(std::optional<float>, beta1, std::nullopt, "sparse_adam: beta1.");
ABSL_FLAG(std::optional<float>, beta2, std::nullopt, "sparse_adam: beta2.");
ABSL_FLAG(std::string, indices, "", "Comma-separated row ids.");
ABSL_FLAG(std::string, shape, "",
          "lookup: shape of the index tensor (default [len(indices)]).");
ABSL_FLAG(std::string, dtype, "float32",
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
ABSL_FLAG(std::string, mode, "sum", "lookup-bag, push-bag: sum | mean | max.");
ABSL_FLAG(std::string, per_sample_weights, "",
          "lookup-bag, push-bag: one weight per index (sum mode).");
ABSL_FLAG(bool, include_last_offset, false,
          "lookup-bag, push-bag: the last offset ends the last bag.");
ABSL_FLAG(std::string, max_indices, "",
          "push-bag (max mode): the max_indices lookup-bag printed.");
ABSL_FLAG(std::string, client_id, "",
          "push, push-bag: client id for exactly-once delivery.");
ABSL_FLAG(uint64_t, sequence, 0,
          "push, push-bag: sequence number (> 0) for exactly-once delivery.");

namespace {

embedding::cli::CommandFlags FlagsToCommandFlags() {
  embedding::cli::CommandFlags flags;
  flags.num_embeddings = absl::GetFlag(FLAGS_num_embeddings);
  flags.embedding_dim = absl::GetFlag(FLAGS_embedding_dim);
  flags.padding_idx = absl::GetFlag(FLAGS_padding_idx);
  flags.max_norm = absl::GetFlag(FLAGS_max_norm);
  flags.norm_type = absl::GetFlag(FLAGS_norm_type);
  flags.scale_grad_by_freq = absl::GetFlag(FLAGS_scale_grad_by_freq);
  flags.initializer = absl::GetFlag(FLAGS_initializer);
  flags.seed = absl::GetFlag(FLAGS_seed);
  flags.optimizer.kind = absl::GetFlag(FLAGS_optimizer);
  flags.optimizer.lr = absl::GetFlag(FLAGS_lr);
  flags.optimizer.lr_decay = absl::GetFlag(FLAGS_lr_decay);
  flags.optimizer.initial_accumulator_value =
      absl::GetFlag(FLAGS_initial_accumulator_value);
  flags.optimizer.eps = absl::GetFlag(FLAGS_eps);
  flags.optimizer.beta1 = absl::GetFlag(FLAGS_beta1);
  flags.optimizer.beta2 = absl::GetFlag(FLAGS_beta2);
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
  flags.client_id = absl::GetFlag(FLAGS_client_id);
  flags.sequence = absl::GetFlag(FLAGS_sequence);
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
  // --help lists the flags defined in this file.
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "cli_main.cc");
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(embedding::cli::kUsage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  if (args.empty() || args[0] == "help") {
    (args.empty() ? std::cerr : std::cout)
        << "embedding_cli: " << embedding::cli::kUsage;
    return args.empty() ? 2 : 0;
  }

  embedding::ClientOptions options;
  options.default_timeout = absl::GetFlag(FLAGS_timeout);
  absl::StatusOr<std::unique_ptr<embedding::EmbeddingClient>> client =
      embedding::EmbeddingClient::Connect(absl::GetFlag(FLAGS_server), options);
  if (!client.ok()) return PrintError(client.status());
  absl::Status status = embedding::cli::RunCommand(
      **client, args, FlagsToCommandFlags(), std::cout);
  if (!status.ok()) return PrintError(status);
  return 0;
}
