// The subcommands of embedding_cli, run against an EmbeddingClient.
//
//   CommandFlags flags;  // filled from absl flags in main
//   flags.indices = "1,2,3";
//   absl::Status status = RunCommand(*client, {"lookup", "users"}, flags,
//                                    std::cout);
//
// Thread-compatible (writes to the given stream).
#ifndef CLIENT_CPP_CLI_COMMANDS_H_
#define CLIENT_CPP_CLI_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "client/cpp/cli_text.h"
#include "client/cpp/embedding_client.h"

namespace embedding::cli {

// The text of `embedding_cli --help`.
extern const char kUsage[];

// Every value the command-line flags can carry. Lists are the raw comma text.
struct CommandFlags {
  // create-table
  std::optional<int64_t> num_embeddings;
  std::optional<int64_t> embedding_dim;
  std::optional<int64_t> padding_idx;
  std::optional<float> max_norm;
  std::optional<float> norm_type;
  bool scale_grad_by_freq = false;
  std::string initializer;  // Empty: the server's default, normal(0, 1).
  uint64_t seed = 0;
  // create-table and set-optimizer; `optimizer.lr` is also the per-push
  // learning-rate override of push and push-bag.
  OptimizerFlags optimizer;
  // Row data.
  std::string indices;
  std::string shape;
  std::string dtype = "float32";
  std::string grad;
  std::string values;
  std::optional<int64_t> start;
  std::optional<int64_t> end;
  // Bags.
  std::string offsets;
  std::string mode = "sum";
  std::string per_sample_weights;
  bool include_last_offset = false;
  std::string max_indices;
  // Exactly-once pushes.
  std::string client_id;
  uint64_t sequence = 0;
};

// Runs `args` = {command, operands...}, printing its result to `out`.
// Returns the server's error unchanged, or INVALID_ARGUMENT for an unknown
// command, a missing table name or a malformed flag.
absl::Status RunCommand(const EmbeddingClient& client,
                        absl::Span<const std::string> args,
                        const CommandFlags& flags, std::ostream& out);

}  // namespace embedding::cli

#endif  // CLIENT_CPP_CLI_COMMANDS_H_
