#include "client/cpp/embedding_client.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_service.h"
#include "tests/client/wire_bytes.h"

namespace embedding {
namespace {

using ::embedding::testing::DecodeFloats;
using ::embedding::testing::DecodeIndicesLe;
using ::embedding::testing::FakeServer;
using ::embedding::testing::FakeService;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::SizeIs;

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()),
                     values.size() * sizeof(float));
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
  EXPECT_EQ(client.status(),
            absl::InvalidArgumentError("server address is empty"));
}

TEST(ConnectTest, NonPositiveMessageSizeIsInvalidArgument) {
  ClientOptions options;
  options.max_message_bytes = 0;
  absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
      EmbeddingClient::Connect("127.0.0.1:1", options);
  EXPECT_EQ(client.status(),
            absl::InvalidArgumentError("max_message_bytes must be > 0, got 0"));
}

TEST(ConnectTest, NegativeRetriesAreInvalidArgument) {
  ClientOptions options;
  options.max_retries = -1;
  EXPECT_EQ(EmbeddingClient::Connect("127.0.0.1:1", options).status(),
            absl::InvalidArgumentError(
                "max_retries and retry_backoff must be >= 0, got -1 and 50ms"));
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
  EXPECT_EQ(service_.lookup_requests.back().table(), "t");
  // As raw little-endian int64s, not varints (CONTRACT.md).
  EXPECT_THAT(service_.lookup_requests.back().indices(), IsEmpty());
  EXPECT_THAT(DecodeIndicesLe(service_.lookup_requests.back().indices_le()),
              ElementsAre(4, 0, 4, 9));
  EXPECT_THAT(service_.lookup_requests.back().shape(), ElementsAre(2, 2));
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
  EXPECT_EQ(service_.lookup_requests.back().dtype(), v1::DTYPE_FLOAT16);

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
  EXPECT_EQ(client->Lookup("t", {0, 1}).status(),
            absl::InternalError("server sent a tensor of 12 bytes that does "
                                "not match its shape"));
}

TEST_F(EmbeddingClientTest, PushSendsGradientAsRawFloatRows) {
  service_.push_response.set_rows_updated(2);
  service_.push_response.set_version(7);
  ClientOptions options;
  options.client_id = "trainer-1";
  std::unique_ptr<EmbeddingClient> client = Connect(options);
  PushGradientsOptions push;
  push.learning_rate = 0.5f;
  push.sequence = 3;
  absl::StatusOr<PushGradientsResult> result =
      client->PushGradients("t", {1, 2}, {1, 2, 3, 4, 5, 6}, push);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->rows_updated, 2);
  EXPECT_EQ(result->version, 7);
  EXPECT_FALSE(result->duplicate);
  EXPECT_EQ(result->sequence, 3u);
  const v1::PushGradientsRequest& request = service_.push_requests.back();
  EXPECT_THAT(request.indices(), IsEmpty());
  EXPECT_THAT(DecodeIndicesLe(request.indices_le()), ElementsAre(1, 2));
  EXPECT_THAT(request.grad().shape(), ElementsAre(2, 3));
  EXPECT_EQ(request.grad().dtype(), v1::DTYPE_FLOAT32);
  EXPECT_THAT(DecodeFloats(request.grad().data()),
              ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_EQ(request.learning_rate(), 0.5f);
  EXPECT_EQ(request.client_id(), "trainer-1");
  EXPECT_EQ(request.sequence(), 3u);
}

TEST_F(EmbeddingClientTest, PushWithoutLearningRateLeavesItUnset) {
  std::unique_ptr<EmbeddingClient> client = Connect();
  ASSERT_TRUE(client->PushGradients("t", {1}, {1, 2}).ok());
  EXPECT_FALSE(service_.push_requests.back().has_learning_rate());
}

