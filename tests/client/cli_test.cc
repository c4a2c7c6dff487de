#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cpp/cli_commands.h"
#include "client/cpp/cli_text.h"
#include "common/optimizer_kinds.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_service.h"
#include "tests/client/wire_bytes.h"

namespace embedding::cli {
namespace {

using ::embedding::testing::DecodeIndicesLe;
using ::embedding::testing::FakeServer;
using ::embedding::testing::FakeService;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(ParseListTest, ParsesCommaSeparatedValues) {
  EXPECT_THAT(*ParseInt64List("indices", " 1, -2,3 "), ElementsAre(1, -2, 3));
  EXPECT_THAT(*ParseFloatList("grad", "0.5,-1e-3,2"),
              ElementsAre(0.5f, -1e-3f, 2.0f));
  EXPECT_THAT(*ParseFloatList("grad", ""), IsEmpty());
}

TEST(ParseListTest, BadElementIsInvalidArgumentNamingFlagAndElement) {
  EXPECT_EQ(ParseInt64List("indices", "1,2.5").status(),
            absl::InvalidArgumentError(
                "--indices: element 1 (\"2.5\") is not an integer"));
  EXPECT_EQ(
      ParseFloatList("grad", "1,,2").status(),
      absl::InvalidArgumentError("--grad: element 1 (\"\") is not a number"));
}

TEST(ParseNamesTest, DTypesAndBagModesBothWays) {
  for (v1::DType dtype :
       {v1::DTYPE_FLOAT32, v1::DTYPE_FLOAT16, v1::DTYPE_BFLOAT16}) {
    EXPECT_EQ(*ParseDType(DTypeName(dtype)), dtype);
  }
  for (v1::BagMode mode :
       {v1::BAG_MODE_SUM, v1::BAG_MODE_MEAN, v1::BAG_MODE_MAX}) {
    EXPECT_EQ(*ParseBagMode(BagModeName(mode)), mode);
  }
  EXPECT_EQ(ParseDType("int8").status(),
            absl::InvalidArgumentError(
                "--dtype=int8: expected float32, float16, bfloat16"));
  EXPECT_EQ(
      ParseBagMode("median").status(),
      absl::InvalidArgumentError("--mode=median: expected sum, mean, max"));
}

TEST(ParseInitializerTest, ParsesEachKind) {
  absl::StatusOr<v1::Initializer> init = ParseInitializer("normal:0.5,2");
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->normal().mean(), 0.5f);
  EXPECT_EQ(init->normal().std(), 2.0f);
  init = ParseInitializer("normal");
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->normal().std(), 1.0f);
  init = ParseInitializer("uniform:-1,1");
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->uniform().low(), -1.0f);
  init = ParseInitializer("constant:3");
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->constant().value(), 3.0f);
  EXPECT_EQ(ParseInitializer("uniform:1").status(),
            absl::InvalidArgumentError(
                "--initializer=uniform:1: expected normal:MEAN,STD, "
                "uniform:LOW,HIGH or constant:VALUE"));
  EXPECT_EQ(ParseInitializer("xavier").status(),
            absl::InvalidArgumentError(
                "--initializer=xavier: expected normal:MEAN,STD, "
                "uniform:LOW,HIGH or constant:VALUE"));
}

TEST(BuildOptimizerTest, GivenValuesOverTheTablesDefaults) {
  absl::StatusOr<v1::Optimizer> optimizer =
      BuildOptimizer("sparse_adam", {{"lr", "0.1"}, {"beta2", "0.99"}});
  ASSERT_TRUE(optimizer.ok()) << optimizer.status();
  EXPECT_EQ(optimizer->sparse_adam().lr(), 0.1f);
  EXPECT_EQ(optimizer->sparse_adam().beta1(), 0.9f);
  EXPECT_EQ(optimizer->sparse_adam().beta2(), 0.99f);
  EXPECT_EQ(FormatOptimizer(*optimizer),
            "sparse_adam(lr=0.1, beta1=0.9, beta2=0.99, eps=1e-08)");
}

TEST(BuildOptimizerTest, FtrlTakesItsParametersFromTheTable) {
  absl::StatusOr<v1::Optimizer> optimizer = BuildOptimizer(
      "ftrl", {{"l1", "0.5"}, {"lr_power", "-1"}, {"l1", "0.25"}});
  ASSERT_TRUE(optimizer.ok()) << optimizer.status();
  EXPECT_EQ(optimizer->ftrl().l1(), 0.25f);  // The last one given wins.
  EXPECT_EQ(optimizer->ftrl().lr_power(), -1.0f);
  EXPECT_EQ(FormatOptimizer(*optimizer),
            "ftrl(lr=0.01, lr_power=-1, l1=0.25, l2=0, beta=0, "
            "initial_accumulator_value=0.1)");
}

