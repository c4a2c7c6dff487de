// CheckpointManager on a real directory: round trips of every optimizer,
// incremental chains and their size, retention, layouts and names.
#include "server/checkpoint/checkpoint_manager.h"

#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/checkpoint/file_io.h"
#include "tests/checkpoint/checkpoint_testing.h"

namespace embedding {
namespace {

using ::embedding::internal::JoinPath;
using ::embedding::testing::Capture;
using ::embedding::testing::DirectoryBytes;
using ::embedding::testing::ExpectSameImage;
using ::embedding::testing::GetTable;
using ::embedding::testing::List;
using ::embedding::testing::MakeManager;
using ::embedding::testing::RestoreInto;
using ::embedding::testing::SaveOne;
using ::embedding::testing::TableImage;
using ::embedding::testing::TempDir;
using ::embedding::testing::TestSpec;
using ::embedding::testing::Train;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A checkpoint directory, a registry and a manager of them.
class ManagerTest : public ::testing::Test {
 protected:
  // Table `name` of `kind` in the registry.
  std::shared_ptr<EmbeddingTable> NewTable(OptimizerKind kind,
                                           int64_t rows = 50, int64_t dim = 6,
                                           const std::string& name = "t") {
    EXPECT_TRUE(registry_.Create(TestSpec(name, kind, rows, dim), {}).ok());
    return GetTable(registry_, name);
  }

  // The manager, created with these options on first use.
  CheckpointManager& Manager(int keep = 2, int full_every = 8) {
    if (manager_ == nullptr) {
      manager_ = MakeManager(dir_.path(), registry_, keep, full_every);
    }
    return *manager_;
  }

  SavedTable Save(SaveKind kind) { return SaveOne(Manager(), "t", kind); }

  // Table "t" restored from the directory equals `expected`.
  void ExpectRestores(const TableImage& expected) {
    testing::Restored restored = RestoreInto(dir_.path());
    ExpectSameImage(Capture(*GetTable(*restored.registry, "t")), expected);
  }

  std::string TableDirectory() const { return JoinPath(dir_.path(), "t"); }

