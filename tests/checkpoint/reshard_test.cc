// Reshard (server/tools/reshard.h) on real checkpoint directories: tables of
// every optimizer saved by 2 and 3 engine shards (full + deltas), resharded
// 2 -> 3 -> 2 and 3 -> 1 -> 3, read back with the server's restore and
// compared by global row with the tables before; the next pushes agree; bad
// inputs are refused with their code and a message naming the problem.
#include "server/tools/reshard.h"

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/shard_layout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/checkpoint/file_io.h"
#include "tests/checkpoint/checkpoint_testing.h"

namespace embedding {
namespace {

using ::embedding::internal::JoinPath;
using ::embedding::testing::Capture;
using ::embedding::testing::GetTable;
using ::embedding::testing::List;
using ::embedding::testing::MakeManager;
using ::embedding::testing::ReadBytes;
using ::embedding::testing::RestoreInto;
using ::embedding::testing::SameOptimizer;
using ::embedding::testing::TableImage;
using ::embedding::testing::TempDir;
using ::embedding::testing::TestSpec;
using ::embedding::testing::WriteBytes;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kRows = 41;  // Not a multiple of 2 or 3: shards differ.
constexpr int64_t kDim = 5;

// One table per optimizer (state widths differ), named after it.
std::vector<std::string> TableNames() {
  std::vector<std::string> names;
  for (const OptimizerInfo& info : AllOptimizers()) {
    names.push_back(std::string(info.name));
  }
  return names;
}

// The engines of M servers holding the same tables, as a sharded client
// drives them: every push reaches every shard (empty where it holds none
// of the rows), so their steps agree.
class EngineCluster {
 public:
  explicit EngineCluster(int32_t shards)
      : layout_(*ShardLayout::Create(shards)) {
    for (int32_t k = 0; k < shards; ++k) {
      registries_.push_back(std::make_unique<TableRegistry>(
          RegistryOptions{.shard_index = k, .shard_count = shards}));
    }
  }

  // The restored shards of OUT/shard-0 .. shard-(M-1); every table restored
  // and nothing skipped.
  static EngineCluster Restore(const std::string& root, int32_t shards) {
    EngineCluster cluster(shards);
    for (int32_t k = 0; k < shards; ++k) {
      testing::Restored restored =
          RestoreInto(JoinPath(root, absl::StrCat("shard-", k)), k, shards);
      for (const RestoredTable& table : restored.tables) {
        EXPECT_TRUE(table.restored) << table.table;
        EXPECT_THAT(table.skipped, IsEmpty()) << table.table;
      }
      cluster.registries_[k] = std::move(restored.registry);
    }
    return cluster;
  }

  int32_t shards() const { return layout_.shard_count(); }
  TableRegistry& registry(int32_t k) { return *registries_[k]; }

  void CreateTables() {
    for (const OptimizerInfo& info : AllOptimizers()) {
      for (auto& registry : registries_) {
        ASSERT_TRUE(registry
                        ->Create(TestSpec(std::string(info.name), info.kind,
                                          kRows, kDim),
                                 {})
                        .ok());
      }
    }
  }

  // Push `sequence` of every table: a gradient for `rows` (repeats, padding
  // row 1 included) that depends only on the push, the position and the
  // column, split by shard; then a lookup of them (renorming some).
  void Push(const std::vector<int64_t>& rows, uint64_t sequence,
            int32_t skip_shard = -1) {
    for (const std::string& name : TableNames()) {
      for (int32_t k = 0; k < shards(); ++k) {
        if (k == skip_shard) continue;
        std::vector<int64_t> mine;
        std::vector<float> grad;
        for (size_t i = 0; i < rows.size(); ++i) {
          if (layout_.OwnerShard(rows[i]) != k) continue;
          mine.push_back(rows[i]);
          for (int64_t c = 0; c < kDim; ++c) {
            grad.push_back(
                static_cast<float>((sequence * 31 + i * 7 + c) % 23) - 11.0f);
          }
        }
        std::shared_ptr<EmbeddingTable> table = GetTable(*registries_[k], name);
        absl::StatusOr<PushResult> pushed = table->PushGradients(
            mine, grad, {.client_id = "trainer", .sequence = sequence});
        ASSERT_TRUE(pushed.ok()) << pushed.status();
        std::vector<float> out(mine.size() * kDim);
        ASSERT_TRUE(table->Lookup(mine, DType::kFloat32, out.data()).ok());
      }
    }
  }

