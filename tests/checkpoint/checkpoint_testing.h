// Test helpers for checkpoints: a temporary directory, tables with history
// (pushes from clients, a SetOptimizer change, max_norm renorms), and the
// files of a table's checkpoints.
#ifndef TESTS_CHECKPOINT_CHECKPOINT_TESTING_H_
#define TESTS_CHECKPOINT_CHECKPOINT_TESTING_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/checkpoint/checkpoint_manager.h"
#include "server/core/table_registry.h"
#include "tests/core/table_testing.h"

namespace embedding::testing {

// A fresh directory, removed with everything in it when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A table of `kind` with padding row 1 and max_norm 2 (so that lookups
// renorm many rows: normal(0, 1) rows of 6 have a norm of about 2.4).
TableSpec TestSpec(const std::string& name, OptimizerKind kind,
                   int64_t rows = 50, int64_t dim = 6);

// Pushes to `rows` (a gradient derived from `seed`), as client "trainer"
// with `sequence`, then looks them up (renorming some).
void Train(EmbeddingTable& table, const std::vector<int64_t>& rows,
           uint64_t sequence, uint32_t seed = 0);

std::shared_ptr<EmbeddingTable> GetTable(const TableRegistry& registry,
                                         const std::string& name);

// A manager of `directory` for `registry`; fails the test on error.
std::unique_ptr<CheckpointManager> MakeManager(const std::string& directory,
                                               TableRegistry& registry,
                                               int keep = 2,
                                               int full_every = 8);

// Saves one table; fails the test on error.
SavedTable SaveOne(CheckpointManager& manager, const std::string& table,
                   SaveKind kind);

// Restores `directory` into a new registry (of the given shard) and
// returns the registry and the restore's result.
struct Restored {
  std::unique_ptr<TableRegistry> registry;
  std::vector<RestoredTable> tables;
};
Restored RestoreInto(const std::string& directory, int32_t shard_index = 0,
                     int32_t shard_count = 1);

// The names in a directory, sorted.
std::vector<std::string> List(const std::string& directory);

// Sum of the sizes of the files in a directory.
int64_t DirectoryBytes(const std::string& directory);

std::string ReadBytes(const std::string& path);
void WriteBytes(const std::string& path, const std::string& bytes);

}  // namespace embedding::testing

#endif  // TESTS_CHECKPOINT_CHECKPOINT_TESTING_H_
