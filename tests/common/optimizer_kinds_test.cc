#include "common/optimizer_kinds.h"

#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;

TEST(OptimizerKindsTest, TableIsIndexedByKindWithUniqueNames) {
  std::set<std::string> names;
  int index = 0;
  for (const OptimizerInfo& info : AllOptimizers()) {
    EXPECT_EQ(static_cast<int>(info.kind), index++);
    EXPECT_EQ(&InfoOf(info.kind), &info);
    EXPECT_EQ(FindOptimizer(info.name), &info);
    EXPECT_TRUE(names.insert(std::string(info.name)).second) << info.name;
    ASSERT_FALSE(info.params.empty());
    EXPECT_EQ(info.params[0].name, "lr") << "every optimizer has lr first";
  }
  EXPECT_EQ(FindOptimizer("momentum"), nullptr);
}

TEST(OptimizerKindsTest, DefaultsAreValidAndSetFromTheTable) {
  for (const OptimizerInfo& info : AllOptimizers()) {
    const OptimizerSpec spec = DefaultOptimizerSpec(info.kind);
    EXPECT_EQ(spec.kind, info.kind);
    EXPECT_TRUE(ValidateOptimizerSpec(spec).ok()) << info.name;
    for (const HyperParameter& param : info.params) {
      EXPECT_EQ(spec.*param.field, param.default_value)
          << info.name << " " << param.name;
    }
  }
}

TEST(OptimizerKindsTest, StateWidthCountsSlots) {
  constexpr int64_t kDim = 7;
  EXPECT_EQ(OptimizerStateWidth(OptimizerKind::kSgd, kDim), 0);
  EXPECT_EQ(OptimizerStateWidth(OptimizerKind::kAdagrad, kDim), kDim);
  EXPECT_EQ(OptimizerStateWidth(OptimizerKind::kSparseAdam, kDim), 2 * kDim);
  EXPECT_EQ(OptimizerStateWidth(OptimizerKind::kRowwiseAdagrad, kDim), 1);
  EXPECT_EQ(OptimizerStateWidth(OptimizerKind::kFtrl, kDim), 2 * kDim);
}

// Each range refuses its first bad value with a message naming the
// optimizer and the parameter.
TEST(OptimizerKindsTest, OutOfRangeParameterIsInvalidArgumentNamingIt) {
  struct Case {
    OptimizerKind kind;
    float OptimizerSpec::*field;
    float bad;
    const char* message;
  };
  const Case cases[] = {
      {OptimizerKind::kSgd, &OptimizerSpec::lr, 0.0f, "sgd lr must be"},
      {OptimizerKind::kSgd, &OptimizerSpec::lr, INFINITY, "sgd lr must be"},
      {OptimizerKind::kAdagrad, &OptimizerSpec::lr_decay, -1.0f,
       "adagrad lr_decay must be a finite number >= 0"},
      {OptimizerKind::kSparseAdam, &OptimizerSpec::beta2, 1.0f,
       "sparse_adam beta2 must be in [0, 1)"},
      {OptimizerKind::kSparseAdam, &OptimizerSpec::beta1, NAN,
       "sparse_adam beta1 must be in [0, 1)"},
      {OptimizerKind::kRowwiseAdagrad, &OptimizerSpec::eps, 0.0f,
       "rowwise_adagrad eps must be a finite number > 0"},
      {OptimizerKind::kFtrl, &OptimizerSpec::lr_power, 0.5f,
       "ftrl lr_power must be a finite number <= 0"},
      {OptimizerKind::kFtrl, &OptimizerSpec::l1, -0.1f,
       "ftrl l1 must be a finite number >= 0"},
  };
  for (const Case& c : cases) {
    OptimizerSpec spec = DefaultOptimizerSpec(c.kind);
    spec.*c.field = c.bad;
    const absl::Status status = ValidateOptimizerSpec(spec);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
}

// A parameter of another optimizer is not checked: SGD ignores betas.
TEST(OptimizerKindsTest, ParametersOfOtherKindsAreIgnored) {
  OptimizerSpec spec = DefaultOptimizerSpec(OptimizerKind::kSgd);
  spec.beta1 = 5.0f;
  EXPECT_TRUE(ValidateOptimizerSpec(spec).ok());
}

}  // namespace
}  // namespace embedding
