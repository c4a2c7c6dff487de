// Damaged checkpoints: flipped bytes, truncation, wrong magic, a future
// format version, a missing file. Each is refused with a message naming the
// file, and the restore falls back to the newest good point: for a bad
// delta the chain before it, for a bad full checkpoint the previous one
// with its deltas.
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/checkpoint/checkpoint_format.h"
#include "server/checkpoint/file_io.h"
#include "tests/checkpoint/checkpoint_testing.h"

namespace embedding {
namespace {

using ::embedding::internal::JoinPath;
using ::embedding::testing::Capture;
using ::embedding::testing::ExpectSameImage;
using ::embedding::testing::GetTable;
using ::embedding::testing::ReadBytes;
using ::embedding::testing::RestoreInto;
using ::embedding::testing::SaveOne;
using ::embedding::testing::TableImage;
using ::embedding::testing::TempDir;
using ::embedding::testing::WriteBytes;
using ::testing::HasSubstr;

const char* const kFiles[] = {"checkpoint.meta", "rows.npy", "weights.npy",
                              "state.npy"};

// Checkpoints 1 (full), 2 (delta), 3 (full), 4 (delta) of table "t", each
// with the table it holds.
class CorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TableRegistry registry({});
    ASSERT_TRUE(registry
                    .Create(testing::TestSpec("t", OptimizerKind::kAdagrad,
                                              /*rows=*/3000, /*dim=*/8),
                            {})
                    .ok());
    std::shared_ptr<EmbeddingTable> table = GetTable(registry, "t");
    std::unique_ptr<CheckpointManager> manager =
        testing::MakeManager(dir_.path(), registry, /*keep=*/5);
    const SaveKind kinds[] = {SaveKind::kFull, SaveKind::kIncremental,
                              SaveKind::kFull, SaveKind::kIncremental};
    for (uint64_t i = 0; i < 4; ++i) {
      testing::Train(*table, {static_cast<int64_t>(i), 100, 2000}, i + 1);
      paths_.push_back(SaveOne(*manager, "t", kinds[i]).checkpoint.path);
      images_.push_back(Capture(*table));
    }
    ASSERT_EQ(paths_[3], JoinPath(dir_.path(), "t/00000004.delta"));
  }

  // Restores and expects the table of checkpoint `expected` and one
  // refusal, naming `file`, that contains `problem`.
  void ExpectFallbackTo(int expected, const std::string& file,
                        const std::string& problem) {
    testing::Restored restored = RestoreInto(dir_.path());
    ASSERT_EQ(restored.tables.size(), 1);
    const RestoredTable& result = restored.tables[0];
    ASSERT_TRUE(result.restored);
    EXPECT_EQ(result.checkpoint.path, paths_[expected]);
    ASSERT_EQ(result.skipped.size(), 1);
    EXPECT_THAT(result.skipped[0], HasSubstr(file));
    EXPECT_THAT(result.skipped[0], HasSubstr(problem));
    ExpectSameImage(Capture(*GetTable(*restored.registry, "t")),
                    images_[expected]);
  }

  // Damages each file of the newest delta and the newest full checkpoint
  // `trials` times, by `damage` of its bytes, and expects the fallback each
  // time, with `data_problem` in the message for a data file.
  void DamageEachFile(int trials, const std::string& data_problem,
                      const std::function<std::string(const std::string&,
                                                      std::mt19937&)>& damage) {
    std::mt19937 random(42);
    for (int index : {3, 2}) {
      for (const char* name : kFiles) {
        const std::string file = JoinPath(paths_[index], name);
        const std::string good = ReadBytes(file);
        for (int trial = 0; trial < trials; ++trial) {
          SCOPED_TRACE(absl::StrCat(file, " trial ", trial));
          WriteBytes(file, damage(good, random));
          ExpectFallbackTo(index == 3 ? 2 : 1, file,
                           name == kFiles[0] ? "" : data_problem);
        }
        WriteBytes(file, good);
      }
    }
  }

  TempDir dir_;
  std::vector<std::string> paths_;
  std::vector<TableImage> images_;
};

TEST_F(CorruptionTest, UndamagedRestoresTheNewest) {
  testing::Restored restored = RestoreInto(dir_.path());
  EXPECT_TRUE(restored.tables[0].skipped.empty());
  ExpectSameImage(Capture(*GetTable(*restored.registry, "t")), images_[3]);
}

TEST_F(CorruptionTest, AFlippedByteAnywhereIsRefused) {
  // Metadata damage may show as any of its checks; data damage as a block's
  // checksum.
  DamageEachFile(/*trials=*/4, "fails its checksum",
                 [](std::string bytes, std::mt19937& random) {
                   bytes[random() % bytes.size()] ^=
                       static_cast<char>(1 + random() % 255);
                   return bytes;
                 });
}