TEST_F(EmbeddingClientTest, GradientNotWholeRowsIsInvalidArgumentLocally) {
  std::unique_ptr<EmbeddingClient> client = Connect();
  absl::StatusOr<PushGradientsResult> result =
      client->PushGradients("t", {1, 2}, {1, 2, 3});
  EXPECT_EQ(result.status(),
            absl::InvalidArgumentError(
                "grad has 3 values, which is not a multiple of 2 rows"));
  EXPECT_EQ(service_.calls["PushGradients"], 0);  // Nothing was sent.
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
  // Bags keep repeated int64: an older server would read indices_le with
  // offsets [0] as one empty bag (CONTRACT.md).
  EXPECT_THAT(service_.lookup_bag_requests.back().indices(),
              ElementsAre(1, 2, 3));
  EXPECT_THAT(service_.lookup_bag_requests.back().indices_le(), IsEmpty());
  EXPECT_THAT(service_.lookup_bag_requests.back().offsets(),
              ElementsAre(0, 1, 3));
  EXPECT_THAT(service_.lookup_bag_requests.back().per_sample_weights(),
              ElementsAre(0.5f, 1, 2));
  EXPECT_TRUE(service_.lookup_bag_requests.back().include_last_offset());

  // With include_last_offset, 3 offsets make 2 bags: grad is [2, dim].
  const std::vector<int64_t> max_indices = {1, 3, 2, 2};
  ASSERT_TRUE(
      client->PushBagGradients("t", bags, {1, 2, 3, 4}, max_indices).ok());
  EXPECT_THAT(service_.push_bag_requests.back().grad().shape(),
              ElementsAre(2, 2));
  EXPECT_THAT(service_.push_bag_requests.back().max_indices(),
              ElementsAre(1, 3, 2, 2));
  EXPECT_THAT(service_.push_bag_requests.back().indices(),
              ElementsAre(1, 2, 3));
  EXPECT_THAT(service_.push_bag_requests.back().indices_le(), IsEmpty());
}

TEST_F(EmbeddingClientTest, WriteRowRangeSendsStartRowAndRows) {
  std::unique_ptr<EmbeddingClient> client = Connect();
  absl::StatusOr<WriteResult> result =
      client->WriteRowRange("t", 8, 2, {1, 2, 3, 4});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->rows_written, 2);
  EXPECT_EQ(service_.write_requests.back().start_row(), 8);
  EXPECT_TRUE(service_.write_requests.back().indices().empty());
  EXPECT_THAT(service_.write_requests.back().values().shape(),
              ElementsAre(2, 2));
  EXPECT_EQ(client->WriteRowRange("t", 0, 3, {1, 2, 3, 4}).status(),
            absl::InvalidArgumentError("values has 4 floats, which is not "
                                       "whole rows of dimension 3"));
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
  EXPECT_EQ(service_.read_rows_requests.back().end_row(), 6);
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
  EXPECT_THAT(service_.create_requests.back().initial_weights().shape(),
              ElementsAre(2, 2));
  EXPECT_THAT(
      DecodeFloats(service_.create_requests.back().initial_weights().data()),
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
  const absl::Status status = client->PushGradients("t", {1}, grad).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("larger than max"));
}

// ---- exactly-once pushes ---------------------------------------------------

TEST_F(EmbeddingClientTest, PushesCarryARandomClientIdAndSequencesFromOne) {
  std::unique_ptr<EmbeddingClient> client = Connect();
  std::unique_ptr<EmbeddingClient> other = Connect();
  EXPECT_THAT(client->client_id(), ::testing::MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(client->client_id(), other->client_id());
  const std::vector<int64_t> bag_offsets = {0};
  Bags bags;
  bags.indices = bag_offsets;
  bags.offsets = bag_offsets;
  ASSERT_TRUE(client->PushGradients("t", {1}, {1, 2}).ok());
  ASSERT_TRUE(client->PushBagGradients("t", bags, {1, 2}).ok());
  absl::StatusOr<PushGradientsResult> third =
      client->PushGradients("t", {1}, {1, 2});
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->sequence, 3u);
  ASSERT_THAT(service_.push_requests, SizeIs(2));
  EXPECT_EQ(service_.push_requests[0].client_id(), client->client_id());
  EXPECT_EQ(service_.push_requests[0].sequence(), 1u);
  EXPECT_EQ(service_.push_bag_requests[0].client_id(), client->client_id());
  EXPECT_EQ(service_.push_bag_requests[0].sequence(), 2u);
  EXPECT_EQ(service_.push_requests[1].sequence(), 3u);
}