// Every optimizer of the table builds with every one of its parameters and
// prints them back.
TEST(BuildOptimizerTest, EveryOptimizerAndParameterRoundTrips) {
  for (const OptimizerInfo& info : AllOptimizers()) {
    std::vector<ParamFlag> params;
    std::vector<std::string> printed;
    float value = 0.125f;
    for (const HyperParameter& param : info.params) {
      const float v = param.range == ParamRange::kNonPositive ? -value : value;
      params.push_back({std::string(param.name), FormatFloat(v)});
      printed.push_back(absl::StrCat(param.name, "=", FormatFloat(v)));
      value /= 2;
    }
    absl::StatusOr<v1::Optimizer> optimizer = BuildOptimizer(info.name, params);
    ASSERT_TRUE(optimizer.ok()) << optimizer.status();
    EXPECT_EQ(FormatOptimizer(*optimizer),
              absl::StrCat(info.name, "(", absl::StrJoin(printed, ", "), ")"));
    EXPECT_TRUE(IsHyperParameter(info.params[0].name));
  }
  EXPECT_FALSE(IsHyperParameter("optimizer"));
}

TEST(BuildOptimizerTest, ForeignParameterIsInvalidArgumentNamingIt) {
  EXPECT_EQ(BuildOptimizer("rowwise_adagrad", {{"lr_decay", "0.5"}}).status(),
            absl::InvalidArgumentError(
                "--lr_decay is not a parameter of the rowwise_adagrad "
                "optimizer (it takes --lr, --eps)"));
  EXPECT_EQ(BuildOptimizer("adamw", {}).status(),
            absl::InvalidArgumentError(
                "--optimizer=adamw: expected one of sgd, adagrad, "
                "sparse_adam, rowwise_adagrad, ftrl"));
  EXPECT_EQ(BuildOptimizer("ftrl", {{"l1", "half"}}).status(),
            absl::InvalidArgumentError("--l1=half: not a number"));
}

TEST(FormatTest, UnsetOptimizerIsDefaultSgd) {
  EXPECT_EQ(FormatOptimizer(v1::Optimizer()), "sgd(lr=0.01)");
}

TEST(FormatTest, OptimizerHelpListsEveryOptimizerWithItsDefaults) {
  const std::string help = OptimizerHelp();
  for (const OptimizerInfo& info : AllOptimizers()) {
    EXPECT_THAT(help, HasSubstr(absl::StrCat("  ", info.name, ": ")));
    for (const HyperParameter& param : info.params) {
      EXPECT_THAT(help,
                  HasSubstr(absl::StrCat("--", param.name, "=",
                                         FormatFloat(param.default_value))));
    }
  }
  EXPECT_THAT(help, HasSubstr("      --lr_power=-0.5 "));
  EXPECT_THAT(Usage(), HasSubstr(help));
}

TEST(ExtractOptimizerParamsTest, TakesHyperParametersOutOfArgv) {
  std::vector<std::string> words = {
      "embedding_cli", "create-table", "t",      "--optimizer=ftrl",
      "--l1=0.5",      "-l2=0.25",     "--lr",   "0.1",
      "--seed=3",      "--",           "--eps=1"};
  std::vector<char*> argv;
  for (std::string& word : words) argv.push_back(word.data());
  SplitArgs split =
      ExtractOptimizerParams(static_cast<int>(argv.size()), argv.data());
  std::vector<std::string> rest(split.argv.begin(), split.argv.end());
  EXPECT_THAT(rest,
              ElementsAre("embedding_cli", "create-table", "t",
                          "--optimizer=ftrl", "--seed=3", "--", "--eps=1"));
  ASSERT_THAT(split.params, ::testing::SizeIs(3));
  EXPECT_EQ(split.params[0].name, "l1");
  EXPECT_EQ(split.params[0].value, "0.5");
  EXPECT_EQ(split.params[1].name, "l2");
  EXPECT_EQ(split.params[2].name, "lr");
  EXPECT_EQ(split.params[2].value, "0.1");
}

TEST(FormatTest, FloatsAreShortestRoundTrip) {
  EXPECT_EQ(FormatFloat(0.1f), "0.1");
  EXPECT_EQ(FormatFloat(-2.0f), "-2");
  EXPECT_EQ(FormatFloat(1e-8f), "1e-08");
  for (float value : {0.1f, 1.0f / 3, -123.456f, 3.4e38f, 1e-45f}) {
    float parsed;
    ASSERT_TRUE(absl::SimpleAtof(FormatFloat(value), &parsed));
    EXPECT_EQ(parsed, value);
  }
  EXPECT_EQ(FormatRow("3", {1.5f, -2.0f}), "3: 1.5 -2");
  EXPECT_EQ(FormatShape({2, 3}), "[2, 3]");
}

