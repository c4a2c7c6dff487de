// embedding_reshard: checkpoints of M servers -> checkpoints of M' servers.
//
//   embedding_reshard --from=/ckpt/shard-0,/ckpt/shard-1 --to=/new --shards=3
//
// Prints one line per table resharded; on error, "error: CODE: message" on
// stderr and exit status 1, with nothing written.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/tools/reshard.h"

ABSL_FLAG(std::vector<std::string>, from, {},
          "Checkpoint directories of shards 0..M-1 of the cluster, in "
          "shard-index order, comma-separated (each a server's "
          "--checkpoint_dir, with its servers stopped).");
ABSL_FLAG(std::string, to, "",
          "Output root, new or empty: shard k of the new cluster is started "
          "with --checkpoint_dir=TO/shard-k --shard_index=k "
          "--shard_count=SHARDS.");
ABSL_FLAG(int, shards, 0, "M', the number of servers of the new cluster.");
ABSL_FLAG(std::vector<std::string>, tables, {},
          "Tables to reshard, comma-separated; empty: every table found.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Reshards checkpoints saved by M servers into checkpoints for M' "
      "servers, by global row, with optimizer state, step and version.\n"
      "  embedding_reshard --from=DIR0,DIR1,... --to=OUT --shards=M'");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "error: INVALID_ARGUMENT: unexpected argument %s\n",
                 positional[1]);
    return 1;
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<embedding::ReshardedTable>> done =
      embedding::Reshard({.from = absl::GetFlag(FLAGS_from),
                          .to = absl::GetFlag(FLAGS_to),
                          .shards = absl::GetFlag(FLAGS_shards),
                          .tables = absl::GetFlag(FLAGS_tables)});
  if (!done.ok()) {
    std::fprintf(stderr, "error: %s: %s\n",
                 absl::StatusCodeToString(done.status().code()).c_str(),
                 std::string(done.status().message()).c_str());
    return 1;
  }
  for (const embedding::ReshardedTable& table : *done) {
    std::printf("%s\n", absl::StrCat("table \"", table.table,
                                     "\": ", table.rows, " rows, step ",
                                     table.step, ", version ", table.version,
                                     ", ", table.bytes_read, " bytes read, ",
                                     table.bytes_written, " bytes written")
                            .c_str());
  }
  std::printf("%s\n", absl::StrCat(done->size(), " tables resharded from ",
                                   absl::GetFlag(FLAGS_from).size(), " to ",
                                   absl::GetFlag(FLAGS_shards), " shards into ",
                                   absl::GetFlag(FLAGS_to), " in ",
                                   absl::FormatDuration(absl::Now() - start))
                          .c_str());
  return 0;
}