TEST_F(EmbeddingClientTest, CallersSequenceIsSentAndDoesNotAdvanceTheCounter) {
  std::unique_ptr<EmbeddingClient> client = Connect();
  PushGradientsOptions push;
  push.sequence = 41;
  ASSERT_TRUE(client->PushGradients("t", {1}, {1, 2}, push).ok());
  ASSERT_TRUE(client->PushGradients("t", {1}, {1, 2}).ok());
  EXPECT_EQ(service_.push_requests[0].sequence(), 41u);
  EXPECT_EQ(service_.push_requests[1].sequence(), 1u);
}

// ---- bulk transfers ---------------------------------------------------------

// A 64 KiB message limit leaves 64 KiB - 16 KiB = 49152 bytes per bulk
// message: 655 rows of 16 floats with their index (75 bytes), 768 without.
constexpr int kSmallMessageBytes = 64 << 10;
constexpr int64_t kDim = 16;
constexpr int64_t kRowsWithIndex = 655;
constexpr int64_t kRowsWithoutIndex = 768;

class BulkTest : public EmbeddingClientTest {
 protected:
  void SetUp() override {
    service_.embedding_dim = kDim;
    ClientOptions options;
    options.max_message_bytes = kSmallMessageBytes;
    client_ = Connect(options);
  }

  // Rows [0, rows) of dimension kDim where row r holds r, r + 0.5, ....
  static std::vector<float> Rows(int64_t rows) {
    std::vector<float> values(rows * kDim);
    for (int64_t i = 0; i < rows * kDim; ++i) {
      values[i] = i / kDim + (i % kDim) * 0.5f;
    }
    return values;
  }

  // Row ids and values of every WriteRows request, concatenated.
  void ExpectWritesCarry(const std::vector<int64_t>& ids,
                         const std::vector<float>& values) {
    std::vector<int64_t> sent_ids;
    std::vector<float> sent_values;
    for (const v1::WriteRowsRequest& request : service_.write_requests) {
      EXPECT_LE(request.ByteSizeLong(), kSmallMessageBytes);
      const int64_t rows = request.values().shape(0);
      for (int64_t r = 0; r < rows; ++r) {
        sent_ids.push_back(request.indices().empty() ? request.start_row() + r
                                                     : request.indices(r));
      }
      const std::vector<float> floats = DecodeFloats(request.values().data());
      sent_values.insert(sent_values.end(), floats.begin(), floats.end());
    }
    EXPECT_EQ(sent_ids, ids);
    EXPECT_EQ(sent_values, values);
  }

  std::unique_ptr<EmbeddingClient> client_;
};

TEST_F(BulkTest, WriteRowsSplitsIntoBulkSizedRequestsInOrder) {
  const int64_t rows = 2 * kRowsWithIndex + 10;
  std::vector<int64_t> ids(rows);
  for (int64_t i = 0; i < rows; ++i) ids[i] = rows - 1 - i;
  const std::vector<float> values = Rows(rows);
  absl::StatusOr<WriteResult> result = client_->WriteRows("t", ids, values);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->rows_written, rows);
  EXPECT_EQ(result->version, 3);  // The last chunk's.
  ASSERT_THAT(service_.write_requests, SizeIs(3));
  EXPECT_EQ(service_.write_requests[0].indices_size(), kRowsWithIndex);
  EXPECT_EQ(service_.write_requests[2].indices_size(), 10);
  ExpectWritesCarry(ids, values);
}

