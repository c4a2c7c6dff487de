#include "client/cpp/embedding_client.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_service.h"

namespace embedding {
namespace {

using ::embedding::testing::FakeServer;
using ::embedding::testing::FakeService;
using ::testing::ElementsAre;
using ::testing::Pair;

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()),
                     values.size() * sizeof(float));
}

std::vector<float> BytesToFloats(const std::string& bytes) {
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

void SetTensor(std::vector<int64_t> shape, const std::vector<float>& values,
               v1::Tensor* tensor) {
  tensor->mutable_shape()->Add(shape.begin(), shape.end());
  tensor->set_data(FloatBytes(values));
}

class EmbeddingClientTest : public ::testing::Test {
 protected:
  std::unique_ptr<EmbeddingClient> Connect(const ClientOptions& options = {}) {
    absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
        EmbeddingClient::Connect(server_.address(), options);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  FakeService service_;
  FakeServer server_{&service_};
};

TEST(ConnectTest, EmptyAddressIsInvalidArgument) {
  absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
      EmbeddingClient::Connect("");
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ConnectTest, NonPositiveMessageSizeIsInvalidArgument) {
  ClientOptions options;
  options.max_message_bytes = 0;
  absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
      EmbeddingClient::Connect("127.0.0.1:1", options);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(client.status().message(), ::testing::HasSubstr("max_message"));
}

TEST(ConnectTest, UnreachableServerIsUnavailableOnFirstCall) {
  absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
      EmbeddingClient::Connect("127.0.0.1:1");
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->ListTables().status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(EmbeddingClientTest, ServerErrorKeepsCodeAndMessage) {
  service_.status =
      grpc::Status(grpc::StatusCode::NOT_FOUND, "table \"x\" not found");
  std::unique_ptr<EmbeddingClient> client = Connect();
  EXPECT_EQ(client->GetTable("x").status(),
            absl::NotFoundError("table \"x\" not found"));
  EXPECT_EQ(client->DeleteTable("x"),
            absl::NotFoundError("table \"x\" not found"));
  EXPECT_EQ(client->ReadRows("x", {1}).status(),
            absl::NotFoundError("table \"x\" not found"));
}

TEST_F(EmbeddingClientTest, LookupSendsIndicesAndShapeAndDecodesRows) {
  SetTensor({2, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
            service_.lookup_response.mutable_embeddings());
  std::unique_ptr<EmbeddingClient> client = Connect();
  LookupOptions options;
  options.shape = {2, 2};
  absl::StatusOr<FloatTensor> rows = client->Lookup("t", {4, 0, 4, 9}, options);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_THAT(rows->shape, ElementsAre(2, 2, 3));
  EXPECT_EQ(rows->data.size(), 12u);
  EXPECT_EQ(rows->data[11], 12.0f);
  EXPECT_EQ(service_.lookup_request.table(), "t");
  EXPECT_THAT(service_.lookup_request.indices(), ElementsAre(4, 0, 4, 9));
  EXPECT_THAT(service_.lookup_request.shape(), ElementsAre(2, 2));
}

TEST_F(EmbeddingClientTest, LookupDecodesFloat16AndBFloat16) {
  v1::Tensor* tensor = service_.lookup_response.mutable_embeddings();
  tensor->set_dtype(v1::DTYPE_FLOAT16);
  tensor->add_shape(1);
  tensor->add_shape(6);
  // 1, -2, 0.5, smallest subnormal 2^-24, 65504 (max), +inf.
  const uint16_t half[] = {0x3c00, 0xc000, 0x3800, 0x0001, 0x7bff, 0x7c00};
  tensor->set_data(
      std::string(reinterpret_cast<const char*>(half), sizeof(half)));
  std::unique_ptr<EmbeddingClient> client = Connect();
  LookupOptions options;
  options.dtype = v1::DTYPE_FLOAT16;
  absl::StatusOr<FloatTensor> rows = client->Lookup("t", {0}, options);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_THAT(rows->data, ElementsAre(1.0f, -2.0f, 0.5f, std::ldexp(1.0f, -24),
                                      65504.0f, INFINITY));
  EXPECT_EQ(service_.lookup_request.dtype(), v1::DTYPE_FLOAT16);

  tensor->set_dtype(v1::DTYPE_BFLOAT16);
  tensor->set_shape(1, 2);
  const uint16_t bf16[] = {0x3f80, 0xc0a0};  // 1, -5.
  tensor->set_data(
      std::string(reinterpret_cast<const char*>(bf16), sizeof(bf16)));
  options.dtype = v1::DTYPE_BFLOAT16;
  rows = client->Lookup("t", {0}, options);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_THAT(rows->data, ElementsAre(1.0f, -5.0f));
}

TEST_F(EmbeddingClientTest, MalformedResponseTensorIsInternal) {
  SetTensor({2, 3}, {1, 2, 3}, service_.lookup_response.mutable_embeddings());
  std::unique_ptr<EmbeddingClient> client = Connect();
  EXPECT_EQ(client->Lookup("t", {0, 1}).status().code(),
            absl::StatusCode::kInternal);
}

TEST_F(EmbeddingClientTest, PushSendsGradientAsRawFloatRows) {
  service_.push_response.set_rows_updated(2);
  service_.push_response.set_version(7);
  std::unique_ptr<EmbeddingClient> client = Connect();
  PushOptions push;
  push.learning_rate = 0.5f;
  push.client_id = "trainer-1";
  push.sequence = 3;
  absl::StatusOr<PushResult> result =
      client->PushGradients("t", {1, 2}, {1, 2, 3, 4, 5, 6}, push);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->rows_updated, 2);
  EXPECT_EQ(result->version, 7);
  EXPECT_FALSE(result->duplicate);
  const v1::PushGradientsRequest& request = service_.push_request;
  EXPECT_THAT(request.grad().shape(), ElementsAre(2, 3));
  EXPECT_EQ(request.grad().dtype(), v1::DTYPE_FLOAT32);
  EXPECT_THAT(BytesToFloats(request.grad().data()),
              ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_EQ(request.learning_rate(), 0.5f);
  EXPECT_EQ(request.client_id(), "trainer-1");
  EXPECT_EQ(request.sequence(), 3u);
}

TEST_F(EmbeddingClientTest, PushWithoutLearningRateLeavesItUnset) {
  std::unique_ptr<EmbeddingClient> client = Connect();
  ASSERT_TRUE(client->PushGradients("t", {1}, {1, 2}).ok());
  EXPECT_FALSE(service_.push_request.has_learning_rate());
}

TEST_F(EmbeddingClientTest, GradientNotWholeRowsIsInvalidArgumentLocally) {
  std::unique_ptr<EmbeddingClient> client = Connect();
  absl::StatusOr<PushResult> result =
      client->PushGradients("t", {1, 2}, {1, 2, 3});
  EXPECT_EQ(result.status(),
            absl::InvalidArgumentError(
                "grad has 3 values, which is not a multiple of 2 rows"));
  EXPECT_EQ(service_.push_request.table(), "");  // Nothing was sent.
}

TEST_F(EmbeddingClientTest, BagsTravelWithTheirFieldsAndMaxIndices) {
  SetTensor({2, 2}, {1, 2, 3, 4},
            service_.lookup_bag_response.mutable_embeddings());
  service_.lookup_bag_response.add_max_indices(5);
  std::unique_ptr<EmbeddingClient> client = Connect();
  const std::vector<int64_t> indices = {1, 2, 3};
  const std::vector<int64_t> offsets = {0, 1, 3};
  const std::vector<float> weights = {0.5f, 1, 2};
  Bags bags{indices, offsets, v1::BAG_MODE_SUM, weights, true};
  absl::StatusOr<BagLookupResult> result = client->LookupBag("t", bags);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->embeddings.shape, ElementsAre(2, 2));
  EXPECT_THAT(result->max_indices, ElementsAre(5));
  EXPECT_THAT(service_.lookup_bag_request.offsets(), ElementsAre(0, 1, 3));
  EXPECT_THAT(service_.lookup_bag_request.per_sample_weights(),
              ElementsAre(0.5f, 1, 2));
  EXPECT_TRUE(service_.lookup_bag_request.include_last_offset());

  // With include_last_offset, 3 offsets make 2 bags: grad is [2, dim].
  const std::vector<int64_t> max_indices = {1, 3, 2, 2};
  ASSERT_TRUE(
      client->PushBagGradients("t", bags, {1, 2, 3, 4}, max_indices).ok());
  EXPECT_THAT(service_.push_bag_request.grad().shape(), ElementsAre(2, 2));
  EXPECT_THAT(service_.push_bag_request.max_indices(), ElementsAre(1, 3, 2, 2));
}

TEST_F(EmbeddingClientTest, WriteRowRangeSendsStartRowAndRows) {
  std::unique_ptr<EmbeddingClient> client = Connect();
  absl::StatusOr<WriteResult> result =
      client->WriteRowRange("t", 8, 2, {1, 2, 3, 4});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->rows_written, 2);
  EXPECT_EQ(service_.write_request.start_row(), 8);
  EXPECT_TRUE(service_.write_request.indices().empty());
  EXPECT_THAT(service_.write_request.values().shape(), ElementsAre(2, 2));
  EXPECT_EQ(client->WriteRowRange("t", 0, 3, {1, 2, 3, 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(EmbeddingClientTest, ReadRowsConcatenatesTheStream) {
  for (int chunk = 0; chunk < 3; ++chunk) {
    v1::ReadRowsResponse& response = service_.read_rows_chunks.emplace_back();
    response.add_indices(2 * chunk);
    response.add_indices(2 * chunk + 1);
    SetTensor(
        {2, 2},
        {chunk * 4.0f, chunk * 4.0f + 1, chunk * 4.0f + 2, chunk * 4.0f + 3},
        response.mutable_values());
  }
  std::unique_ptr<EmbeddingClient> client = Connect();
  absl::StatusOr<ReadRowsResult> result = client->ReadRowRange("t", 0, 6);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->indices, ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_THAT(result->values.shape, ElementsAre(6, 2));
  ASSERT_EQ(result->values.data.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(result->values.data[i], i);
  EXPECT_EQ(service_.read_rows_request.end_row(), 6);
}

TEST_F(EmbeddingClientTest, CreateTableUploadsInitialWeights) {
  std::unique_ptr<EmbeddingClient> client = Connect();
  v1::TableSpec spec;
  spec.set_name("t");
  spec.set_num_embeddings(2);
  spec.set_embedding_dim(2);
  absl::StatusOr<v1::TableInfo> info = client->CreateTable(spec, {1, 2, 3, 4});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->spec().name(), "t");
  EXPECT_THAT(service_.create_request.initial_weights().shape(),
              ElementsAre(2, 2));
  EXPECT_THAT(BytesToFloats(service_.create_request.initial_weights().data()),
              ElementsAre(1, 2, 3, 4));
}

TEST_F(EmbeddingClientTest, ListTablesReturnsEveryTable) {
  service_.tables.resize(2);
  service_.tables[0].mutable_spec()->set_name("a");
  service_.tables[1].mutable_spec()->set_name("b");
  std::unique_ptr<EmbeddingClient> client = Connect();
  absl::StatusOr<std::vector<v1::TableInfo>> tables = client->ListTables();
  ASSERT_TRUE(tables.ok()) << tables.status();
  ASSERT_EQ(tables->size(), 2u);
  EXPECT_EQ((*tables)[1].spec().name(), "b");
}

TEST_F(EmbeddingClientTest, PerCallTimeoutOverridesTheDefault) {
  service_.delay = absl::Milliseconds(500);
  std::unique_ptr<EmbeddingClient> client = Connect();
  CallOptions call;
  call.timeout = absl::Milliseconds(50);
  EXPECT_EQ(client->GetTable("t", call).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(client->GetTable("t").ok());
}

TEST_F(EmbeddingClientTest, DefaultTimeoutApplies) {
  service_.delay = absl::Milliseconds(500);
  ClientOptions options;
  options.default_timeout = absl::Milliseconds(50);
  std::unique_ptr<EmbeddingClient> client = Connect(options);
  EXPECT_EQ(client->ListTables().status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(EmbeddingClientTest, SendsClientAndCallMetadata) {
  ClientOptions options;
  options.metadata = {{"authorization", "Bearer x"}};
  std::unique_ptr<EmbeddingClient> client = Connect(options);
  CallOptions call;
  call.metadata = {{"x-request-id", "42"}};
  ASSERT_TRUE(client->GetTable("t", call).ok());
  EXPECT_THAT(service_.metadata,
              ::testing::IsSupersetOf({Pair("authorization", "Bearer x"),
                                       Pair("x-request-id", "42")}));
}

TEST_F(EmbeddingClientTest, MessagesAboveTheMaximumAreRefused) {
  ClientOptions options;
  options.max_message_bytes = 1024;
  std::unique_ptr<EmbeddingClient> client = Connect(options);
  std::vector<float> grad(1024, 1.0f);
  EXPECT_EQ(client->PushGradients("t", {1}, grad).status().code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace embedding
