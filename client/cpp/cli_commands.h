// The subcommands of embedding_cli, run against a ShardedEmbeddingClient
// (one server or a cluster) or an EmbeddingClient.
//
//   SplitArgs split = ExtractOptimizerParams(argc, argv);  // in main
//   CommandFlags flags;  // filled from absl flags and split.params in main
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
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/cpp/cli_text.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/sharded_client.h"

namespace embedding::cli {

// The text of `embedding_cli help` (and the top of --help): the commands,
// then every optimizer of the table with its hyper-parameter flags.
std::string Usage();

// Optimizer hyper-parameters are flags (--l1=0.5) but not absl flags: absl
// declares flags statically, one ABSL_FLAG each, while the optimizers and
// their parameters come from the table in common/optimizer_kinds.h. So main
// takes every --NAME=VALUE, --NAME VALUE (or single-dash) argument whose
// NAME is a hyper-parameter of some optimizer in the table out of argv
// before absl::ParseCommandLine sees it, and RunCommand checks them against
// the chosen optimizer. An optimizer or parameter added to the table needs
// no edit in the CLI. Arguments after "--" stay positional; a
// hyper-parameter inside a --flagfile is not seen (absl would reject it).
struct SplitArgs {
  // argv[0] and every argument that is not a hyper-parameter, in order.
  std::vector<char*> argv;
  // The hyper-parameters, in the order given.
  std::vector<ParamFlag> params;
};
SplitArgs ExtractOptimizerParams(int argc, char** argv);

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
  // create-table of a dynamic table: --capacity makes it one (instead of
  // --num_embeddings); the others need it.
  std::optional<int64_t> capacity;
  std::optional<uint32_t> admit_after;
  std::string eviction;  // Empty: the server's default, lru.
  std::optional<int64_t> ttl_pushes;
  // create-table and set-optimizer: the optimizer's name (create-table:
  // empty means the server's default, or sgd when `params` are given) and
  // its hyper-parameters. push and push-bag take only "lr", the per-push
  // learning rate.
  std::string optimizer;
  std::vector<ParamFlag> params;
  // Row data.
  std::string indices;
  std::string shape;
  std::string dtype = std::string(DTypeName(kDefaultLookupDType));
  std::string grad;
  std::string values;
  std::optional<int64_t> start;
  std::optional<int64_t> end;
  // Bags.
  std::string offsets;
  std::string mode = std::string(BagModeName(kDefaultBagMode));
  std::string per_sample_weights;
  bool include_last_offset = false;
  std::string max_indices;
  // Exactly-once pushes: default the client's next sequence.
  std::optional<uint64_t> sequence;
  // checkpoint: only the rows changed since each table's last checkpoint.
  bool incremental = false;
};

// Runs `args` = {command, operands...}, printing its result to `out`,
// against one server or a cluster (the CLI uses the latter).
// Returns the server's error unchanged, or INVALID_ARGUMENT for an unknown
// command, a missing table name, a malformed flag or a hyper-parameter the
// command or the optimizer does not take; export and import also return
// the errors of ExportNpy and ImportNpy (client/cpp/npy_transfer.h).
absl::Status RunCommand(const EmbeddingClient& client,
                        absl::Span<const std::string> args,
                        const CommandFlags& flags, std::ostream& out);
absl::Status RunCommand(const ShardedEmbeddingClient& client,
                        absl::Span<const std::string> args,
                        const CommandFlags& flags, std::ostream& out);

// The `health` command: asks grpc.health.v1.Health/Check of every address
// (the whole server, service ""), printing "ADDRESS: STATUS" per server.
// OK only when every one is SERVING; otherwise UNAVAILABLE naming those
// that are not (or cannot be reached). Each check gets options'
// default_timeout, security (TLS, token), credentials and metadata.
absl::Status CheckHealth(absl::Span<const std::string> addresses,
                         const ClientOptions& options, std::ostream& out);

// The server addresses of --server: host:port entries separated by commas,
// in shard-index order. INVALID_ARGUMENT for an empty entry.
absl::StatusOr<std::vector<std::string>> ParseAddresses(absl::string_view text);

}  // namespace embedding::cli

#endif  // CLIENT_CPP_CLI_COMMANDS_H_