TEST(FormatTest, TableInfoHasOneLinePerField) {
  v1::TableInfo info;
  info.mutable_spec()->set_name("users");
  info.mutable_spec()->set_num_embeddings(10);
  info.mutable_spec()->set_padding_idx(9);
  info.mutable_spec()->mutable_optimizer()->mutable_sgd()->set_lr(0.25f);
  const std::string text = FormatTableInfo(info);
  EXPECT_THAT(text, HasSubstr("name:               users\n"));
  EXPECT_THAT(text, HasSubstr("padding_idx:        9\n"));
  EXPECT_THAT(text, HasSubstr("max_norm:           none\n"));
  EXPECT_THAT(text, HasSubstr("optimizer:          sgd(lr=0.25)\n"));
  EXPECT_EQ(FormatTableList({}), "no tables\n");
}

class RunCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
        EmbeddingClient::Connect(server_.address());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  absl::Status Run(std::vector<std::string> args, const CommandFlags& flags) {
    out_.str("");
    return RunCommand(*client_, args, flags, out_);
  }

  FakeService service_;
  FakeServer server_{&service_};
  std::unique_ptr<EmbeddingClient> client_;
  std::ostringstream out_;
};

TEST_F(RunCommandTest, LookupPrintsShapeThenOneRowPerIndex) {
  v1::Tensor* tensor = service_.lookup_response.mutable_embeddings();
  tensor->add_shape(2);
  tensor->add_shape(2);
  const float rows[] = {0.5f, -1, 2, 0.25f};
  tensor->set_data(
      std::string(reinterpret_cast<const char*>(rows), sizeof(rows)));
  CommandFlags flags;
  flags.indices = "7,3";
  ASSERT_TRUE(Run({"lookup", "t"}, flags).ok());
  EXPECT_EQ(out_.str(), "shape [2, 2]\n7: 0.5 -1\n3: 2 0.25\n");
  EXPECT_THAT(DecodeIndicesLe(service_.lookup_requests.back().indices_le()),
              ElementsAre(7, 3));
}

TEST_F(RunCommandTest, PushPassesLearningRateAndReportsTheResult) {
  service_.push_response.set_rows_updated(1);
  service_.push_response.set_version(4);
  CommandFlags flags;
  flags.indices = "2";
  flags.grad = "1,2";
  flags.params = {{"lr", "0.5"}};
  flags.sequence = 9;
  ASSERT_TRUE(Run({"push", "t"}, flags).ok());
  EXPECT_EQ(out_.str(), "pushed to t: 1 rows updated, version 4\n");
  EXPECT_EQ(service_.push_requests.back().learning_rate(), 0.5f);
  EXPECT_EQ(service_.push_requests.back().sequence(), 9u);
  EXPECT_EQ(service_.push_requests.back().client_id(), client_->client_id());
}

TEST_F(RunCommandTest, HyperParametersGoOnlyWhereTheyBelong) {
  CommandFlags flags;
  flags.indices = "2";
  flags.grad = "1,2";
  flags.params = {{"l1", "0.5"}};
  EXPECT_EQ(
      Run({"push", "t"}, flags),
      absl::InvalidArgumentError("--l1 is not a flag of a push (only "
                                 "--lr, the learning rate of this push)"));
  EXPECT_EQ(Run({"lookup", "t"}, flags),
            absl::InvalidArgumentError(
                "--l1 is an optimizer hyper-parameter; lookup takes none"));
  flags.num_embeddings = 10;
  flags.embedding_dim = 4;
  EXPECT_EQ(Run({"create-table", "t"}, flags),
            absl::InvalidArgumentError("--l1 is not a parameter of the sgd "
                                       "optimizer (it takes --lr)"));
  EXPECT_EQ(service_.calls["CreateTable"], 0);
  flags.optimizer = "ftrl";
  ASSERT_EQ(Run({"create-table", "t"}, flags), absl::OkStatus());
  EXPECT_EQ(service_.create_requests.back().spec().optimizer().ftrl().l1(),
            0.5f);
  EXPECT_THAT(out_.str(), HasSubstr("optimizer:          ftrl(lr=0.01, "
                                    "lr_power=-0.5, l1=0.5, "));
}