TEST_F(BulkTest, WriteRowRangeChunksCountRowsWithoutIndices) {
  const int64_t rows = kRowsWithoutIndex + 1;
  const std::vector<float> values = Rows(rows);
  absl::StatusOr<WriteResult> result =
      client_->WriteRowRange("t", 100, kDim, values);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->rows_written, rows);
  ASSERT_THAT(service_.write_requests, SizeIs(2));
  EXPECT_EQ(service_.write_requests[1].start_row(), 100 + kRowsWithoutIndex);
  std::vector<int64_t> ids(rows);
  for (int64_t i = 0; i < rows; ++i) ids[i] = 100 + i;
  ExpectWritesCarry(ids, values);
}

TEST_F(BulkTest, FailedChunkStopsTheUploadWithItsError) {
  service_.fail_next["WriteRows"] = {
      grpc::Status::OK,
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "values has a NaN")};
  const std::vector<float> values = Rows(3 * kRowsWithoutIndex);
  EXPECT_EQ(client_->WriteRowRange("t", 0, kDim, values).status(),
            absl::InvalidArgumentError("values has a NaN"));
  EXPECT_EQ(service_.calls["WriteRows"], 2);
}

TEST_F(BulkTest, ReadRowsAsksForBulkSizedRepliesAndSplitsLongIndexLists) {
  // (49152 bytes) / (11 bytes per index) = 4468 indices per request.
  std::vector<int64_t> ids(4468 + 1, 7);
  v1::ReadRowsResponse& reply = service_.read_rows_chunks.emplace_back();
  reply.add_indices(7);
  SetTensor({1, kDim}, Rows(1), reply.mutable_values());
  absl::StatusOr<ReadRowsResult> result = client_->ReadRows("t", ids);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_THAT(service_.read_rows_requests, SizeIs(2));
  EXPECT_EQ(service_.read_rows_requests[0].indices_size(), 4468);
  EXPECT_EQ(service_.read_rows_requests[1].indices_size(), 1);
  EXPECT_EQ(service_.read_rows_requests[0].rows_per_message(), kRowsWithIndex);
  // The fake answers each request with its one canned reply.
  EXPECT_THAT(result->indices, ElementsAre(7, 7));
  EXPECT_THAT(result->values.shape, ElementsAre(2, kDim));

  ASSERT_TRUE(client_->ReadRowRange("t", 0, 0).ok());
  EXPECT_EQ(service_.read_rows_requests.back().rows_per_message(),
            kRowsWithIndex);
}

TEST_F(BulkTest, ReadRowsReplyOfAnotherDimensionIsInternal) {
  v1::ReadRowsResponse& reply = service_.read_rows_chunks.emplace_back();
  reply.add_indices(0);
  SetTensor({1, 2}, {1, 2}, reply.mutable_values());
  EXPECT_EQ(client_->ReadRowRange("t", 0, 1).status(),
            absl::InternalError("server sent 1 row ids with values of shape "
                                "[1, 2] for a table of dimension 16"));
}

v1::TableSpec Spec(int64_t rows) {
  v1::TableSpec spec;
  spec.set_name("t");
  spec.set_num_embeddings(rows);
  spec.set_embedding_dim(kDim);
  return spec;
}

TEST_F(BulkTest, CreateTableSendsWeightsInlineWhenTheyFitOneMessage) {
  const std::vector<float> weights = Rows(kRowsWithoutIndex);
  ASSERT_TRUE(client_->CreateTable(Spec(kRowsWithoutIndex), weights).ok());
  ASSERT_THAT(service_.create_requests, SizeIs(1));
  EXPECT_EQ(DecodeFloats(service_.create_requests[0].initial_weights().data()),
            weights);
  EXPECT_EQ(service_.calls["WriteRows"], 0);
}

