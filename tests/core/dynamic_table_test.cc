// A dynamic table alone (no server): absent ids read the initializer's
// values without getting a row, pushes admit them, a full stripe evicts its
// least recently pushed row with the row's optimizer state, the padding id
// holds nothing, and with room for every id it trains exactly as the dense
// table of the same seed.
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/shard_layout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/dtype.h"
#include "server/core/embedding_table.h"
#include "server/core/initializer.h"
#include "server/core/renorm.h"
#include "server/core/table_snapshot.h"
#include "tests/core/table_testing.h"

namespace embedding {
namespace {

using ::embedding::testing::MakeTable;

using ::testing::HasSubstr;

constexpr int64_t kDim = 4;

TableSpec DynamicTableSpec(int64_t capacity) {
  TableSpec spec;
  spec.name = "d";
  spec.embedding_dim = kDim;
  spec.seed = 7;
  spec.dynamic = DynamicSpec{.capacity = capacity};
  return spec;
}

std::vector<float> Lookup(EmbeddingTable& table,
                          const std::vector<int64_t>& ids) {
  std::vector<float> out(ids.size() * table.dim());
  const absl::Status status = table.Lookup(ids, DType::kFloat32, out.data());
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

std::vector<float> Initial(const TableSpec& spec, int64_t id) {
  std::vector<float> row(spec.embedding_dim);
  FillRow(spec.initializer, spec.seed, id, spec.embedding_dim, row.data());
  return row;
}

PushResult Push(EmbeddingTable& table, const std::vector<int64_t>& ids,
                float value = 1.0f) {
  const std::vector<float> grad(ids.size() * table.dim(), value);
  absl::StatusOr<PushResult> result = table.PushGradients(ids, grad, {});
  EXPECT_TRUE(result.ok()) << result.status();
  return result.value_or(PushResult{});
}

DynamicCounts Counts(EmbeddingTable& table) {
  return table.Stats().dynamic.value_or(DynamicCounts{});
}

TEST(DynamicTableTest, AbsentIdsReadTheInitializerAndGetNoRow) {
  const TableSpec spec = DynamicTableSpec(8);
  auto table = MakeTable(spec);
  const std::vector<int64_t> ids = {0, -1, 1000000000000, 5,
                                    std::numeric_limits<int64_t>::max()};
  const std::vector<float> rows = Lookup(*table, ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(std::vector<float>(rows.begin() + i * kDim,
                                 rows.begin() + (i + 1) * kDim),
              Initial(spec, ids[i]))
        << ids[i];
  }
  // An export (ReadRows) reads the same values and counts no lookup.
  std::vector<float> read(ids.size() * kDim);
  ASSERT_TRUE(table->ReadRows(ids, read.data()).ok());
  EXPECT_EQ(read, rows);
  const DynamicCounts counts = Counts(*table);
  EXPECT_EQ(counts.rows_held, 0);
  EXPECT_EQ(counts.absent_rows_looked_up, 5);
  EXPECT_EQ(table->Stats().local_rows, 0);
}

// Ids in [0, N) of a dynamic table read as the dense table's rows: both are
// FillRow(seed, id).
TEST(DynamicTableTest, AbsentIdsReadAsTheDenseTableOfTheSameSeed) {
  TableSpec dense_spec = DynamicTableSpec(1);
  dense_spec.dynamic.reset();
  dense_spec.num_embeddings = 50;
  auto dense = MakeTable(dense_spec);
  auto dynamic = MakeTable(DynamicTableSpec(1));
  std::vector<int64_t> ids(50);
  for (int64_t i = 0; i < 50; ++i) ids[i] = i;
  EXPECT_EQ(Lookup(*dynamic, ids), Lookup(*dense, ids));
}

TEST(DynamicTableTest, PushAdmitsAndStepsFromTheInitialRow) {
  TableSpec spec = DynamicTableSpec(8);
  spec.optimizer.lr = 0.5f;
  auto table = MakeTable(spec);
  const int64_t id = 1000000000007;
  const PushResult result = Push(*table, {id, id}, 1.0f);
  EXPECT_EQ(result.rows_updated, 1);
  EXPECT_EQ(result.rows_admitted, 1);
  EXPECT_EQ(result.rows_evicted, 0);
  std::vector<float> expected = Initial(spec, id);
  for (float& v : expected) v -= 0.5f * 2.0f;  // Two occurrences summed.
  EXPECT_EQ(Lookup(*table, {id}), expected);
  const DynamicCounts counts = Counts(*table);
  EXPECT_EQ(counts.rows_held, 1);
  EXPECT_EQ(counts.admissions, 1);
  EXPECT_EQ(table->Stats().local_rows, 1);
}

// Capacity 4 is one stripe: exact LRU over pushes.
TEST(DynamicTableTest, FullTableEvictsTheLeastRecentlyPushedRow) {
  const TableSpec spec = DynamicTableSpec(4);
  auto table = MakeTable(spec);
  for (int64_t id : {10, 11, 12, 13}) Push(*table, {id});
  Push(*table, {10});  // 11 is now the least recently pushed.
  const PushResult result = Push(*table, {14});
  EXPECT_EQ(result.rows_admitted, 1);
  EXPECT_EQ(result.rows_evicted, 1);
  EXPECT_EQ(Lookup(*table, {11}), Initial(spec, 11));
  EXPECT_NE(Lookup(*table, {10}), Initial(spec, 10));
  EXPECT_NE(Lookup(*table, {12}), Initial(spec, 12));
  const DynamicCounts counts = Counts(*table);
  EXPECT_EQ(counts.rows_held, 4);
  EXPECT_EQ(counts.admissions, 5);
  EXPECT_EQ(counts.evictions, 1);
}

// The held rows of a push are stepped before its new ids are admitted, so
// a push never evicts a row it updates; among new ids the first admitted
// is the older.
TEST(DynamicTableTest, PushStepsHeldRowsBeforeAdmitting) {
  const TableSpec spec = DynamicTableSpec(2);
  auto table = MakeTable(spec);
  Push(*table, {1});
  Push(*table, {2});
  // 1 is the least recent, but this push updates it: 2 is evicted.
  const PushResult result = Push(*table, {3, 1});
  EXPECT_EQ(result.rows_updated, 2);
  EXPECT_EQ(result.rows_evicted, 1);
  EXPECT_EQ(Lookup(*table, {2}), Initial(spec, 2));
  std::vector<float> twice = Initial(spec, 1);
  for (float& v : twice) v = (v - spec.optimizer.lr) - spec.optimizer.lr;
  EXPECT_EQ(Lookup(*table, {1}), twice);
  // Admitted in one push: 4 evicts 1 (stepped first), then 5 evicts 3.
  Push(*table, {4, 5});
  EXPECT_EQ(Lookup(*table, {1}), Initial(spec, 1));
  EXPECT_EQ(Lookup(*table, {3}), Initial(spec, 3));
  EXPECT_NE(Lookup(*table, {4}), Initial(spec, 4));
  EXPECT_NE(Lookup(*table, {5}), Initial(spec, 5));
}

// An evicted id starts over: its row from the initializer, its optimizer
// state fresh (Adagrad's sum of squares would shrink the step otherwise).
TEST(DynamicTableTest, EvictionDropsTheOptimizerState) {
  TableSpec spec = DynamicTableSpec(1);
  spec.optimizer = DefaultOptimizerSpec(OptimizerKind::kAdagrad);
  auto table = MakeTable(spec);
  Push(*table, {1}, 3.0f);
  const std::vector<float> once = Lookup(*table, {1});
  Push(*table, {1}, 3.0f);
  ASSERT_NE(Lookup(*table, {1}), once);
  Push(*table, {2}, 3.0f);  // Evicts 1.
  Push(*table, {1}, 3.0f);  // Evicts 2; 1 starts over.
  EXPECT_EQ(Lookup(*table, {1}), once);
}

TEST(DynamicTableTest, PaddingIdReadsZerosAndGetsNoRow) {
  TableSpec spec = DynamicTableSpec(4);
  spec.padding_idx = -1;  // An id like any other in a dynamic table.
  auto table = MakeTable(spec);
  const PushResult result = Push(*table, {-1, 3});
  EXPECT_EQ(result.rows_updated, 1);
  EXPECT_EQ(Lookup(*table, {-1}), std::vector<float>(kDim, 0.0f));
  EXPECT_EQ(Counts(*table).rows_held, 1);
  EXPECT_EQ(Counts(*table).absent_rows_looked_up, 0);
}

TEST(DynamicTableTest, ReservedIdIsInvalidArgumentAndChangesNothing) {
  auto table = MakeTable(DynamicTableSpec(4));
  const std::vector<int64_t> ids = {5, std::numeric_limits<int64_t>::min()};
  std::vector<float> out(ids.size() * kDim);
  absl::Status status = table->Lookup(ids, DType::kFloat32, out.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "index -9223372036854775808 at position 1 is reserved: no id of "
            "a dynamic table");
  const std::vector<float> grad(ids.size() * kDim, 1.0f);
  status = table->PushGradients(ids, grad, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Counts(*table).rows_held, 0);
  EXPECT_EQ(table->Stats().version, 0);
}

// Half-precision replies are the float32 rows converted, for held rows,
// absent ids and the padding id alike.
TEST(DynamicTableTest, HalfPrecisionLookupsConvertTheFloatRows) {
  TableSpec spec = DynamicTableSpec(8);
  spec.padding_idx = int64_t{1} << 50;
  auto table = MakeTable(spec);
  Push(*table, {int64_t{1} << 45, -3});
  const std::vector<int64_t> ids = {int64_t{1} << 45, -3, 77, int64_t{1} << 50};
  const std::vector<float> rows = Lookup(*table, ids);
  for (const DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    std::vector<uint16_t> expected(rows.size()), got(rows.size());
    ConvertFloats(rows.data(), rows.size(), dtype, expected.data());
    ASSERT_TRUE(table->Lookup(ids, dtype, got.data()).ok());
    EXPECT_EQ(got, expected);
  }
  EXPECT_EQ(Counts(*table).rows_held, 2);
}

// Shards hold the ids whose SplitMix64(id) % shards is theirs.
TEST(DynamicTableTest, ShardsHoldIdsByHash) {
  const ShardLayout layout =
      *ShardLayout::Create(3, ShardLayout::Routing::kHash);
  for (int32_t shard = 0; shard < 3; ++shard) {
    TableSpec spec = DynamicTableSpec(16);
    spec.shard_index = shard;
    spec.shard_count = 3;
    auto table = MakeTable(spec);
    for (int64_t id = -20; id < 20; ++id) {
      std::vector<float> out(kDim);
      const absl::Status status =
          table->Lookup({&id, 1}, DType::kFloat32, out.data());
      if (layout.OwnerShard(id) == shard) {
        EXPECT_TRUE(status.ok()) << id << ": " << status;
      } else {
        EXPECT_THAT(status.message(),
                    HasSubstr(absl::StrCat("belongs to shard ",
                                           layout.OwnerShard(id))));
      }
    }
  }
}

TEST(DynamicTableTest, InitialWeightsAreInvalidArgument) {
  const std::vector<float> weights(kDim, 1.0f);
  absl::StatusOr<std::unique_ptr<EmbeddingTable>> table =
      EmbeddingTable::Create(DynamicTableSpec(4), weights);
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(table.status().message(), HasSubstr("no initial_weights"));
}

// What a dynamic table cannot do yet is refused, never half done.
TEST(DynamicTableTest, DenseOnlyOperationsAreUnimplemented) {
  auto table = MakeTable(DynamicTableSpec(4));
  const std::vector<float> values(kDim, 1.0f);
  EXPECT_EQ(table->WriteRowRange(0, values).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(table->HeldRows(0, 1, 1).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(Counts(*table).rows_held, 0);
}

// max_norm: an absent id reads renormed values without a row; its admission
// stores them renormed, as torch's forward would have left the row.
TEST(DynamicTableTest, MaxNormRenormsAbsentRowsAndAdmittedOnes) {
  TableSpec spec = DynamicTableSpec(4);
  spec.initializer = {InitializerSpec::Kind::kConstant, 2.0f, 0.0f};
  spec.max_norm = 1.0f;
  auto table = MakeTable(spec);
  const std::vector<float> read = Lookup(*table, {7});
  std::vector<float> renormed(kDim, 2.0f);
  RenormRow(renormed.data(), kDim, 1.0f, 2.0f);
  EXPECT_EQ(read, renormed);
  EXPECT_EQ(Counts(*table).rows_held, 0);
  Push(*table, {7}, 0.0f);
  std::vector<float> stored(kDim);
  const int64_t id = 7;
  ASSERT_TRUE(table->ReadRows({&id, 1}, stored.data()).ok());
  EXPECT_EQ(stored, renormed);
}

// Room for every id and admission on the first push: the dynamic table
// trains as the dense one, with every optimizer, bit for bit.
TEST(DynamicTableTest, WithRoomForEveryIdTrainsAsTheDenseTable) {
  constexpr int64_t kRows = 300;
  for (const OptimizerInfo& info : AllOptimizers()) {
    SCOPED_TRACE(info.name);
    TableSpec dynamic_spec = DynamicTableSpec(kRows);
    dynamic_spec.optimizer = DefaultOptimizerSpec(info.kind);
    dynamic_spec.padding_idx = 3;
    TableSpec dense_spec = dynamic_spec;
    dense_spec.dynamic.reset();
    dense_spec.num_embeddings = kRows;
    auto dynamic = MakeTable(dynamic_spec);
    auto dense = MakeTable(dense_spec);
    std::mt19937_64 random(11);
    std::uniform_int_distribution<int64_t> row(0, kRows - 1);
    std::normal_distribution<float> value;
    for (int push = 0; push < 20; ++push) {
      std::vector<int64_t> ids(64);
      for (int64_t& id : ids) id = row(random);
      std::vector<float> grad(ids.size() * kDim);
      for (float& v : grad) v = value(random);
      ASSERT_TRUE(dynamic->PushGradients(ids, grad, {}).ok());
      ASSERT_TRUE(dense->PushGradients(ids, grad, {}).ok());
    }
    std::vector<int64_t> all(kRows);
    for (int64_t i = 0; i < kRows; ++i) all[i] = i;
    EXPECT_EQ(Lookup(*dynamic, all), Lookup(*dense, all));
    EXPECT_LE(Counts(*dynamic).rows_held, kRows);
  }
}

// Many stripes (capacity 5000), far more ids than room: the count of rows
// never passes the capacity, and the index stays consistent.
TEST(DynamicTableTest, ChurnKeepsRowsWithinCapacity) {
  constexpr int64_t kCapacity = 5000;
  auto table = MakeTable(DynamicTableSpec(kCapacity));
  std::mt19937_64 random(5);
  std::uniform_int_distribution<int64_t> id(-50000, 50000);
  int64_t admitted = 0;
  int64_t evicted = 0;
  for (int push = 0; push < 60; ++push) {
    std::vector<int64_t> ids(512);
    for (int64_t& v : ids) v = id(random);
    const PushResult result = Push(*table, ids);
    admitted += result.rows_admitted;
    evicted += result.rows_evicted;
    ASSERT_LE(Counts(*table).rows_held, kCapacity);
  }
  const DynamicCounts counts = Counts(*table);
  EXPECT_EQ(counts.admissions, admitted);
  EXPECT_EQ(counts.evictions, evicted);
  EXPECT_EQ(counts.rows_held, admitted - evicted);
  EXPECT_GT(evicted, 0);
  EXPECT_GT(counts.rows_held, kCapacity * 9 / 10);
}

// admit_after 3: the first two pushes of an id are counted and dropped; the
// third creates the row from the initializer and applies its own gradient.
TEST(DynamicTableTest, AdmitAfterCountsPushesAndDropsTheirGradients) {
  TableSpec spec = DynamicTableSpec(100);
  spec.dynamic->admit_after = 3;
  auto table = MakeTable(spec);
  for (int push = 0; push < 2; ++push) {
    const PushResult result = Push(*table, {5, 5});
    EXPECT_EQ(result.rows_updated, 0);
    EXPECT_EQ(result.rows_dropped, 1);
    EXPECT_EQ(Lookup(*table, {5}), Initial(spec, 5));
  }
  const PushResult third = Push(*table, {5});
  EXPECT_EQ(third.rows_admitted, 1);
  std::vector<float> expected = Initial(spec, 5);
  for (float& v : expected) v -= spec.optimizer.lr;
  EXPECT_EQ(Lookup(*table, {5}), expected);
  const DynamicCounts counts = Counts(*table);
  EXPECT_EQ(counts.dropped_rows, 2);
  EXPECT_EQ(counts.admissions, 1);
  EXPECT_EQ(counts.rows_held, 1);
}

// A push recognised as a retry, or refused, counts nothing toward
// admission.
TEST(DynamicTableTest, DuplicateAndRefusedPushesDoNotCountTowardAdmission) {
  TableSpec spec = DynamicTableSpec(100);
  spec.dynamic->admit_after = 3;
  auto table = MakeTable(spec);
  const std::vector<int64_t> ids = {9};
  const std::vector<float> grad(kDim, 1.0f);
  PushOptions once{.client_id = "c", .sequence = 1};
  ASSERT_TRUE(table->PushGradients(ids, grad, once).ok());
  absl::StatusOr<PushResult> retry = table->PushGradients(ids, grad, once);
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->duplicate);
  std::vector<float> bad(kDim, std::numeric_limits<float>::quiet_NaN());
  EXPECT_FALSE(table->PushGradients(ids, bad, {}).ok());
  // The second push of 9 that counts: dropped still.
  EXPECT_EQ(Push(*table, ids).rows_dropped, 1);
  EXPECT_EQ(Push(*table, ids).rows_admitted, 1);
}

// The sketch overcounts, never undercounts (before a halving): every id
// pushed twice is admitted by its second push, and an id pushed once is
// admitted early at about the rate the memo's bound gives, (1 - e^-l)^4 for
// l counts per counter: 1.6e-2 at l = 0.44.
TEST(DynamicTableTest, AdmissionSketchErrsOnlyEarlyAndRarely) {
  TableSpec spec = DynamicTableSpec(1024);  // 2 stripes of 512 rows.
  spec.dynamic->admit_after = 2;
  auto table = MakeTable(spec);
  // 1800 + 200 counts over 2 stripes: below a halving (2 * 512 each).
  std::vector<int64_t> seen(1800);
  for (size_t i = 0; i < seen.size(); ++i) seen[i] = 1000000 + i;
  const PushResult first = Push(*table, seen);
  EXPECT_LE(first.rows_admitted, 1800 / 50);
  int64_t early = 0;
  for (int64_t id = -1000000; id > -1000200; --id) {
    early += Push(*table, {id}).rows_admitted;
  }
  EXPECT_LE(early, 12) << "of 200";
  const std::vector<int64_t> again(seen.begin(), seen.begin() + 400);
  const PushResult second = Push(*table, again);
  EXPECT_EQ(second.rows_updated, 400);
  EXPECT_EQ(second.rows_dropped, 0);
}

// LFU evicts the row pushed fewest times since its admission, where LRU
// would evict the least recent.
TEST(DynamicTableTest, LfuEvictsTheLeastPushedRow) {
  for (const auto eviction :
       {DynamicSpec::Eviction::kLru, DynamicSpec::Eviction::kLfu}) {
    TableSpec spec = DynamicTableSpec(3);
    spec.dynamic->eviction = eviction;
    auto table = MakeTable(spec);
    for (int64_t id : {1, 1, 1, 2, 3, 3}) Push(*table, {id});
    Push(*table, {4});
    const int64_t evicted = eviction == DynamicSpec::Eviction::kLfu ? 2 : 1;
    EXPECT_EQ(Lookup(*table, {evicted}), Initial(spec, evicted));
    for (int64_t id : {1, 2, 3}) {
      if (id != evicted) {
        EXPECT_NE(Lookup(*table, {id}), Initial(spec, id));
      }
    }
  }
}

// ttl_pushes 3: a row not pushed in the last 3 pushes of the table reads as
// absent; it is reclaimed first (an expiration, not an eviction), and a push
// of its own id starts it over in its slot.
TEST(DynamicTableTest, ExpiredRowsReadAsAbsentAndAreReclaimedFirst) {
  TableSpec spec = DynamicTableSpec(4);
  spec.dynamic->ttl_pushes = 3;
  auto table = MakeTable(spec);
  Push(*table, {1});
  Push(*table, {2});
  Push(*table, {3});
  EXPECT_NE(Lookup(*table, {1}), Initial(spec, 1));  // 2 pushes ago.
  Push(*table, {4});
  EXPECT_EQ(Lookup(*table, {1}), Initial(spec, 1));  // 3 pushes ago.
  EXPECT_NE(Lookup(*table, {2}), Initial(spec, 2));
  EXPECT_EQ(Counts(*table).rows_held, 4);  // Held until reclaimed.
  PushResult result = Push(*table, {5});   // Full: reclaims 1.
  EXPECT_EQ(result.rows_admitted, 1);
  EXPECT_EQ(result.rows_evicted, 0);
  EXPECT_EQ(Counts(*table).expirations, 1);
  // 2 expires too; its own push admits it again, from its initial row.
  Push(*table, {3, 4, 5});
  result = Push(*table, {2});
  EXPECT_EQ(result.rows_admitted, 1);
  std::vector<float> expected = Initial(spec, 2);
  for (float& v : expected) v -= spec.optimizer.lr;
  EXPECT_EQ(Lookup(*table, {2}), expected);
  const DynamicCounts counts = Counts(*table);
  EXPECT_EQ(counts.expirations, 2);
  EXPECT_EQ(counts.evictions, 0);
  EXPECT_EQ(counts.rows_held, 4);
}

}  // namespace
}  // namespace embedding