TEST_F(CorruptionTest, ATruncatedFileIsRefused) {
  DamageEachFile(/*trials=*/3, "",
                 [](const std::string& bytes, std::mt19937& random) {
                   return bytes.substr(0, random() % bytes.size());
                 });
}

TEST_F(CorruptionTest, WrongMagicIsRefused) {
  const std::string file = JoinPath(paths_[2], "checkpoint.meta");
  std::string bytes = ReadBytes(file);
  bytes.replace(0, 8, "NOTACKPT");
  WriteBytes(file, bytes);
  ExpectFallbackTo(1, file,
                   "wrong magic \"NOTACKPT\", expected \"EMBDCKPT\": not a "
                   "checkpoint");
}

TEST_F(CorruptionTest, AFutureFormatVersionIsRefused) {
  const std::string file = JoinPath(paths_[3], "checkpoint.meta");
  std::string bytes = ReadBytes(file);
  bytes[8] = 3;
  WriteBytes(file, bytes);
  ExpectFallbackTo(2, file,
                   "format version 3; this server reads versions 1 and 2 "
                   "(written by a newer one)");
}

TEST_F(CorruptionTest, AMissingFileIsRefused) {
  const std::string file = JoinPath(paths_[2], "weights.npy");
  ASSERT_EQ(unlink(file.c_str()), 0);
  ExpectFallbackTo(1, file, "missing: No such file or directory");
}

TEST_F(CorruptionTest, AMissingMetadataFileIsRefused) {
  const std::string file = JoinPath(paths_[3], "checkpoint.meta");
  ASSERT_EQ(unlink(file.c_str()), 0);
  ExpectFallbackTo(2, file, "No such file or directory (ENOENT)");
}

TEST_F(CorruptionTest, AFifoInPlaceOfAFileIsRefusedNotWaitedOn) {
  const std::string file = JoinPath(paths_[3], "checkpoint.meta");
  ASSERT_EQ(unlink(file.c_str()), 0);
  ASSERT_EQ(mkfifo(file.c_str(), 0644), 0);
  ExpectFallbackTo(2, file, "not a regular file");
}

TEST_F(CorruptionTest, ACheckpointOfAnotherTableIsRefused) {
  // A foreign checkpoint copied in under the newest name.
  TempDir other;
  TableRegistry registry({});
  ASSERT_TRUE(
      registry
          .Create(testing::TestSpec("u", OptimizerKind::kAdagrad, 3000, 8), {})
          .ok());
  const std::string foreign =
      SaveOne(*testing::MakeManager(other.path(), registry), "u",
              SaveKind::kFull)
          .checkpoint.path;
  const std::string target = JoinPath(dir_.path(), "t/00000005.full");
  ASSERT_TRUE(internal::Rename(foreign, target).ok());
  ExpectFallbackTo(3, JoinPath(target, "checkpoint.meta"),
                   "belongs to table \"u\", not \"t\"");
}

TEST_F(CorruptionTest, WhenNothingIsGoodTheTableIsNotCreated) {
  for (const std::string& path : {paths_[0], paths_[2]}) {
    WriteBytes(JoinPath(path, "state.npy"), "garbage");
  }
  testing::Restored restored = RestoreInto(dir_.path());
  ASSERT_EQ(restored.tables.size(), 1);
  EXPECT_FALSE(restored.tables[0].restored);
  EXPECT_EQ(restored.tables[0].skipped.size(), 2);
  EXPECT_FALSE(restored.registry->Get("t").ok());
}

// A delta on 3 would sit beside the bad delta 4 and never be reached by a
// restore: after a fallback, the next save is a full one.
TEST_F(CorruptionTest, AfterAFallbackTheNextSaveIsFull) {
  for (bool damaged : {false, true}) {
    SCOPED_TRACE(damaged ? "damaged" : "intact");
    if (damaged) WriteBytes(JoinPath(paths_[3], "rows.npy"), "garbage");
    TableRegistry registry({});
    std::unique_ptr<CheckpointManager> manager =
        testing::MakeManager(dir_.path(), registry, /*keep=*/5);
    ASSERT_TRUE(manager->RestoreAll().ok());
    EXPECT_EQ(manager->LastCheckpoint("t")->path, paths_[damaged ? 2 : 3]);
    const SavedTable saved = SaveOne(*manager, "t", SaveKind::kIncremental);
    EXPECT_EQ(saved.checkpoint.incremental, !damaged);
    ExpectSameImage(Capture(*GetTable(*RestoreInto(dir_.path()).registry, "t")),
                    images_[damaged ? 2 : 3]);
  }
}

}  // namespace
}  // namespace embedding