TEST_F(BulkTest, CreateTableWritesLargeWeightsInChunksWithThePaddingRowZero) {
  const int64_t rows = kRowsWithoutIndex + 5;
  v1::TableSpec spec = Spec(rows);
  spec.set_padding_idx(-1);  // The last row, in the second chunk.
  std::vector<float> weights = Rows(rows);
  absl::StatusOr<v1::TableInfo> info = client_->CreateTable(spec, weights);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->spec().name(), "t");
  ASSERT_THAT(service_.create_requests, SizeIs(1));
  const v1::CreateTableRequest& create = service_.create_requests[0];
  EXPECT_FALSE(create.has_initial_weights());
  EXPECT_EQ(create.spec().initializer().constant().value(), 0.0f);
  EXPECT_TRUE(create.spec().initializer().has_constant());
  EXPECT_EQ(create.spec().padding_idx(), -1);
  std::vector<int64_t> ids(rows);
  for (int64_t i = 0; i < rows; ++i) ids[i] = i;
  std::fill_n(weights.end() - kDim, kDim, 0.0f);
  ExpectWritesCarry(ids, weights);
  EXPECT_EQ(service_.calls["GetTable"], 1);  // The counters after the upload.
}

TEST_F(BulkTest, CreateTableDeletesTheTableWhenTheUploadFails) {
  service_.fail_next["WriteRows"] = {
      grpc::Status::OK,
      grpc::Status(grpc::StatusCode::NOT_FOUND, "table \"t\" not found")};
  service_.fail_next["DeleteTable"] = {
      grpc::Status(grpc::StatusCode::NOT_FOUND, "table \"t\" not found")};
  const int64_t rows = 2 * kRowsWithoutIndex;
  EXPECT_EQ(client_->CreateTable(Spec(rows), Rows(rows)).status(),
            absl::NotFoundError("table \"t\" not found"));
  EXPECT_EQ(service_.calls["DeleteTable"], 1);
}

TEST_F(BulkTest, CreateTableWithWeightsOfTheWrongSizeSendsNothing) {
  EXPECT_EQ(client_->CreateTable(Spec(10), Rows(9)).status(),
            absl::InvalidArgumentError(
                "initial_weights has 144 values, expected num_embeddings x "
                "embedding_dim = 10 x 16"));
  EXPECT_EQ(service_.calls["CreateTable"], 0);
}

// ---- retries ----------------------------------------------------------------

class RetryTest : public EmbeddingClientTest {
 protected:
  void SetUp() override {
    SetTensor({1, 2}, {1, 2}, service_.lookup_response.mutable_embeddings());
    SetTensor({1, 2}, {1, 2},
              service_.lookup_bag_response.mutable_embeddings());
    v1::ReadRowsResponse& reply = service_.read_rows_chunks.emplace_back();
    reply.add_indices(0);
    SetTensor({1, 2}, {1, 2}, reply.mutable_values());
    ClientOptions options;
    options.retry_backoff = absl::Milliseconds(1);
    client_ = Connect(options);
  }

  // Runs the client method `method` calls once.
  absl::Status Run(const std::string& method) {
    static const std::vector<int64_t> kOne = {0};
    Bags bags;
    bags.indices = kOne;
    bags.offsets = kOne;
    v1::TableSpec spec;
    spec.set_name("t");
    if (method == "GetTable") return client_->GetTable("t").status();
    if (method == "ListTables") return client_->ListTables().status();
    if (method == "Lookup") return client_->Lookup("t", {0}).status();
    if (method == "LookupBag") return client_->LookupBag("t", bags).status();
    if (method == "ReadRows") return client_->ReadRows("t", {0}).status();
    if (method == "PushGradients") {
      return client_->PushGradients("t", {0}, {1, 2}).status();
    }
    if (method == "PushBagGradients") {
      return client_->PushBagGradients("t", bags, {1, 2}).status();
    }
    if (method == "CreateTable") return client_->CreateTable(spec).status();
    if (method == "DeleteTable") return client_->DeleteTable("t");
    if (method == "WriteRows")
      return client_->WriteRows("t", {0}, {1, 2}).status();
    if (method == "SetOptimizer") {
      return client_->SetOptimizer("t", v1::Optimizer()).status();
    }
    if (method == "SaveCheckpoint") return client_->SaveCheckpoint().status();
    return absl::InternalError("no such method " + method);
  }

