// Resharding: turns the checkpoints of tables saved by M servers (shards
// 0..M-1, global row g on shard g % M) into checkpoints for M' servers, row
// by global row with its optimizer state, step and version, offline.
//
//   absl::StatusOr<std::vector<ReshardedTable>> done = Reshard(
//       {.from = {"/ckpt/shard-0", "/ckpt/shard-1"}, .to = "/new",
//        .shards = 3});
//   // Then shard k starts with --checkpoint_dir=/new/shard-k
//   // --shard_index=k --shard_count=3.
//
// What is read: for each table, in each input directory, its newest full
// checkpoint and the deltas extending it, as a server's restore reads them
// (server/checkpoint's reader, every block verified); unlike a restore,
// nothing is skipped: a refused checkpoint stops the reshard, naming it.
// What is written: one full checkpoint (sequence 1) per table and output
// shard, by the server's checkpoint writer, under OUT.reshard-tmp, renamed
// to OUT when every shard is complete: OUT appears whole or not at all.
//
// A dynamic table's ids go to the shard SplitMix64(id) % M', each into a
// row of its stripe there, with its usage (last push, push count); every
// output shard gets the element-wise maximum of the input shards' admission
// sketches (an id counted on one shard may now be on another). An output shard
// whose ids overflow a stripe of the table's capacity fails the reshard
// (FAILED_PRECONDITION, naming the table and shard).
//
// What carries over: rows, optimizer state and hyper-parameters, the step
// (which the shards must agree on), the version (the largest of the
// shards': WriteRows reach only the shards holding their rows). The
// exactly-once windows carry over only when M' == M: they are per client
// and per shard, and a sharded client numbers its pushes per shard, so
// after a layout change no window means anything (clients reconnect to
// the new cluster with new client objects anyway).
//
// Memory: a table is resharded one output shard at a time; for each, every
// input shard is loaded in turn (TableLoader, one shard of the table) and
// its rows of that output shard copied out. Peak: one input shard plus one
// output shard of the largest table, each about what one server held;
// every input is read M' times.
//
// Thread-compatible (the directories must not change meanwhile).
#ifndef SERVER_TOOLS_RESHARD_H_
#define SERVER_TOOLS_RESHARD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace embedding {

struct ReshardOptions {
  // The checkpoint directories of shards 0..M-1, in shard-index order.
  std::vector<std::string> from;
  // The output root: it must not exist or be empty; its parent must exist.
  std::string to;
  // M', the new number of servers. REQUIRES: >= 1.
  int32_t shards = 0;
  // The tables to reshard; empty: every table found.
  std::vector<std::string> tables;
};

struct ReshardedTable {
  std::string table;
  int64_t rows = 0;  // Rows written (a dense table's num_embeddings).
  int64_t step = 0;
  int64_t version = 0;
  int64_t bytes_read = 0;
  int64_t bytes_written = 0;
};

// Writes OUT/shard-0 .. OUT/shard-(M'-1). Returns the tables resharded,
// sorted by name. Errors name the directory, table and problem:
// INVALID_ARGUMENT for bad options (a directory given twice); NOT_FOUND for
// a table asked for that no input has;
// FAILED_PRECONDITION for inputs that are not shards 0..M-1 of one table
// set (a shard missing, duplicated or out of order, a table missing in a
// shard, specs that differ, steps that disagree) or an output that is not
// empty; DATA_LOSS for a corrupt checkpoint; I/O errors as the writer's.
// A table with no complete checkpoint in any input (its first saves all
// cut short) is left out, as a restore leaves it out. On failure nothing
// is left at OUT.
absl::StatusOr<std::vector<ReshardedTable>> Reshard(
    const ReshardOptions& options);

}  // namespace embedding

#endif  // SERVER_TOOLS_RESHARD_H_