  // Saves every table of every shard to ROOT/shard-k.
  void Save(const std::string& root, SaveKind kind) {
    ASSERT_TRUE(internal::MakeDirectory(root).ok());
    for (int32_t k = 0; k < shards(); ++k) {
      const std::string directory = JoinPath(root, absl::StrCat("shard-", k));
      ASSERT_TRUE(internal::MakeDirectory(directory).ok());
      // Kept, so that the next save of the directory may be a delta.
      std::unique_ptr<CheckpointManager>& manager = managers_[directory];
      if (manager == nullptr) manager = MakeManager(directory, *registries_[k]);
      ASSERT_TRUE(manager->Save({}, kind).ok());
    }
  }

  // Table `name` over all shards: rows ascending by global id, metadata of
  // shard 0 (steps and versions of the shards checked equal).
  TableImage Global(const std::string& name) {
    std::vector<TableImage> parts;
    for (auto& registry : registries_) {
      parts.push_back(Capture(*GetTable(*registry, name)));
    }
    TableImage global;
    global.metadata = parts[0].metadata;
    global.dim = parts[0].dim;
    global.state_width = parts[0].state_width;
    for (int64_t g = 0; g < global.metadata.spec.num_embeddings; ++g) {
      const TableImage& part = parts[layout_.OwnerShard(g)];
      const int64_t local = layout_.LocalRow(g);
      EXPECT_EQ(part.rows[local], g);
      global.rows.push_back(g);
      global.weights.insert(global.weights.end(),
                            part.weights.begin() + local * part.dim,
                            part.weights.begin() + (local + 1) * part.dim);
      global.state.insert(global.state.end(),
                          part.state.begin() + local * part.state_width,
                          part.state.begin() + (local + 1) * part.state_width);
    }
    for (const TableImage& part : parts) {
      EXPECT_EQ(part.metadata.step, global.metadata.step) << name;
      EXPECT_EQ(part.metadata.version, global.metadata.version) << name;
    }
    return global;
  }

 private:
  ShardLayout layout_;
  std::vector<std::unique_ptr<TableRegistry>> registries_;
  std::map<std::string, std::unique_ptr<CheckpointManager>> managers_;
};

// Bit for bit (memcmp, not ==, so that -0 and 0 differ).
bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() ||
          std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Every row, optimizer state row (bit for bit), step, version and
// optimizer are equal.
void ExpectSameTable(const TableImage& actual, const TableImage& expected,
                     const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(actual.rows, expected.rows);
  EXPECT_TRUE(SameBits(actual.weights, expected.weights));
  EXPECT_TRUE(SameBits(actual.state, expected.state));
  EXPECT_EQ(actual.metadata.step, expected.metadata.step);
  EXPECT_EQ(actual.metadata.version, expected.metadata.version);
  EXPECT_TRUE(SameOptimizer(actual.metadata.spec.optimizer,
                            expected.metadata.spec.optimizer));
}

void ExpectSameTables(EngineCluster& actual, EngineCluster& expected,
                      const std::string& what) {
  for (const std::string& name : TableNames()) {
    ExpectSameTable(actual.Global(name), expected.Global(name),
                    absl::StrCat(what, ", table ", name));
  }
}

std::vector<std::string> ShardDirectories(const std::string& root,
                                          int32_t shards) {
  std::vector<std::string> directories;
  for (int32_t k = 0; k < shards; ++k) {
    directories.push_back(JoinPath(root, absl::StrCat("shard-", k)));
  }
  return directories;
}

absl::Status ReshardTo(const std::string& from_root, int32_t from_shards,
                       const std::string& to, int32_t shards) {
  return Reshard({.from = ShardDirectories(from_root, from_shards),
                  .to = to,
                  .shards = shards})
      .status();
}

const std::vector<int64_t> kFirstPush = {0, 1, 2, 3, 4, 5, 7, 7, 40, 13};
const std::vector<int64_t> kSecondPush = {5, 6, 1, 30, 31, 32, 33, 5};
const std::vector<int64_t> kLaterPush = {8, 9, 10, 11, 12, 1, 39, 40, 8};

// Saves `cluster` (trained: a full save, then more pushes and a delta, so
// the reshard reads a chain) under `root`.
void TrainAndSave(EngineCluster& cluster, const std::string& root) {
  cluster.CreateTables();
  for (uint64_t sequence = 1; sequence <= 3; ++sequence) {
    cluster.Push(kFirstPush, sequence);
  }
  cluster.Save(root, SaveKind::kFull);
  for (uint64_t sequence = 4; sequence <= 5; ++sequence) {
    cluster.Push(kSecondPush, sequence);
  }
  cluster.Save(root, SaveKind::kIncremental);
}

class ReshardTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const {
    return JoinPath(dir_.path(), name);
  }