  std::unique_ptr<EmbeddingClient> client_;
};

const char* const kRetried[] = {
    "GetTable", "ListTables",    "Lookup",          "LookupBag",
    "ReadRows", "PushGradients", "PushBagGradients"};
const char* const kNotRetried[] = {"CreateTable", "DeleteTable", "WriteRows",
                                   "SetOptimizer", "SaveCheckpoint"};

TEST_F(RetryTest, RetriedMethodsSucceedAfterUnavailable) {
  for (const char* method : kRetried) {
    for (int k : {1, 3}) {  // 3 = max_retries: the last attempt succeeds.
      service_.calls.clear();
      service_.fail_next[method].assign(k, ::embedding::testing::Unavailable());
      EXPECT_EQ(Run(method), absl::OkStatus()) << method << " k=" << k;
      EXPECT_EQ(service_.calls[method], k + 1) << method << " k=" << k;
    }
  }
}

TEST_F(RetryTest, RetriesStopAfterMaxRetries) {
  for (const char* method : kRetried) {
    service_.calls.clear();
    service_.fail_next[method].assign(5, ::embedding::testing::Unavailable());
    EXPECT_EQ(Run(method), absl::UnavailableError("fake: not serving yet"))
        << method;
    EXPECT_EQ(service_.calls[method], 1 + kDefaultMaxRetries) << method;
    service_.fail_next[method].clear();
  }
}

TEST_F(RetryTest, OtherMethodsFailAtOnce) {
  for (const char* method : kNotRetried) {
    service_.calls.clear();
    service_.fail_next[method] = {::embedding::testing::Unavailable()};
    EXPECT_EQ(Run(method), absl::UnavailableError("fake: not serving yet"))
        << method;
    EXPECT_EQ(service_.calls[method], 1) << method;
  }
}

