// The C++ client against the real in-process server (embedding::Server on a
// free loopback port): every client method, bulk transfers in chunks under a
// 1 MiB message limit on both sides, exactly-once pushes, and the server's
// error codes and messages arriving unchanged.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cpp/embedding_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/server.h"
#include "spdlog/spdlog.h"

namespace embedding {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

constexpr int kMessageBytes = 1 << 20;
constexpr int64_t kDim = 16;
// 1 MiB - 16 KiB of headroom over 64 bytes per row (no index): 16128 rows
// per CreateTable chunk; 13762 per WriteRows / ReadRows chunk (75 bytes).
constexpr int64_t kRows = 40000;  // 2.56 MB of weights: three chunks.

v1::TableSpec Spec(const std::string& name, int64_t rows) {
  v1::TableSpec spec;
  spec.set_name(name);
  spec.set_num_embeddings(rows);
  spec.set_embedding_dim(kDim);
  return spec;
}

// Row r holds r / 1000 + c for column c: every row distinct.
std::vector<float> Weights(int64_t rows) {
  std::vector<float> weights(rows * kDim);
  for (int64_t i = 0; i < rows * kDim; ++i) {
    weights[i] = static_cast<float>(i / kDim) / 1000 + i % kDim;
  }
  return weights;
}

std::vector<float> Row(const std::vector<float>& values, int64_t row) {
  return std::vector<float>(values.begin() + row * kDim,
                            values.begin() + (row + 1) * kDim);
}

class ClientServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::warn); }

  void SetUp() override {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.service.max_message_bytes = kMessageBytes;
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ClientOptions client_options;
    client_options.max_message_bytes = kMessageBytes;
    absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
        EmbeddingClient::Connect(absl::StrCat("127.0.0.1:", server_->port()),
                                 client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  // A table of `rows` rows holding Weights(rows).
  void CreateWithWeights(const std::string& name, int64_t rows,
                         v1::Optimizer optimizer = {}) {
    v1::TableSpec spec = Spec(name, rows);
    *spec.mutable_optimizer() = std::move(optimizer);
    absl::StatusOr<v1::TableInfo> info =
        client_->CreateTable(spec, Weights(rows));
    ASSERT_TRUE(info.ok()) << info.status();
  }

  std::vector<float> LookupRow(const std::string& table, int64_t row) {
    absl::StatusOr<FloatTensor> rows = client_->Lookup(table, {row});
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.ok() ? rows->data : std::vector<float>();
  }

  std::unique_ptr<Server> server_;
  std::unique_ptr<EmbeddingClient> client_;
};

TEST_F(ClientServerTest, CreateWithWeightsLargerThanAMessageUploadsInChunks) {
  v1::TableSpec spec = Spec("big", kRows);
  spec.set_padding_idx(-2);
  const std::vector<float> weights = Weights(kRows);
  absl::StatusOr<v1::TableInfo> info = client_->CreateTable(spec, weights);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->spec().num_embeddings(), kRows);
  EXPECT_EQ(info->spec().padding_idx(), kRows - 2);
  EXPECT_EQ(info->version(), 3);  // One per WriteRows chunk.

  // Read back in chunks of 13762 rows: every row as uploaded, the padding
  // row zero.
  absl::StatusOr<ReadRowsResult> read = client_->ReadRowRange("big", 0, 0);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_THAT(read->indices, SizeIs(kRows));
  EXPECT_THAT(read->values.shape, ElementsAre(kRows, kDim));
  std::vector<float> expected = weights;
  std::fill_n(expected.begin() + (kRows - 2) * kDim, kDim, 0.0f);
  EXPECT_EQ(read->values.data, expected);
  for (int64_t i = 0; i < kRows; ++i) ASSERT_EQ(read->indices[i], i);
  EXPECT_EQ(LookupRow("big", kRows - 1), Row(weights, kRows - 1));
}

TEST_F(ClientServerTest, CreateWhoseUploadFailsIsDeletedWithTheUploadsError) {
  std::vector<float> weights = Weights(kRows);
  weights[20000 * kDim + 3] = NAN;  // In the second chunk.
  const absl::Status status =
      client_->CreateTable(Spec("bad", kRows), weights).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("non-finite value"));
  EXPECT_EQ(client_->GetTable("bad").status(),
            absl::NotFoundError("table \"bad\" not found"));
}

TEST_F(ClientServerTest, SmallWeightsGoInline) {
  CreateWithWeights("small", 3);
  absl::StatusOr<v1::TableInfo> info = client_->GetTable("small");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->version(), 0);  // No WriteRows.
  EXPECT_EQ(LookupRow("small", 2), Row(Weights(3), 2));
}