  TempDir dir_;
};

// Reshards `from` (M shards, under `root`) to `middle` shards and back to M,
// checking each step against `from` and the next pushes against it too.
void RoundTrip(EngineCluster& from, const std::string& root,
               const std::string& scratch, int32_t middle) {
  const int32_t m = from.shards();
  const std::string there = JoinPath(scratch, "there");
  const std::string back = JoinPath(scratch, "back");
  ASSERT_TRUE(ReshardTo(root, m, there, middle).ok());
  EXPECT_THAT(List(there), ::testing::SizeIs(middle));
  EngineCluster resharded = EngineCluster::Restore(there, middle);
  ExpectSameTables(resharded, from, absl::StrCat(m, " -> ", middle));

  ASSERT_TRUE(ReshardTo(there, middle, back, m).ok());
  EngineCluster returned = EngineCluster::Restore(back, m);
  ExpectSameTables(returned, from, absl::StrCat(m, " -> ", middle, " -> ", m));

  // The next pushes train all three alike (steps and state carried over).
  for (uint64_t sequence = 6; sequence <= 7; ++sequence) {
    from.Push(kLaterPush, sequence);
    resharded.Push(kLaterPush, sequence);
    returned.Push(kLaterPush, sequence);
  }
  ExpectSameTables(resharded, from, "after pushes on the resharded cluster");
  ExpectSameTables(returned, from, "after pushes on the returned cluster");
}

TEST_F(ReshardTest, TwoToThreeToTwoKeepsEveryRowStateStepAndVersion) {
  EngineCluster two(2);
  TrainAndSave(two, Path("two"));
  RoundTrip(two, Path("two"), dir_.path(), 3);
}

TEST_F(ReshardTest, ThreeToOneToThreeKeepsEveryRowStateStepAndVersion) {
  EngineCluster three(3);
  TrainAndSave(three, Path("three"));
  RoundTrip(three, Path("three"), dir_.path(), 1);
}

TEST_F(ReshardTest, ExactlyOnceWindowsKeptOnlyWhenTheLayoutStays) {
  EngineCluster two(2);
  TrainAndSave(two, Path("two"));
  ASSERT_TRUE(ReshardTo(Path("two"), 2, Path("same"), 2).ok());
  ASSERT_TRUE(ReshardTo(Path("two"), 2, Path("three"), 3).ok());
  EngineCluster same = EngineCluster::Restore(Path("same"), 2);
  EngineCluster three = EngineCluster::Restore(Path("three"), 3);
  for (int32_t k = 0; k < 2; ++k) {
    TableImage before = Capture(*GetTable(two.registry(k), "sgd"));
    ASSERT_THAT(before.metadata.exactly_once, ::testing::SizeIs(1));
    EXPECT_EQ(Capture(*GetTable(same.registry(k), "sgd")).metadata.exactly_once,
              before.metadata.exactly_once);
  }
  for (int32_t k = 0; k < 3; ++k) {
    EXPECT_THAT(
        Capture(*GetTable(three.registry(k), "sgd")).metadata.exactly_once,
        IsEmpty());
  }
}

TEST_F(ReshardTest, OnlyTheTablesAskedForEachOnce) {
  EngineCluster two(2);
  TrainAndSave(two, Path("two"));
  absl::StatusOr<std::vector<ReshardedTable>> done =
      Reshard({.from = ShardDirectories(Path("two"), 2),
               .to = Path("out"),
               .shards = 3,
               .tables = {"adagrad", "adagrad"}});
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->size(), 1u);
  EXPECT_EQ((*done)[0].table, "adagrad");
  EXPECT_EQ((*done)[0].step, 5);
  EXPECT_EQ((*done)[0].rows, kRows);
  EXPECT_THAT(List(Path("out/shard-2")), ElementsAre("adagrad"));
}

