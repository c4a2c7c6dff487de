#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "client/cpp/cli_commands.h"
#include "client/cpp/cli_text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_service.h"

namespace embedding::cli {
namespace {

using ::embedding::testing::FakeServer;
using ::embedding::testing::FakeService;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseListTest, ParsesCommaSeparatedValues) {
  std::vector<int64_t> indices;
  ASSERT_TRUE(ParseList("indices", " 1, -2,3 ", &indices).ok());
  EXPECT_THAT(indices, ElementsAre(1, -2, 3));
  std::vector<float> values;
  ASSERT_TRUE(ParseList("grad", "0.5,-1e-3,2", &values).ok());
  EXPECT_THAT(values, ElementsAre(0.5f, -1e-3f, 2.0f));
  ASSERT_TRUE(ParseList("grad", "", &values).ok());
  EXPECT_TRUE(values.empty());
}

TEST(ParseListTest, BadElementIsInvalidArgumentNamingFlagAndElement) {
  std::vector<int64_t> indices;
  EXPECT_EQ(ParseList("indices", "1,2.5", &indices),
            absl::InvalidArgumentError(
                "--indices: element 1 (\"2.5\") is not an integer"));
  std::vector<float> values;
  EXPECT_EQ(
      ParseList("grad", "1,,2", &values),
      absl::InvalidArgumentError("--grad: element 1 (\"\") is not a number"));
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
  EXPECT_EQ(ParseInitializer("uniform:1").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseInitializer("xavier").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BuildOptimizerTest, SetsOnlyGivenHyperParameters) {
  OptimizerFlags flags;
  flags.kind = "sparse_adam";
  flags.lr = 0.1f;
  flags.beta2 = 0.99f;
  absl::StatusOr<v1::Optimizer> optimizer = BuildOptimizer(flags);
  ASSERT_TRUE(optimizer.ok()) << optimizer.status();
  EXPECT_EQ(optimizer->sparse_adam().lr(), 0.1f);
  EXPECT_FALSE(optimizer->sparse_adam().has_beta1());
  EXPECT_EQ(optimizer->sparse_adam().beta2(), 0.99f);
  EXPECT_EQ(FormatOptimizer(*optimizer), "sparse_adam(lr=0.1, beta2=0.99)");
}

TEST(BuildOptimizerTest, ForeignParameterIsInvalidArgument) {
  OptimizerFlags flags;
  flags.kind = "rowwise_adagrad";
  flags.lr_decay = 0.5f;
  EXPECT_EQ(BuildOptimizer(flags).status(),
            absl::InvalidArgumentError("--lr_decay is not a parameter of the "
                                       "rowwise_adagrad optimizer"));
  flags.kind = "adamw";
  EXPECT_EQ(BuildOptimizer(flags).status().code(),
            absl::StatusCode::kInvalidArgument);
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
  EXPECT_THAT(service_.lookup_request.indices(), ElementsAre(7, 3));
}

TEST_F(RunCommandTest, PushPassesLearningRateAndReportsTheResult) {
  service_.push_response.set_rows_updated(1);
  service_.push_response.set_version(4);
  CommandFlags flags;
  flags.indices = "2";
  flags.grad = "1,2";
  flags.optimizer.lr = 0.5f;
  ASSERT_TRUE(Run({"push", "t"}, flags).ok());
  EXPECT_EQ(out_.str(), "pushed to t: 1 rows updated, version 4\n");
  EXPECT_EQ(service_.push_request.learning_rate(), 0.5f);
}

TEST_F(RunCommandTest, CreateTableBuildsTheSpecFromFlags) {
  CommandFlags flags;
  flags.num_embeddings = 10;
  flags.embedding_dim = 4;
  flags.padding_idx = -1;
  flags.initializer = "uniform:-0.5,0.5";
  flags.optimizer.kind = "adagrad";
  flags.optimizer.lr = 0.1f;
  ASSERT_TRUE(Run({"create-table", "users"}, flags).ok());
  const v1::TableSpec& spec = service_.create_request.spec();
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
  EXPECT_THAT(service_.push_bag_request.max_indices(), ElementsAre(4, 1));
  EXPECT_EQ(service_.push_bag_request.mode(), v1::BAG_MODE_MAX);
}

TEST_F(RunCommandTest, UsageErrorsAreInvalidArgument) {
  CommandFlags flags;
  EXPECT_EQ(Run({"frob"}, flags),
            absl::InvalidArgumentError(
                "unknown command \"frob\"; run embedding_cli --help"));
  EXPECT_EQ(Run({"describe"}, flags).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Run({"list", "extra"}, flags).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Run({"create-table", "t"}, flags),
            absl::InvalidArgumentError(
                "create-table needs --num_embeddings and --embedding_dim"));
  flags.mode = "median";
  EXPECT_EQ(Run({"lookup-bag", "t"}, flags).code(),
            absl::StatusCode::kInvalidArgument);
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