  TempDir dir_;
  TableRegistry registry_{{}};
  std::unique_ptr<CheckpointManager> manager_;
};

class RoundTripTest : public ManagerTest,
                      public ::testing::WithParamInterface<OptimizerKind> {};

TEST_P(RoundTripTest, RestoredTableIsBitIdenticalAndTrainsOnTheSame) {
  std::shared_ptr<EmbeddingTable> table = NewTable(GetParam());
  OptimizerSpec optimizer = DefaultOptimizerSpec(GetParam());
  optimizer.lr *= 3;  // A SetOptimizer change the checkpoint must keep.
  ASSERT_TRUE(table->SetOptimizer(optimizer).ok());
  for (uint64_t sequence = 1; sequence <= 5; ++sequence) {
    Train(*table, {0, 1, 2, static_cast<int64_t>(sequence * 7), 2}, sequence);
  }
  const SavedTable saved = Save(SaveKind::kFull);
  const TableImage before = Capture(*table);
  EXPECT_EQ(saved.rows, 50);
  EXPECT_EQ(saved.checkpoint.version, 5);
  EXPECT_FALSE(saved.checkpoint.incremental);
  EXPECT_EQ(saved.checkpoint.path, JoinPath(TableDirectory(), "00000001.full"));
  EXPECT_EQ(saved.bytes_written, DirectoryBytes(saved.checkpoint.path));

  testing::Restored restored = RestoreInto(dir_.path());
  ASSERT_EQ(restored.tables.size(), 1);
  const RestoredTable& result = restored.tables[0];
  EXPECT_EQ(result.table, "t");
  EXPECT_TRUE(result.restored);
  EXPECT_THAT(result.skipped, ElementsAre());
  EXPECT_EQ(result.checkpoint.version, 5);
  EXPECT_EQ(result.checkpoint.path, saved.checkpoint.path);
  EXPECT_EQ(result.checkpoint.time, saved.checkpoint.time);
  EXPECT_EQ(result.bytes_read, saved.bytes_written);
  std::shared_ptr<EmbeddingTable> copy = GetTable(*restored.registry, "t");
  ExpectSameImage(Capture(*copy), before);

  // The next push (step-dependent for Adagrad's lr_decay and SparseAdam's
  // bias correction) gives exactly what it gives without the restart.
  Train(*table, {3, 4, 0}, 6);
  Train(*copy, {3, 4, 0}, 6);
  ExpectSameImage(Capture(*copy), Capture(*table));
  // A push retried from before the restart is recognised.
  absl::StatusOr<PushResult> retried =
      copy->PushGradients({3}, std::vector<float>(6, 1.0f),
                          {.client_id = "trainer", .sequence = 4});
  ASSERT_TRUE(retried.ok());
  EXPECT_TRUE(retried->duplicate);
}

INSTANTIATE_TEST_SUITE_P(
    EveryOptimizer, RoundTripTest,
    ::testing::Values(OptimizerKind::kSgd, OptimizerKind::kAdagrad,
                      OptimizerKind::kSparseAdam,
                      OptimizerKind::kRowwiseAdagrad, OptimizerKind::kFtrl),
    [](const ::testing::TestParamInfo<OptimizerKind>& info) {
      return std::string(InfoOf(info.param).name);
    });

TEST_F(ManagerTest, BasePlusDeltasRestoresTheLiveTable) {
  std::shared_ptr<EmbeddingTable> table = NewTable(OptimizerKind::kAdagrad);
  EXPECT_FALSE(Manager().LastCheckpoint("t").has_value());
  // The first incremental save is a full one: there is nothing to extend.
  EXPECT_FALSE(Save(SaveKind::kIncremental).checkpoint.incremental);
  for (uint64_t round = 1; round <= 3; ++round) {
    // Row 1 is the padding row; rows 2..4 change once each.
    Train(*table, {static_cast<int64_t>(round) + 1, 10, 20}, round);
    const SavedTable saved = Save(SaveKind::kIncremental);
    EXPECT_TRUE(saved.checkpoint.incremental);
    EXPECT_EQ(saved.rows, 3);
    EXPECT_EQ(Manager().LastCheckpoint("t")->path, saved.checkpoint.path);
  }
  EXPECT_THAT(List(TableDirectory()),
              ElementsAre("00000001.full", "00000002.delta", "00000003.delta",
                          "00000004.delta"));
  testing::Restored restored = RestoreInto(dir_.path());
  ASSERT_TRUE(restored.tables[0].restored);
  EXPECT_TRUE(restored.tables[0].checkpoint.incremental);
  ExpectSameImage(Capture(*GetTable(*restored.registry, "t")), Capture(*table));
}

TEST_F(ManagerTest, ADeltaAfterAOnePercentPushIsAboutOnePercent) {
  constexpr int64_t kRows = 20000;
  std::shared_ptr<EmbeddingTable> table =
      NewTable(OptimizerKind::kAdagrad, kRows, 32);
  const SavedTable full = Save(SaveKind::kFull);
  std::vector<int64_t> rows(kRows);
  std::iota(rows.begin(), rows.end(), 0);
  std::shuffle(rows.begin(), rows.end(), std::mt19937(1));
  rows.resize(kRows / 100);
  Train(*table, rows, 1);
  const SavedTable delta = Save(SaveKind::kIncremental);
  EXPECT_EQ(delta.rows, kRows / 100);
  const double ratio =
      static_cast<double>(delta.bytes_written) / full.bytes_written;
  EXPECT_GT(ratio, 0.009);
  EXPECT_LT(ratio, 0.012) << delta.bytes_written << " of "
                          << full.bytes_written;
}

TEST_F(ManagerTest, ACancelledDeltaLosesNothingForTheNext) {
  std::shared_ptr<EmbeddingTable> table = NewTable(OptimizerKind::kSgd);
  Save(SaveKind::kFull);
  Train(*table, {3}, 1);
  const std::atomic<bool> cancelled{true};
  const std::vector<std::string> tables = {"t"};
  const absl::Status status =
      Manager().Save(tables, SaveKind::kIncremental, &cancelled).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(status.message(), HasSubstr("saving table \"t\": save to "));
  EXPECT_THAT(List(TableDirectory()), ElementsAre("00000001.full"));
  Train(*table, {4}, 2);
  EXPECT_EQ(Save(SaveKind::kIncremental).rows, 2);
  ExpectRestores(Capture(*table));
}

TEST_F(ManagerTest, AfterFullEveryDeltasTheNextSaveIsFull) {
  NewTable(OptimizerKind::kSgd);
  Manager(/*keep=*/5, /*full_every=*/2);
  std::vector<bool> incremental;
  for (int i = 0; i < 5; ++i) {
    incremental.push_back(Save(SaveKind::kIncremental).checkpoint.incremental);
  }
  EXPECT_THAT(incremental, ElementsAre(false, true, true, false, true));
}

TEST_F(ManagerTest, RetentionKeepsTheNewestFullsAndTheirDeltas) {
  NewTable(OptimizerKind::kSgd);
  Manager(/*keep=*/2, /*full_every=*/1);
  for (int i = 0; i < 5; ++i) Save(SaveKind::kIncremental);
  EXPECT_THAT(List(TableDirectory()),
              ElementsAre("00000003.full", "00000004.delta", "00000005.full"));
}

TEST_F(ManagerTest, ATableCreatedAgainStartsAFullChain) {
  NewTable(OptimizerKind::kSgd);
  Save(SaveKind::kFull);
  ASSERT_TRUE(registry_.Delete("t").ok());
  EXPECT_FALSE(Manager().LastCheckpoint("t").has_value());
  std::shared_ptr<EmbeddingTable> table =
      NewTable(OptimizerKind::kAdagrad, 30, 4);
  EXPECT_FALSE(Manager().LastCheckpoint("t").has_value());
  const SavedTable saved = Save(SaveKind::kIncremental);
  EXPECT_FALSE(saved.checkpoint.incremental);
  EXPECT_EQ(saved.checkpoint.path, JoinPath(TableDirectory(), "00000002.full"));
  ExpectRestores(Capture(*table));
}

TEST_F(ManagerTest, SavingEveryTableSavesThemInNameOrder) {
  for (const char* name : {"b", "a", ".", ".."}) {
    NewTable(OptimizerKind::kSgd, 50, 6, name);
  }
  absl::StatusOr<std::vector<SavedTable>> saved =
      Manager().Save({}, SaveKind::kFull);
  ASSERT_TRUE(saved.ok()) << saved.status();
  std::vector<std::string> names;
  for (const SavedTable& table : *saved) names.push_back(table.table);
  EXPECT_THAT(names, ElementsAre(".", "..", "a", "b"));
  // "." and ".." are escaped, so they stay inside the directory.
  EXPECT_THAT(List(dir_.path()), ElementsAre("%2E", "%2E.", "a", "b"));
  testing::Restored restored = RestoreInto(dir_.path());
  ASSERT_EQ(restored.tables.size(), 4);
  for (const RestoredTable& table : restored.tables) {
    EXPECT_TRUE(table.restored) << table.table;
    ExpectSameImage(Capture(*GetTable(*restored.registry, table.table)),
                    Capture(*GetTable(registry_, table.table)));
  }
}

TEST_F(ManagerTest, SavingAnUnknownTableIsNotFound) {
  const std::vector<std::string> tables = {"nope"};
  const absl::Status status = Manager().Save(tables, SaveKind::kFull).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(),
            "saving table \"nope\": table \"nope\" not found");
}

void ExpectRefused(const CheckpointOptions& options, absl::StatusCode code,
                   const std::string& message) {
  TableRegistry registry({});
  const absl::Status status =
      CheckpointManager::Create(options, &registry).status();
  EXPECT_EQ(status.code(), code);
  EXPECT_EQ(status.message(), message);
}

TEST(CheckpointManagerTest, BadOptionsAreRefused) {
  TempDir dir;
  const std::string file = JoinPath(dir.path(), "file");
  testing::WriteBytes(file, "x");
  ExpectRefused({.directory = ""}, absl::StatusCode::kInvalidArgument,
                "checkpoint directory is empty");
  ExpectRefused({.directory = dir.path(), .keep = 0},
                absl::StatusCode::kInvalidArgument,
                "checkpoint keep must be >= 1, got 0");
  ExpectRefused({.directory = dir.path(), .full_every = -1},
                absl::StatusCode::kInvalidArgument,
                "checkpoint full_every must be >= 0, got -1");
  ExpectRefused({.directory = file}, absl::StatusCode::kFailedPrecondition,
                absl::StrCat("checkpoint directory ", file,
                             " does not exist or is not a directory"));
}

TEST(CheckpointManagerTest, ShardsSaveGlobalRowsAndRestoreOnlyOnTheirLayout) {
  TempDir dir;
  TableRegistry registry({.shard_index = 1, .shard_count = 3});
  ASSERT_TRUE(
      registry.Create(TestSpec("t", OptimizerKind::kRowwiseAdagrad, 10), {})
          .ok());
  Train(*GetTable(registry, "t"), {4, 7}, 1);
  const SavedTable saved =
      SaveOne(*MakeManager(dir.path(), registry), "t", SaveKind::kFull);
  EXPECT_EQ(saved.rows, 3);  // Rows 1, 4 and 7.
  const std::string rows =
      testing::ReadBytes(JoinPath(saved.checkpoint.path, "rows.npy"));
  ASSERT_EQ(rows.size(), 128 + 3 * 8);
  EXPECT_EQ(rows[128 + 8], 4);

  testing::Restored same = RestoreInto(dir.path(), 1, 3);
  ExpectSameImage(Capture(*GetTable(*same.registry, "t")),
                  Capture(*GetTable(registry, "t")));
  testing::Restored other = RestoreInto(dir.path(), 0, 2);
  ASSERT_EQ(other.tables.size(), 1);
  EXPECT_FALSE(other.tables[0].restored);
  EXPECT_THAT(other.tables[0].skipped,
              ElementsAre(absl::StrCat(
                  saved.checkpoint.path,
                  ": saved by shard 1 of 3; this server is shard 0 of 2 "
                  "(restoring onto another layout is not supported)")));
  EXPECT_FALSE(other.registry->Get("t").ok());
}

TEST_F(ManagerTest, LeftoversOfACrashAreIgnoredAndRemoved) {
  NewTable(OptimizerKind::kSgd);
  Save(SaveKind::kFull);
  // A save interrupted by a crash, and a deletion interrupted likewise.
  for (const char* leftover : {".tmp-00000002.full", ".tmp-deleted-x"}) {
    ASSERT_EQ(mkdir(JoinPath(TableDirectory(), leftover).c_str(), 0755), 0);
    testing::WriteBytes(
        JoinPath(TableDirectory(), absl::StrCat(leftover, "/x")), "junk");
  }
  ASSERT_EQ(mkdir(JoinPath(dir_.path(), ".not-a-table").c_str(), 0755), 0);
  testing::Restored restored = RestoreInto(dir_.path());
  ASSERT_EQ(restored.tables.size(), 1);
  EXPECT_TRUE(restored.tables[0].restored);
  EXPECT_THAT(restored.tables[0].skipped, ElementsAre());
  EXPECT_THAT(List(TableDirectory()), ElementsAre("00000001.full"));
}

TEST_F(ManagerTest, SavesGoOnWhilePushesDo) {
  std::shared_ptr<EmbeddingTable> table =
      NewTable(OptimizerKind::kAdagrad, 2000, 16);
  std::atomic<bool> stop{false};
  std::thread pusher([&] {
    for (uint64_t sequence = 1; !stop.load(); ++sequence) {
      Train(*table, {static_cast<int64_t>(sequence % 2000), 5}, sequence);
    }
  });
  std::vector<SavedTable> saves;
  for (int i = 0; i < 4; ++i) saves.push_back(Save(SaveKind::kIncremental));
  stop = true;
  pusher.join();
  testing::Restored restored = RestoreInto(dir_.path());
  EXPECT_EQ(GetTable(*restored.registry, "t")->Stats().version,
            saves.back().checkpoint.version);
}

// The promise to users: weights.npy of an unsharded full checkpoint is the
// table, for numpy.load(mmap_mode="r"). Runs $EMBEDDING_PYTHON (set by
// ctest) or python3; skipped when it has no numpy.
TEST_F(ManagerTest, NumpyLoadsTheWeightsOfAFullCheckpoint) {
  const char* python = std::getenv("EMBEDDING_PYTHON");
  if (python == nullptr) python = "python3";
  if (std::system(
          absl::StrCat(python, " -c 'import numpy' 2>/dev/null").c_str()) !=
      0) {
    GTEST_SKIP() << python << " has no numpy";
  }
  std::shared_ptr<EmbeddingTable> table = NewTable(OptimizerKind::kSparseAdam);
  Train(*table, {2, 3}, 1);
  const SavedTable saved = Save(SaveKind::kFull);
  const std::string out = JoinPath(dir_.path(), "numpy.bin");
  const std::string script = absl::StrCat(
      python,
      " -c \"import numpy, sys; d = sys.argv[1]; "
      "w = numpy.load(d + '/weights.npy', mmap_mode='r'); "
      "s = numpy.load(d + '/state.npy', mmap_mode='r'); "
      "r = numpy.load(d + '/rows.npy'); "
      "assert w.dtype == numpy.float32 and w.shape == (50, 6), w.shape; "
      "assert s.shape == (50, 12) and (r == numpy.arange(50)).all(); "
      "open(sys.argv[2], 'wb').write(w.tobytes() + s.tobytes())\" ",
      saved.checkpoint.path, " ", out);
  ASSERT_EQ(std::system(script.c_str()), 0) << script;
  const TableImage image = Capture(*table);
  const std::string bytes = testing::ReadBytes(out);
  const size_t weight_bytes = image.weights.size() * sizeof(float);
  ASSERT_EQ(bytes.size(), weight_bytes + image.state.size() * sizeof(float));
  EXPECT_EQ(bytes.substr(0, weight_bytes),
            std::string(reinterpret_cast<const char*>(image.weights.data()),
                        weight_bytes));
  EXPECT_EQ(bytes.substr(weight_bytes),
            std::string(reinterpret_cast<const char*>(image.state.data()),
                        image.state.size() * sizeof(float)));
}

}  // namespace
}  // namespace embedding