TEST_F(ClientServerTest, LookupReturnsShapePlusDimAndDecodesHalfFloats) {
  CreateWithWeights("t", 10);
  LookupOptions options;
  options.shape = {2, 2};
  absl::StatusOr<FloatTensor> rows =
      client_->Lookup("t", {1, 2, 3, 1}, options);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_THAT(rows->shape, ElementsAre(2, 2, kDim));
  EXPECT_EQ(Row(rows->data, 3), Row(Weights(10), 1));

  for (v1::DType dtype : {v1::DTYPE_FLOAT16, v1::DTYPE_BFLOAT16}) {
    options = LookupOptions();
    options.dtype = dtype;
    rows = client_->Lookup("t", {7}, options);
    ASSERT_TRUE(rows.ok()) << rows.status();
    const std::vector<float> exact = Row(Weights(10), 7);
    for (int64_t c = 0; c < kDim; ++c) {
      EXPECT_NEAR(rows->data[c], exact[c], std::fabs(exact[c]) / 128)
          << v1::DType_Name(dtype) << " column " << c;
    }
  }
}

TEST_F(ClientServerTest, LookupErrorsKeepTheServersCodeAndMessage) {
  CreateWithWeights("t", 10);
  EXPECT_EQ(
      client_->Lookup("t", {1, 10}).status(),
      absl::InvalidArgumentError("index 10 at position 1 is outside [0, 10)"));
  EXPECT_EQ(client_->Lookup("t", {}).status(),
            absl::InvalidArgumentError("indices is empty"));
  EXPECT_EQ(client_->Lookup("nope", {1}).status(),
            absl::NotFoundError("table \"nope\" not found"));
}

TEST_F(ClientServerTest, BagsDefaultToMean) {
  CreateWithWeights("t", 10);
  const std::vector<int64_t> indices = {1, 2, 4};
  const std::vector<int64_t> offsets = {0, 2};
  Bags bags;
  bags.indices = indices;
  bags.offsets = offsets;
  absl::StatusOr<BagLookupResult> result = client_->LookupBag("t", bags);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->embeddings.shape, ElementsAre(2, kDim));
  const std::vector<float> weights = Weights(10);
  for (int64_t c = 0; c < kDim; ++c) {
    EXPECT_FLOAT_EQ(result->embeddings.data[c],
                    (weights[1 * kDim + c] + weights[2 * kDim + c]) / 2);
    EXPECT_FLOAT_EQ(result->embeddings.data[kDim + c], weights[4 * kDim + c]);
  }
  EXPECT_TRUE(result->max_indices.empty());
}

TEST_F(ClientServerTest, RepeatedPushIsAppliedOnceAndAnsweredDuplicate) {
  v1::Optimizer sgd;
  sgd.mutable_sgd()->set_lr(0.5f);
  CreateWithWeights("t", 10, sgd);
  const std::vector<float> grad(kDim, 1.0f);
  absl::StatusOr<PushGradientsResult> first =
      client_->PushGradients("t", {3}, grad);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->sequence, 1u);
  EXPECT_FALSE(first->duplicate);
  EXPECT_EQ(first->rows_updated, 1);

  PushGradientsOptions again;
  again.sequence = first->sequence;  // A retry of the same push.
  absl::StatusOr<PushGradientsResult> second =
      client_->PushGradients("t", {3}, grad, again);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->duplicate);
  std::vector<float> expected = Row(Weights(10), 3);
  for (float& value : expected) value -= 0.5f;
  EXPECT_EQ(LookupRow("t", 3), expected);

  // The next push gets the next sequence and is applied.
  const std::vector<int64_t> offsets = {0};
  const std::vector<int64_t> indices = {3};
  Bags bags;
  bags.indices = indices;
  bags.offsets = offsets;
  absl::StatusOr<PushGradientsResult> bag =
      client_->PushBagGradients("t", bags, grad);
  ASSERT_TRUE(bag.ok()) << bag.status();
  EXPECT_EQ(bag->sequence, 2u);
  EXPECT_FALSE(bag->duplicate);
  for (float& value : expected) value -= 0.5f;
  EXPECT_EQ(LookupRow("t", 3), expected);
}

TEST_F(ClientServerTest, PushErrorsKeepTheServersCodeAndMessage) {
  CreateWithWeights("t", 10);
  EXPECT_EQ(
      client_->PushGradients("t", {1, 12}, Weights(2)).status(),
      absl::InvalidArgumentError("index 12 at position 1 is outside [0, 10)"));
  const absl::Status nan =
      client_->PushGradients("t", {1}, std::vector<float>(kDim, NAN)).status();
  EXPECT_EQ(nan.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nan.message(), ::testing::HasSubstr("non-finite"));
  EXPECT_EQ(client_->GetTable("t")->step(), 0);
}