TEST_F(RetryTest, InvalidArgumentIsNeverRetried) {
  for (const char* method : kRetried) {
    service_.calls.clear();
    service_.fail_next[method] = {
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad index")};
    EXPECT_EQ(Run(method), absl::InvalidArgumentError("bad index")) << method;
    EXPECT_EQ(service_.calls[method], 1) << method;
  }
}

TEST_F(RetryTest, RetriedPushKeepsItsClientIdAndSequence) {
  service_.fail_next["PushGradients"].assign(
      2, ::embedding::testing::Unavailable());
  absl::StatusOr<PushGradientsResult> pushed =
      client_->PushGradients("t", {0}, {1, 2});
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  ASSERT_THAT(service_.push_requests, SizeIs(3));
  for (const v1::PushGradientsRequest& request : service_.push_requests) {
    EXPECT_EQ(request.client_id(), client_->client_id());
    EXPECT_EQ(request.sequence(), 1u);
  }
  ASSERT_TRUE(client_->PushGradients("t", {0}, {1, 2}).ok());
  EXPECT_EQ(service_.push_requests.back().sequence(), 2u);
}

TEST_F(RetryTest, ReadRowsStartsTheWholeReadAgain) {
  // The first attempt breaks after its reply: nothing of it is kept.
  service_.fail_next["ReadRows"] = {::embedding::testing::Unavailable()};
  absl::StatusOr<ReadRowsResult> result = client_->ReadRowRange("t", 0, 0);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(result->indices, ElementsAre(0));
  EXPECT_EQ(service_.calls["ReadRows"], 2);
}

TEST_F(RetryTest, ChunkedReadResumesAfterTheLastRowHandedOver) {
  // The fake answers every attempt with row 0 of a [0, 2) read; the first
  // attempt then breaks. The retry must ask for the rows after row 0 only.
  service_.fail_next["ReadRows"] = {::embedding::testing::Unavailable()};
  std::vector<int64_t> seen;
  const absl::Status status = client_->ReadRowRangeInChunks(
      "t", 0, 2, [&](const ReadRowsResult& chunk) {
        seen.insert(seen.end(), chunk.indices.begin(), chunk.indices.end());
        return absl::OkStatus();
      });
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(service_.read_rows_requests.size(), 2u);
  EXPECT_EQ(service_.read_rows_requests[0].start_row(), 0);
  EXPECT_EQ(service_.read_rows_requests[1].start_row(), 1);
  EXPECT_EQ(service_.read_rows_requests[1].end_row(), 2);
  EXPECT_THAT(seen, ElementsAre(0, 0));
}

TEST_F(RetryTest, ChunkedReadStopsAtTheSinksErrorWithoutRetrying) {
  const absl::Status sink_error = absl::UnavailableError("disk went away");
  int calls = 0;
  const absl::Status status =
      client_->ReadRowRangeInChunks("t", 0, 0, [&](const ReadRowsResult&) {
        ++calls;
        return sink_error;
      });
  EXPECT_EQ(status, sink_error);
  EXPECT_EQ(calls, 1);  // A retry would have handed the canned row again.
}

TEST_F(EmbeddingClientTest, SaveCheckpointSendsTablesAndKind) {
  v1::SaveCheckpointResponse::Saved* saved =
      service_.save_checkpoint_response.add_saved();
  saved->set_table("b");
  saved->set_rows(7);
  std::unique_ptr<EmbeddingClient> client = Connect();
  const std::vector<std::string> tables = {"b", "a"};
  absl::StatusOr<v1::SaveCheckpointResponse> response =
      client->SaveCheckpoint(tables, /*incremental=*/true);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->saved(0).rows(), 7);
  ASSERT_EQ(service_.save_checkpoint_requests.size(), 1u);
  EXPECT_THAT(service_.save_checkpoint_requests[0].tables(),
              ElementsAre("b", "a"));
  EXPECT_TRUE(service_.save_checkpoint_requests[0].incremental());
  ASSERT_TRUE(client->SaveCheckpoint().ok());
  EXPECT_THAT(service_.save_checkpoint_requests[1].tables(),
              ::testing::IsEmpty());
  EXPECT_FALSE(service_.save_checkpoint_requests[1].incremental());
}

TEST_F(EmbeddingClientTest, RetriesBackOffByDoubling) {
  service_.fail_next["GetTable"].assign(2, ::embedding::testing::Unavailable());
  std::unique_ptr<EmbeddingClient> client = Connect();
  const absl::Time start = absl::Now();
  ASSERT_TRUE(client->GetTable("t").ok());
  // 50 ms before retry 0, 100 ms before retry 1.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150));
}

TEST_F(EmbeddingClientTest, EachAttemptGetsItsOwnDeadline) {
  service_.delay = absl::Milliseconds(200);
  service_.fail_next["Lookup"] = {::embedding::testing::Unavailable()};
  SetTensor({1, 2}, {1, 2}, service_.lookup_response.mutable_embeddings());
  ClientOptions options;
  options.default_timeout = absl::Milliseconds(300);  // < two attempts.
  options.retry_backoff = absl::Milliseconds(1);
  std::unique_ptr<EmbeddingClient> client = Connect(options);
  EXPECT_TRUE(client->Lookup("t", {0}).ok());
  EXPECT_EQ(service_.calls["Lookup"], 2);
}

}  // namespace
}  // namespace embedding
