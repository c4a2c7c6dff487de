// Every rejection of ValidateTableSpec, with its exact message, and the
// normalisation of a negative padding_idx.
#include "server/core/table_spec.h"

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace embedding {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TableSpec ValidSpec() {
  TableSpec spec;
  spec.name = "t";
  spec.num_embeddings = 5;
  spec.embedding_dim = 3;
  return spec;
}

struct BadSpec {
  const char* what;
  std::function<void(TableSpec&)> set;
  std::string message;
};

TEST(TableSpecTest, EachBadFieldIsInvalidArgumentNamingIt) {
  using Kind = InitializerSpec::Kind;
  const std::vector<BadSpec> cases = {
      {"empty name", [](TableSpec& s) { s.name = ""; },
       "table name must be 1 to 128 characters, got 0"},
      {"long name", [](TableSpec& s) { s.name = std::string(129, 'a'); },
       "table name must be 1 to 128 characters, got 129"},
      {"bad character", [](TableSpec& s) { s.name = "a/b"; },
       "table name \"a/b\" may only contain letters, digits, '_', '-' and "
       "'.'"},
      {"long bad name",
       [](TableSpec& s) { s.name = std::string(100, 'a') + "/"; },
       "table name \"" + std::string(64, 'a') +
           "\"... (101 bytes) may only contain letters, digits, '_', '-' "
           "and '.'"},
      {"rows", [](TableSpec& s) { s.num_embeddings = 0; },
       "num_embeddings must be > 0, got 0"},
      {"dim", [](TableSpec& s) { s.embedding_dim = -3; },
       "embedding_dim must be > 0, got -3"},
      {"dim too large", [](TableSpec& s) { s.embedding_dim = 65537; },
       "embedding_dim must be at most 65536, got 65537"},
      {"dim far too large",
       [](TableSpec& s) {
         s.embedding_dim = std::numeric_limits<int64_t>::max();
       },
       "embedding_dim must be at most 65536, got 9223372036854775807"},
      {"padding too large", [](TableSpec& s) { s.padding_idx = 5; },
       "padding_idx 5 must be within [-5, 5)"},
      {"padding too small", [](TableSpec& s) { s.padding_idx = -6; },
       "padding_idx -6 must be within [-5, 5)"},
      {"max_norm zero", [](TableSpec& s) { s.max_norm = 0.0f; },
       "max_norm must be a finite number > 0, got 0"},
      {"max_norm inf", [](TableSpec& s) { s.max_norm = kInf; },
       "max_norm must be a finite number > 0, got inf"},
      {"max_norm nan", [](TableSpec& s) { s.max_norm = kNaN; },
       "max_norm must be a finite number > 0, got nan"},
      {"norm_type", [](TableSpec& s) { s.norm_type = -1.0f; },
       "norm_type must be > 0, got -1"},
      {"norm_type nan", [](TableSpec& s) { s.norm_type = kNaN; },
       "norm_type must be > 0, got nan"},
      {"shard_count", [](TableSpec& s) { s.shard_count = 0; },
       "shard_index 0 must be in [0, 0)"},
      {"shard_index",
       [](TableSpec& s) {
         s.shard_index = 2;
         s.shard_count = 2;
       },
       "shard_index 2 must be in [0, 2)"},
      {"initializer nan",
       [](TableSpec& s) {
         s.initializer = {Kind::kConstant, kNaN, 0.0f};
       },
       "initializer parameters must be finite"},
      {"initializer inf",
       [](TableSpec& s) {
         s.initializer = {Kind::kUniform, 0.0f, kInf};
       },
       "initializer parameters must be finite"},
      {"normal std",
       [](TableSpec& s) {
         s.initializer = {Kind::kNormal, 0.0f, -1.0f};
       },
       "normal initializer std must be >= 0, got -1"},
      {"normal std overflowing float32",
       [](TableSpec& s) {
         s.initializer = {Kind::kNormal, 0.0f, 3e38f};
       },
       "normal initializer (mean 0, std 3e+38) can draw values beyond "
       "float32's range: |mean| + 8.57167 * std must be at most "
       "3.40282e+38"},
      {"normal mean and std overflowing float32",
       [](TableSpec& s) {
         s.initializer = {Kind::kNormal, -3e38f, 1e37f};
       },
       "normal initializer (mean -3e+38, std 1e+37) can draw values beyond "
       "float32's range: |mean| + 8.57167 * std must be at most "
       "3.40282e+38"},
      {"uniform bounds",
       [](TableSpec& s) {
         s.initializer = {Kind::kUniform, 1.0f, 0.5f};
       },
       "uniform initializer needs low <= high, got [1, 0.5)"},
      {"optimizer", [](TableSpec& s) { s.optimizer.lr = 0.0f; },
       "sgd lr must be a finite number > 0, got 0"},
  };
  for (const BadSpec& bad : cases) {
    SCOPED_TRACE(bad.what);
    TableSpec spec = ValidSpec();
    bad.set(spec);
    const absl::Status status = ValidateTableSpec(spec);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), bad.message);
  }
}