TEST_F(ClientServerTest, WriteAndReadRowsRoundTripInChunks) {
  CreateWithWeights("t", kRows);
  // 20000 rows with their indices: two WriteRows requests of <= 13762.
  std::vector<int64_t> indices(20000);
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = kRows - 1 - 2 * i;
  std::vector<float> values = Weights(indices.size());
  for (float& value : values) value = -value;
  absl::StatusOr<WriteResult> written =
      client_->WriteRows("t", indices, values);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->rows_written, 20000);
  EXPECT_EQ(written->version, 3 + 2);  // After the create's three chunks.

  absl::StatusOr<ReadRowsResult> read = client_->ReadRows("t", indices);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->indices, indices);
  EXPECT_EQ(read->values.data, values);

  absl::StatusOr<WriteResult> range =
      client_->WriteRowRange("t", 10, kDim, Weights(2));
  ASSERT_TRUE(range.ok()) << range.status();
  read = client_->ReadRowRange("t", 10, 12);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_THAT(read->indices, ElementsAre(10, 11));
  EXPECT_EQ(read->values.data, Weights(2));
}

TEST_F(ClientServerTest, RowErrorsKeepTheServersCodeAndMessage) {
  CreateWithWeights("t", 10);
  EXPECT_EQ(client_->WriteRows("t", {3, 3}, Weights(2)).status(),
            absl::InvalidArgumentError(
                "index 3 at position 1 is written twice in one request"));
  EXPECT_EQ(
      client_->ReadRows("t", {10}).status(),
      absl::InvalidArgumentError("index 10 at position 0 is outside [0, 10)"));
  EXPECT_EQ(client_->ReadRows("nope", {1}).status(),
            absl::NotFoundError("table \"nope\" not found"));
  EXPECT_EQ(client_->WriteRows("nope", {1}, Weights(1)).status(),
            absl::NotFoundError("table \"nope\" not found"));
  EXPECT_EQ(client_->WriteRowRange("t", 0, kDim, {}).status(),
            absl::InvalidArgumentError(
                "values must have shape [rows > 0, 16], got [0, 0]"));
}

TEST_F(ClientServerTest, SetOptimizerKeepsTheKindAndRefusesAnother) {
  v1::Optimizer ftrl;
  ftrl.mutable_ftrl()->set_l1(0.5f);
  CreateWithWeights("t", 10, ftrl);
  ftrl.mutable_ftrl()->set_l1(0.25f);
  absl::StatusOr<v1::TableInfo> info = client_->SetOptimizer("t", ftrl);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->spec().optimizer().ftrl().l1(), 0.25f);

  v1::Optimizer sgd;
  sgd.mutable_sgd()->set_lr(0.1f);
  EXPECT_EQ(client_->SetOptimizer("t", sgd).status(),
            absl::FailedPreconditionError(
                "table \"t\" uses ftrl; its optimizer cannot change to sgd"));
  ftrl.mutable_ftrl()->set_lr_power(1.0f);
  EXPECT_EQ(client_->SetOptimizer("t", ftrl).status(),
            absl::InvalidArgumentError(
                "ftrl lr_power must be a finite number <= 0, got 1"));
  EXPECT_EQ(client_->SetOptimizer("nope", sgd).status(),
            absl::NotFoundError("table \"nope\" not found"));
  EXPECT_EQ(client_->GetTable("t")->spec().optimizer().ftrl().l1(), 0.25f);
}

TEST_F(ClientServerTest, TableLifecycleAndItsErrors) {
  CreateWithWeights("a", 4);
  CreateWithWeights("b", 4);
  EXPECT_EQ(client_->CreateTable(Spec("a", 4)).status(),
            absl::AlreadyExistsError("table \"a\" already exists"));
  const absl::Status bad = client_->CreateTable(Spec("c", 0)).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), ::testing::HasSubstr("num_embeddings"));

  absl::StatusOr<std::vector<v1::TableInfo>> tables = client_->ListTables();
  ASSERT_TRUE(tables.ok()) << tables.status();
  ASSERT_THAT(*tables, SizeIs(2));
  EXPECT_EQ((*tables)[0].spec().name(), "a");

  EXPECT_EQ(client_->DeleteTable("a"), absl::OkStatus());
  EXPECT_EQ(client_->DeleteTable("a"),
            absl::NotFoundError("table \"a\" not found"));
  EXPECT_EQ(client_->GetTable("a").status(),
            absl::NotFoundError("table \"a\" not found"));
  tables = client_->ListTables();
  ASSERT_TRUE(tables.ok()) << tables.status();
  ASSERT_THAT(*tables, SizeIs(1));
  EXPECT_EQ((*tables)[0].spec().name(), "b");
}

}  // namespace
}  // namespace embedding