TEST_F(ReshardTest, TableWithoutACompleteCheckpointIsLeftOutAsARestoreWould) {
  EngineCluster two(2);
  TrainAndSave(two, Path("two"));
  for (int32_t k = 0; k < 2; ++k) {  // A first save of "ghost" cut short.
    const std::string ghost = Path(absl::StrCat("two/shard-", k, "/ghost"));
    ASSERT_TRUE(internal::MakeDirectory(ghost).ok());
    ASSERT_TRUE(
        internal::MakeDirectory(JoinPath(ghost, ".tmp-00000001.full")).ok());
  }
  ASSERT_TRUE(ReshardTo(Path("two"), 2, Path("out"), 3).ok());
  EXPECT_EQ(List(Path("out/shard-0")).size(), TableNames().size());
  EXPECT_THAT(List(Path("out/shard-0")),
              ::testing::Not(::testing::Contains("ghost")));
}

// Bad inputs: the code, a message naming the problem, nothing written.
class ReshardRefusalTest : public ReshardTest {
 protected:
  void SetUp() override { TrainAndSave(two_, Path("two")); }

  void ExpectRefused(const ReshardOptions& options, absl::StatusCode code,
                     const std::string& message) {
    absl::StatusOr<std::vector<ReshardedTable>> done = Reshard(options);
    EXPECT_EQ(done.status().code(), code) << done.status();
    EXPECT_THAT(done.status().message(), HasSubstr(message));
    EXPECT_FALSE(internal::IsDirectory(options.to)) << "output left behind";
    EXPECT_FALSE(internal::IsDirectory(options.to + ".reshard-tmp"));
  }

  std::string Shard(int32_t k) const {
    return Path(absl::StrCat("two/shard-", k));
  }

  EngineCluster two_{2};
};

TEST_F(ReshardRefusalTest, MissingShardIsNamed) {
  EngineCluster three(3);
  TrainAndSave(three, Path("three"));
  ExpectRefused(
      {.from = {Path("three/shard-0"), Path("three/shard-1")},
       .to = Path("out"),
       .shards = 2},
      absl::StatusCode::kFailedPrecondition,
      "was saved on 3 shards but 2 input directories were given: shard 2 is "
      "missing");
}

TEST_F(ReshardRefusalTest, DuplicatedShardIsNamed) {
  // A second copy of shard 0, saved elsewhere.
  const std::string copy = Path("copy");
  ASSERT_TRUE(internal::MakeDirectory(copy).ok());
  ASSERT_TRUE(
      MakeManager(copy, two_.registry(0))->Save({}, SaveKind::kFull).ok());
  ExpectRefused(
      {.from = {Shard(0), copy}, .to = Path("out"), .shards = 3},
      absl::StatusCode::kFailedPrecondition,
      absl::StrCat("shard 0 of 2 is given twice: ", Shard(0), " and ", copy));
}

TEST_F(ReshardRefusalTest, SameDirectoryTwiceIsInvalidArgument) {
  ExpectRefused({.from = {Shard(0), Shard(0)}, .to = Path("out"), .shards = 3},
                absl::StatusCode::kInvalidArgument,
                absl::StrCat("input directory ", Shard(0),
                             " is given twice (inputs 0 and 1)"));
}

TEST_F(ReshardRefusalTest, UnknownTableIsNotFound) {
  ExpectRefused({.from = {Shard(0), Shard(1)},
                 .to = Path("out"),
                 .shards = 3,
                 .tables = {"sgd", "nope"}},
                absl::StatusCode::kNotFound,
                "table \"nope\" has no checkpoint in any input directory");
}

TEST_F(ReshardRefusalTest, ShardsOutOfOrderAreRefused) {
  ExpectRefused({.from = {Shard(1), Shard(0)}, .to = Path("out"), .shards = 3},
                absl::StatusCode::kFailedPrecondition,
                "holds shard 1 of 2, expected shard 0: give the directories "
                "in shard-index order");
}

TEST_F(ReshardRefusalTest, ShardsOfDifferentTableSetsAreRefused) {
  // Shard 1 of a cluster whose tables have other names.
  TableRegistry other({.shard_index = 1, .shard_count = 2});
  ASSERT_TRUE(
      other.Create(TestSpec("other", OptimizerKind::kSgd, kRows, kDim), {})
          .ok());
  const std::string directory = Path("other");
  ASSERT_TRUE(internal::MakeDirectory(directory).ok());
  ASSERT_TRUE(MakeManager(directory, other)->Save({}, SaveKind::kFull).ok());
  ExpectRefused({.from = {Shard(0), directory}, .to = Path("out"), .shards = 3},
                absl::StatusCode::kFailedPrecondition,
                absl::StrCat(directory,
                             " has no checkpoint of table \"adagrad\": "
                             "the inputs are not the shards of one table set"));
}

