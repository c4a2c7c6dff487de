#include "tests/checkpoint/checkpoint_testing.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "gtest/gtest.h"
#include "server/checkpoint/file_io.h"

namespace embedding::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern =
      std::string(base != nullptr ? base : "/tmp") + "/checkpoint_test.XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) std::abort();
  path_ = pattern;
}

TempDir::~TempDir() { internal::RemoveTree(path_).IgnoreError(); }

TableSpec TestSpec(const std::string& name, OptimizerKind kind, int64_t rows,
                   int64_t dim) {
  TableSpec spec;
  spec.name = name;
  spec.num_embeddings = rows;
  spec.embedding_dim = dim;
  spec.padding_idx = 1;
  spec.max_norm = 2.0f;
  spec.seed = 7;
  spec.optimizer = DefaultOptimizerSpec(kind);
  return spec;
}

void Train(EmbeddingTable& table, const std::vector<int64_t>& rows,
           uint64_t sequence, uint32_t seed) {
  std::mt19937 random(static_cast<uint32_t>(sequence) * 7919 + seed);
  std::uniform_real_distribution<float> value(-30.0f, 30.0f);
  std::vector<float> grad(rows.size() * table.dim());
  for (float& g : grad) g = value(random);
  absl::StatusOr<PushResult> pushed = table.PushGradients(
      rows, grad, {.client_id = "trainer", .sequence = sequence});
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  std::vector<float> out(rows.size() * table.dim());
  ASSERT_TRUE(table.Lookup(rows, DType::kFloat32, out.data()).ok());
}

std::shared_ptr<EmbeddingTable> GetTable(const TableRegistry& registry,
                                         const std::string& name) {
  absl::StatusOr<std::shared_ptr<EmbeddingTable>> table = registry.Get(name);
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *table : nullptr;
}

std::unique_ptr<CheckpointManager> MakeManager(const std::string& directory,
                                               TableRegistry& registry,
                                               int keep, int full_every) {
  absl::StatusOr<std::unique_ptr<CheckpointManager>> manager =
      CheckpointManager::Create(
          {.directory = directory, .keep = keep, .full_every = full_every},
          &registry);
  EXPECT_TRUE(manager.ok()) << manager.status();
  return manager.ok() ? *std::move(manager) : nullptr;
}

SavedTable SaveOne(CheckpointManager& manager, const std::string& table,
                   SaveKind kind) {
  const std::vector<std::string> tables = {table};
  absl::StatusOr<std::vector<SavedTable>> saved = manager.Save(tables, kind);
  EXPECT_TRUE(saved.ok()) << saved.status();
  if (!saved.ok() || saved->size() != 1) return {};
  return saved->front();
}

Restored RestoreInto(const std::string& directory, int32_t shard_index,
                     int32_t shard_count) {
  Restored restored;
  restored.registry = std::make_unique<TableRegistry>(
      RegistryOptions{.shard_index = shard_index, .shard_count = shard_count});
  std::unique_ptr<CheckpointManager> manager =
      MakeManager(directory, *restored.registry);
  absl::StatusOr<std::vector<RestoredTable>> tables = manager->RestoreAll();
  EXPECT_TRUE(tables.ok()) << tables.status();
  if (tables.ok()) restored.tables = *std::move(tables);
  return restored;
}

std::vector<std::string> List(const std::string& directory) {
  absl::StatusOr<std::vector<std::string>> names =
      internal::ListDirectory(directory);
  EXPECT_TRUE(names.ok()) << names.status();
  if (!names.ok()) return {};
  std::sort(names->begin(), names->end());
  return *names;
}

int64_t DirectoryBytes(const std::string& directory) {
  int64_t bytes = 0;
  for (const std::string& name : List(directory)) {
    struct stat info;
    if (stat(internal::JoinPath(directory, name).c_str(), &info) == 0) {
      bytes += info.st_size;
    }
  }
  return bytes;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

}  // namespace embedding::testing