TEST(TableSpecTest, EdgesOfEachRangeAreAccepted) {
  TableSpec spec = ValidSpec();
  spec.name = std::string(128, 'x');
  spec.padding_idx = 4;
  spec.norm_type = kInf;  // The max-norm.
  spec.max_norm = 1e-30f;
  spec.shard_index = 1;
  spec.shard_count = 2;
  spec.initializer = {InitializerSpec::Kind::kUniform, 2.0f, 2.0f};
  EXPECT_TRUE(ValidateTableSpec(spec).ok());
  spec.name = "Az09_-.";
  spec.initializer = {InitializerSpec::Kind::kNormal, -1.0f, 0.0f};
  EXPECT_TRUE(ValidateTableSpec(spec).ok());
}

// Issue 10: finite parameters whose draws overflow float32 were accepted;
// these are the largest that are not.
TEST(TableSpecTest, ExtremeInitializersThatStayFiniteAreAccepted) {
  using Kind = InitializerSpec::Kind;
  constexpr float kMax = std::numeric_limits<float>::max();
  for (const InitializerSpec& init :
       std::vector<InitializerSpec>{{Kind::kUniform, -kMax, kMax},
                                    {Kind::kUniform, -3e38f, 3e38f},
                                    {Kind::kConstant, kMax, 0.0f},
                                    {Kind::kNormal, 0.0f, 3.9e37f},
                                    {Kind::kNormal, kMax, 0.0f},
                                    {Kind::kNormal, -3e38f, 4e36f}}) {
    TableSpec spec = ValidSpec();
    spec.initializer = init;
    EXPECT_TRUE(ValidateTableSpec(spec).ok())
        << init.a << ", " << init.b << ": " << ValidateTableSpec(spec);
  }
}

TEST(TableSpecTest, EmbeddingDimUpToTheLimitIsAccepted) {
  TableSpec spec = ValidSpec();
  spec.embedding_dim = 65536;
  EXPECT_TRUE(ValidateTableSpec(spec).ok());
}

TEST(TableSpecTest, NegativePaddingIdxCountsFromTheEnd) {
  for (auto [given, stored] :
       {std::pair<int64_t, int64_t>{-1, 4}, {-5, 0}, {0, 0}, {3, 3}}) {
    TableSpec spec = ValidSpec();
    spec.padding_idx = given;
    ASSERT_TRUE(ValidateTableSpec(spec).ok()) << given;
    EXPECT_EQ(spec.padding_idx, stored) << given;
  }
}

TableSpec ValidDynamicSpec() {
  TableSpec spec = ValidSpec();
  spec.num_embeddings = 0;
  spec.dynamic = DynamicSpec{.capacity = 10};
  return spec;
}

TEST(TableSpecTest, EachBadDynamicFieldIsInvalidArgumentNamingIt) {
  const std::vector<BadSpec> cases = {
      {"rows", [](TableSpec& s) { s.num_embeddings = 5; },
       "num_embeddings must be 0 for a dynamic table (its ids are any int64), "
       "got 5"},
      {"capacity zero", [](TableSpec& s) { s.dynamic->capacity = 0; },
       "dynamic capacity must be in [1, 1099511627776], got 0"},
      {"capacity too large",
       [](TableSpec& s) { s.dynamic->capacity = (int64_t{1} << 40) + 1; },
       "dynamic capacity must be in [1, 1099511627776], got 1099511627777"},
      {"admit_after", [](TableSpec& s) { s.dynamic->admit_after = 256; },
       "dynamic admit_after must be at most 255, got 256"},
      {"ttl_pushes", [](TableSpec& s) { s.dynamic->ttl_pushes = 0; },
       "dynamic ttl_pushes must be > 0 when set, got 0"},
      {"reserved padding id", [](TableSpec& s) { s.padding_idx = kReservedId; },
       "padding_idx -9223372036854775808 is reserved in a dynamic table"},
      {"dim", [](TableSpec& s) { s.embedding_dim = 0; },
       "embedding_dim must be > 0, got 0"},
  };
  for (const BadSpec& bad : cases) {
    SCOPED_TRACE(bad.what);
    TableSpec spec = ValidDynamicSpec();
    bad.set(spec);
    const absl::Status status = ValidateTableSpec(spec);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), bad.message);
  }
}

// Any other int64 is an id, negative ones too: the padding id is not
// counted from an end, and admit_after 0 means the first push.
TEST(TableSpecTest, DynamicPaddingIdIsTakenAsItIs) {
  for (int64_t padding : {int64_t{-1}, int64_t{1000000000000},
                          std::numeric_limits<int64_t>::max(),
                          std::numeric_limits<int64_t>::min() + 1}) {
    TableSpec spec = ValidDynamicSpec();
    spec.padding_idx = padding;
    spec.dynamic->admit_after = 0;
    ASSERT_TRUE(ValidateTableSpec(spec).ok()) << padding;
    EXPECT_EQ(spec.padding_idx, padding);
    EXPECT_EQ(spec.dynamic->admit_after, 1u);
    EXPECT_EQ(LocalRowCount(spec), 10);
  }
}

TEST(TableSpecTest, DynamicOptionsAreCompared) {
  TableSpec expected = ValidDynamicSpec();
  TableSpec actual = expected;
  EXPECT_TRUE(CheckSameTable(expected, actual).ok());
  actual.dynamic->ttl_pushes = 5;
  EXPECT_EQ(CheckSameTable(expected, actual).message(),
            "spec field dynamic differs from the table's");
  actual.dynamic.reset();
  EXPECT_EQ(CheckSameTable(expected, actual).message(),
            "spec field dynamic differs from the table's");
}

}  // namespace
}  // namespace embedding