TEST_F(ReshardRefusalTest, ShardsOfDifferentSpecsAreRefused) {
  // Shard 1 of a table "adagrad" of another seed.
  TableRegistry other({.shard_index = 1, .shard_count = 2});
  TableSpec spec = TestSpec("adagrad", OptimizerKind::kAdagrad, kRows, kDim);
  spec.seed = 8;
  ASSERT_TRUE(other.Create(spec, {}).ok());
  const std::string directory = Path("other");
  ASSERT_TRUE(internal::MakeDirectory(directory).ok());
  ASSERT_TRUE(MakeManager(directory, other)->Save({}, SaveKind::kFull).ok());
  ExpectRefused({.from = {Shard(0), directory},
                 .to = Path("out"),
                 .shards = 3,
                 .tables = {"adagrad"}},
                absl::StatusCode::kFailedPrecondition,
                "table \"adagrad\": the spec in ");
  ExpectRefused({.from = {Shard(0), directory},
                 .to = Path("out"),
                 .shards = 3,
                 .tables = {"adagrad"}},
                absl::StatusCode::kFailedPrecondition, "seed");
}

TEST_F(ReshardRefusalTest, DifferentOptimizerHyperParametersAreRefused) {
  OptimizerSpec changed = DefaultOptimizerSpec(OptimizerKind::kAdagrad);
  changed.lr = 0.5f;
  ASSERT_TRUE(
      GetTable(two_.registry(1), "adagrad")->SetOptimizer(changed).ok());
  two_.Save(Path("two"), SaveKind::kIncremental);
  ExpectRefused({.from = {Shard(0), Shard(1)},
                 .to = Path("out"),
                 .shards = 3,
                 .tables = {"adagrad"}},
                absl::StatusCode::kFailedPrecondition, "optimizer lr is 0.5");
}

TEST_F(ReshardRefusalTest, DisagreeingStepsAreRefused) {
  two_.Push(kLaterPush, 6, /*skip_shard=*/1);
  two_.Save(Path("two"), SaveKind::kIncremental);
  ExpectRefused(
      {.from = {Shard(0), Shard(1)}, .to = Path("out"), .shards = 3},
      absl::StatusCode::kFailedPrecondition,
      absl::StrCat("the shards disagree on the optimizer step: "
                   "shard 0 (",
                   Shard(0), ") step 6, shard 1 (", Shard(1), ") step 5"));
}

TEST_F(ReshardRefusalTest, CorruptFileIsDataLossNamingIt) {
  // A flipped byte in the last block of shard 1's delta of table "sgd".
  const std::string checkpoint = JoinPath(Shard(1), "sgd/00000002.delta");
  const std::string weights = JoinPath(checkpoint, "weights.npy");
  std::string bytes = ReadBytes(weights);
  ASSERT_FALSE(bytes.empty());
  bytes.back() ^= 0x40;
  WriteBytes(weights, bytes);
  ExpectRefused({.from = {Shard(0), Shard(1)}, .to = Path("out"), .shards = 3},
                absl::StatusCode::kDataLoss,
                absl::StrCat(weights, ": block 0 (bytes 0 to ", bytes.size(),
                             ") fails its checksum"));
}

TEST_F(ReshardRefusalTest, OutputThatIsNotEmptyIsRefused) {
  const std::string out = Path("out");
  ASSERT_TRUE(internal::MakeDirectory(out).ok());
  WriteBytes(JoinPath(out, "precious"), "x");
  absl::StatusOr<std::vector<ReshardedTable>> done =
      Reshard({.from = {Shard(0), Shard(1)}, .to = out, .shards = 3});
  EXPECT_EQ(done.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(done.status().message(),
              HasSubstr(absl::StrCat("output directory ", out,
                                     " is not empty (it holds \"precious\")")));
  EXPECT_THAT(List(out), ElementsAre("precious"));
}

TEST_F(ReshardRefusalTest, EmptyOutputDirectoryIsUsed) {
  const std::string out = Path("out");
  ASSERT_TRUE(internal::MakeDirectory(out).ok());
  ASSERT_TRUE(ReshardTo(Path("two"), 2, out + "/", 3).ok());
  EXPECT_THAT(List(out), ElementsAre("shard-0", "shard-1", "shard-2"));
}

}  // namespace
}  // namespace embedding