TEST_F(RunCommandTest, SetOptimizerPrintsTheOptimizerTheServerKept) {
  CommandFlags flags;
  EXPECT_EQ(Run({"set-optimizer", "t"}, flags),
            absl::InvalidArgumentError("set-optimizer needs --optimizer"));
  flags.optimizer = "adagrad";
  flags.params = {{"lr", "0.125"}};
  ASSERT_EQ(Run({"set-optimizer", "t"}, flags), absl::OkStatus());
  EXPECT_EQ(out_.str(),
            "optimizer of t: adagrad(lr=0.125, lr_decay=0, "
            "initial_accumulator_value=0, eps=1e-10)\n");
}

TEST_F(RunCommandTest, BagsDefaultToMean) {
  v1::Tensor* tensor = service_.lookup_bag_response.mutable_embeddings();
  tensor->add_shape(1);
  tensor->add_shape(2);
  tensor->set_data(std::string(8, '\0'));
  CommandFlags flags;
  flags.indices = "1,4";
  flags.offsets = "0";
  ASSERT_EQ(Run({"lookup-bag", "t"}, flags), absl::OkStatus());
  EXPECT_EQ(service_.lookup_bag_requests.back().mode(), v1::BAG_MODE_MEAN);
  EXPECT_EQ(out_.str(), "shape [1, 2]\nbag 0: 0 0\n");
}

TEST_F(RunCommandTest, CreateTableBuildsTheSpecFromFlags) {
  CommandFlags flags;
  flags.num_embeddings = 10;
  flags.embedding_dim = 4;
  flags.padding_idx = -1;
  flags.initializer = "uniform:-0.5,0.5";
  flags.optimizer = "adagrad";
  flags.params = {{"lr", "0.1"}};
  ASSERT_TRUE(Run({"create-table", "users"}, flags).ok());
  const v1::TableSpec& spec = service_.create_requests.back().spec();
  EXPECT_EQ(spec.name(), "users");
  EXPECT_EQ(spec.padding_idx(), -1);
  EXPECT_FALSE(spec.has_max_norm());
  EXPECT_EQ(spec.initializer().uniform().high(), 0.5f);
  EXPECT_EQ(spec.optimizer().adagrad().lr(), 0.1f);
  EXPECT_THAT(out_.str(), HasSubstr("created table users\n"));
}

TEST_F(RunCommandTest, PushBagInMaxModeFetchesMaxIndicesFirst) {
  v1::Tensor* tensor = service_.lookup_bag_response.mutable_embeddings();
  tensor->add_shape(1);
  tensor->add_shape(2);
  tensor->set_data(std::string(8, '\0'));
  service_.lookup_bag_response.add_max_indices(4);
  service_.lookup_bag_response.add_max_indices(1);
  CommandFlags flags;
  flags.indices = "1,4";
  flags.offsets = "0";
  flags.mode = "max";
  flags.grad = "1,1";
  ASSERT_TRUE(Run({"push-bag", "t"}, flags).ok());
  EXPECT_THAT(service_.push_bag_requests.back().max_indices(),
              ElementsAre(4, 1));
  EXPECT_EQ(service_.push_bag_requests.back().mode(), v1::BAG_MODE_MAX);
}

TEST_F(RunCommandTest, UsageErrorsAreInvalidArgument) {
  CommandFlags flags;
  EXPECT_EQ(Run({"frob"}, flags),
            absl::InvalidArgumentError(
                "unknown command \"frob\"; run embedding_cli --help"));
  EXPECT_EQ(Run({"describe"}, flags),
            absl::InvalidArgumentError(
                "describe takes one table NAME, got 0 operands"));
  EXPECT_EQ(
      Run({"list", "extra"}, flags),
      absl::InvalidArgumentError("list takes no operands, got 1 operands"));
  EXPECT_EQ(Run({"create-table", "t"}, flags),
            absl::InvalidArgumentError(
                "create-table needs --num_embeddings and --embedding_dim"));
  flags.mode = "median";
  EXPECT_EQ(
      Run({"lookup-bag", "t"}, flags),
      absl::InvalidArgumentError("--mode=median: expected sum, mean, max"));
}

TEST_F(RunCommandTest, ServerErrorIsReturnedUnchanged) {
  service_.status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "index 10 at position 1 is outside [0, 10)");
  CommandFlags flags;
  flags.indices = "1,10";
  EXPECT_EQ(
      Run({"lookup", "t"}, flags),
      absl::InvalidArgumentError("index 10 at position 1 is outside [0, 10)"));
  EXPECT_EQ(out_.str(), "");
}

}  // namespace
}  // namespace embedding::cli
