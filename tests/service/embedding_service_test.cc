// Every bad input gets its exact gRPC code and a message saying what was
// wrong, and leaves the table exactly as it was.
#include <grpcpp/grpcpp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "embedding/v1/embedding_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/service/server.h"
#include "tests/service/service_fixture.h"

namespace embedding {
namespace {

constexpr int64_t kRows = 20;
constexpr int64_t kDim = 4;
constexpr int64_t kMaxIndices = 1000;

v1::Tensor FloatTensor(std::vector<int64_t> shape,
                       const std::vector<float>& values) {
  v1::Tensor tensor;
  tensor.set_dtype(v1::DTYPE_FLOAT32);
  for (int64_t d : shape) tensor.add_shape(d);
  tensor.set_data(std::string(reinterpret_cast<const char*>(values.data()),
                              values.size() * sizeof(float)));
  return tensor;
}

class EmbeddingServiceTest : public testing::ServiceFixture {
 protected:
  void SetUp() override {
    ServerOptions options = LoopbackOptions();
    options.service.max_indices_per_request = kMaxIndices;
    options.service.max_message_bytes = 1 << 20;
    ASSERT_NO_FATAL_FAILURE(StartServer(options));
    v1::CreateTableRequest request;
    request.mutable_spec()->set_name("t");
    request.mutable_spec()->set_num_embeddings(kRows);
    request.mutable_spec()->set_embedding_dim(kDim);
    request.mutable_spec()->set_padding_idx(0);
    ASSERT_TRUE(Call(&v1::EmbeddingService::Stub::CreateTable, request).ok());
  }

  template <typename Method, typename Request>
  grpc::Status Call(Method method, const Request& request) {
    grpc::ClientContext context;
    return CallWith(method, request, &context);
  }

  template <typename Response, typename Request>
  grpc::Status CallWith(grpc::Status (v1::EmbeddingService::Stub::*method)(
                            grpc::ClientContext*, const Request&, Response*),
                        const Request& request, grpc::ClientContext* context) {
    Response response;
    return (stub_.get()->*method)(context, request, &response);
  }

  v1::PushGradientsRequest Push(std::vector<int64_t> indices) {
    v1::PushGradientsRequest request;
    request.set_table("t");
    request.mutable_indices()->Add(indices.begin(), indices.end());
    *request.mutable_grad() =
        FloatTensor({static_cast<int64_t>(indices.size()), kDim},
                    std::vector<float>(indices.size() * kDim, 0.5f));
    return request;
  }

  v1::LookupRequest Lookup(std::vector<int64_t> indices) {
    v1::LookupRequest request;
    request.set_table("t");
    request.mutable_indices()->Add(indices.begin(), indices.end());
    return request;
  }

  v1::PushBagGradientsRequest BagPush(std::vector<int64_t> indices,
                                      std::vector<int64_t> offsets,
                                      v1::BagMode mode, int64_t bags) {
    v1::PushBagGradientsRequest request;
    request.set_table("t");
    request.mutable_indices()->Add(indices.begin(), indices.end());
    request.mutable_offsets()->Add(offsets.begin(), offsets.end());
    request.set_mode(mode);
    *request.mutable_grad() =
        FloatTensor({bags, kDim}, std::vector<float>(bags * kDim, 1.0f));
    return request;
  }

  grpc::Status DoPush(const v1::PushGradientsRequest& request) {
    return Call(&v1::EmbeddingService::Stub::PushGradients, request);
  }
  grpc::Status DoBagPush(const v1::PushBagGradientsRequest& request) {
    return Call(&v1::EmbeddingService::Stub::PushBagGradients, request);
  }
};

using Stub = v1::EmbeddingService::Stub;

TEST_F(EmbeddingServiceTest, LookupReturnsIndexShapePlusDim) {
  v1::LookupRequest request = Lookup({1, 2, 3, 4, 5, 6});
  request.add_shape(2);
  request.add_shape(3);
  grpc::ClientContext context;
  v1::LookupResponse response;
  ASSERT_TRUE(stub_->Lookup(&context, request, &response).ok());
  EXPECT_THAT(response.embeddings().shape(),
              ::testing::ElementsAre(2, 3, kDim));
  EXPECT_EQ(response.embeddings().data().size(), 6 * kDim * sizeof(float));
}

TEST_F(EmbeddingServiceTest, LookupStreamAnswersInOrderAndStopsAtABadRequest) {
  grpc::ClientContext context;
  auto stream = stub_->LookupStream(&context);
  std::vector<std::string> expected;
  for (const std::vector<int64_t>& indices :
       {std::vector<int64_t>{1, 2}, std::vector<int64_t>{3}}) {
    grpc::ClientContext unary_context;
    v1::LookupResponse unary;
    ASSERT_TRUE(stub_->Lookup(&unary_context, Lookup(indices), &unary).ok());
    expected.push_back(unary.embeddings().data());
    ASSERT_TRUE(stream->Write(Lookup(indices)));
  }
  v1::LookupResponse response;
  for (const std::string& data : expected) {
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.embeddings().data(), data);
  }
  ASSERT_TRUE(stream->Write(Lookup({kRows})));
  EXPECT_FALSE(stream->Read(&response));
  ExpectError(stream->Finish(), grpc::StatusCode::INVALID_ARGUMENT,
              absl::StrCat("index ", kRows, " at position 0"));
}

TEST_F(EmbeddingServiceTest, UnknownTableIsNotFound) {
  const testing::TableState before = ReadState("t");
  v1::LookupRequest lookup = Lookup({1});
  lookup.set_table("missing");
  ExpectError(Call(&Stub::Lookup, lookup), grpc::StatusCode::NOT_FOUND,
              "table \"missing\" not found");
  v1::PushGradientsRequest push = Push({1});
  push.set_table("missing");
  ExpectError(DoPush(push), grpc::StatusCode::NOT_FOUND, "missing");
  v1::GetTableRequest get;
  get.set_name("missing");
  ExpectError(Call(&Stub::GetTable, get), grpc::StatusCode::NOT_FOUND,
              "missing");
  v1::DeleteTableRequest remove;
  remove.set_name("missing");
  ExpectError(Call(&Stub::DeleteTable, remove), grpc::StatusCode::NOT_FOUND,
              "missing");
  EXPECT_EQ(ReadState("t"), before);
}

TEST_F(EmbeddingServiceTest, DuplicateCreateIsAlreadyExistsAndKeepsTable) {
  const testing::TableState before = ReadState("t");
  v1::CreateTableRequest request;
  request.mutable_spec()->set_name("t");
  request.mutable_spec()->set_num_embeddings(3);
  request.mutable_spec()->set_embedding_dim(2);
  ExpectError(Call(&Stub::CreateTable, request),
              grpc::StatusCode::ALREADY_EXISTS, "table \"t\" already exists");
  EXPECT_EQ(ReadState("t"), before);
}

TEST_F(EmbeddingServiceTest, OutOfRangeIndexNamesIndexAndPosition) {
  const testing::TableState before = ReadState("t");
  ExpectError(Call(&Stub::Lookup, Lookup({3, kRows})),
              grpc::StatusCode::INVALID_ARGUMENT,
              absl::StrCat("index ", kRows, " at position 1"));
  ExpectError(DoPush(Push({5, 6, -3})), grpc::StatusCode::INVALID_ARGUMENT,
              "index -3 at position 2");
  EXPECT_EQ(ReadState("t"), before);
}

TEST_F(EmbeddingServiceTest, BadGradientsAreInvalidArgumentAndChangeNothing) {
  const testing::TableState before = ReadState("t");
  v1::PushGradientsRequest wrong_shape = Push({1, 2});
  *wrong_shape.mutable_grad() =
      FloatTensor({2, kDim + 1}, std::vector<float>(2 * (kDim + 1), 1.0f));
  ExpectError(DoPush(wrong_shape), grpc::StatusCode::INVALID_ARGUMENT,
              "expected [2, 4]");

  v1::PushGradientsRequest short_data = Push({1, 2});
  short_data.mutable_grad()->mutable_data()->resize(7);
  ExpectError(DoPush(short_data), grpc::StatusCode::INVALID_ARGUMENT,
              "7 bytes");

  v1::PushGradientsRequest half = Push({1, 2});
  half.mutable_grad()->set_dtype(v1::DTYPE_FLOAT16);
  ExpectError(DoPush(half), grpc::StatusCode::INVALID_ARGUMENT,
              "must be float32, got DTYPE_FLOAT16");

  for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity()}) {
    std::vector<float> values(2 * kDim, 1.0f);
    values[kDim + 3] = bad;
    v1::PushGradientsRequest request = Push({1, 2});
    *request.mutable_grad() = FloatTensor({2, kDim}, values);
    ExpectError(DoPush(request), grpc::StatusCode::INVALID_ARGUMENT,
                "non-finite value");
  }

  v1::PushGradientsRequest bad_lr = Push({1});
  bad_lr.set_learning_rate(-0.1f);
  ExpectError(DoPush(bad_lr), grpc::StatusCode::INVALID_ARGUMENT,
              "learning_rate must be");
  EXPECT_EQ(ReadState("t"), before);
}

// A shard that holds none of a sharded push's rows gets an empty push, so
// that every shard counts the step (SparseAdam's bias correction, Adagrad's
// lr_decay): it counts a step and changes no row.
TEST_F(EmbeddingServiceTest, EmptyPushCountsAStepAndChangesNoRow) {
  const testing::TableState before = ReadState("t");
  ASSERT_TRUE(DoPush(Push({})).ok());
  const testing::TableState after = ReadState("t");
  EXPECT_EQ(after.rows, before.rows);
  EXPECT_EQ(after.step, before.step + 1);
  EXPECT_EQ(after.version, before.version + 1);
}

TEST_F(EmbeddingServiceTest, EmptyAndOversizedRequestsAreRejected) {
  const testing::TableState before = ReadState("t");
  ExpectError(Call(&Stub::Lookup, Lookup({})),
              grpc::StatusCode::INVALID_ARGUMENT, "indices is empty");
  std::vector<int64_t> many(kMaxIndices + 1, 1);
  ExpectError(Call(&Stub::Lookup, Lookup(many)),
              grpc::StatusCode::RESOURCE_EXHAUSTED, "limit is 1000");
  ExpectError(DoPush(Push(many)), grpc::StatusCode::RESOURCE_EXHAUSTED,
              "limit is 1000");
  EXPECT_EQ(ReadState("t"), before);
}

TEST_F(EmbeddingServiceTest, LookupShapeMustHoldTheIndices) {
  v1::LookupRequest request = Lookup({1, 2, 3});
  request.add_shape(2);
  request.add_shape(2);
  ExpectError(Call(&Stub::Lookup, request), grpc::StatusCode::INVALID_ARGUMENT,
              "does not hold the 3 indices");
  v1::LookupRequest bad_dtype = Lookup({1});
  bad_dtype.set_dtype(static_cast<v1::DType>(42));
  ExpectError(Call(&Stub::Lookup, bad_dtype),
              grpc::StatusCode::INVALID_ARGUMENT, "unknown dtype 42");
}

TEST_F(EmbeddingServiceTest, LookupShapeRankIsCappedAndNeverEchoedWhole) {
  // 100,000 dimensions of 1 hold the one index, but each would cost an
  // int64 in the response: refused by rank alone.
  v1::LookupRequest deep = Lookup({1});
  for (int i = 0; i < 100000; ++i) deep.add_shape(1);
  grpc::Status status = Call(&Stub::Lookup, deep);
  ExpectError(status, grpc::StatusCode::INVALID_ARGUMENT,
              "shape has 100000 dimensions; at most 16 are allowed");
  EXPECT_LT(status.error_message().size(), 1024u);
  v1::LookupRequest seventeen = Lookup({1});
  for (int i = 0; i < 17; ++i) seventeen.add_shape(1);
  ExpectError(Call(&Stub::Lookup, seventeen),
              grpc::StatusCode::INVALID_ARGUMENT,
              "shape has 17 dimensions; at most 16 are allowed");
  v1::LookupRequest sixteen = Lookup({1});
  for (int i = 0; i < 16; ++i) sixteen.add_shape(1);
  EXPECT_TRUE(Call(&Stub::Lookup, sixteen).ok());
  // A gradient tensor's shape is capped the same way.
  v1::PushGradientsRequest push = Push({1});
  push.mutable_grad()->clear_shape();
  for (int i = 0; i < 100000; ++i) push.mutable_grad()->add_shape(1);
  push.mutable_grad()->add_shape(kDim);
  status = DoPush(push);
  ExpectError(status, grpc::StatusCode::INVALID_ARGUMENT,
              "grad has 100001 dimensions; at most 16 are allowed");
  EXPECT_LT(status.error_message().size(), 1024u);
}

TEST_F(EmbeddingServiceTest, LongClientStringsAreQuotedShortInErrors) {
  // Echoed whole, 10,000 characters would pass the client's metadata limit
  // and arrive as RESOURCE_EXHAUSTED instead of the real error.
  const std::string name(10000, 'n');
  v1::LookupRequest lookup = Lookup({1});
  lookup.set_table(name);
  grpc::Status status = Call(&Stub::Lookup, lookup);
  ExpectError(status, grpc::StatusCode::NOT_FOUND, "nnnnnnnn");
  EXPECT_LE(status.error_message().size(), kMaxStatusMessageBytes);
  v1::GetTableRequest get;
  get.set_name(name);
  ExpectError(Call(&Stub::GetTable, get), grpc::StatusCode::NOT_FOUND,
              "not found");
  v1::DeleteTableRequest remove;
  remove.set_name(name);
  ExpectError(Call(&Stub::DeleteTable, remove), grpc::StatusCode::NOT_FOUND,
              "not found");
  v1::ReadRowsRequest read;
  read.set_table(name);
  grpc::ClientContext context;
  auto reader = stub_->ReadRows(&context, read);
  v1::ReadRowsResponse chunk;
  EXPECT_FALSE(reader->Read(&chunk));
  ExpectError(reader->Finish(), grpc::StatusCode::NOT_FOUND, "not found");
}

TEST_F(EmbeddingServiceTest, MalformedMessageInALookupStreamIsInvalidArgument) {
  // A raw stream, as a client of another language could send: bytes that
  // are no LookupRequest after a good one.
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>>
      stream(grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer,
                                                       grpc::ByteBuffer>::
                 Create(channel_.get(),
                        grpc::internal::RpcMethod(
                            "/embedding.v1.EmbeddingService/LookupStream",
                            grpc::internal::RpcMethod::BIDI_STREAMING),
                        &context));
  const std::string good = Lookup({1, 2}).SerializeAsString();
  grpc::Slice good_slice(good);
  ASSERT_TRUE(stream->Write(grpc::ByteBuffer(&good_slice, 1)));
  grpc::ByteBuffer raw;
  ASSERT_TRUE(stream->Read(&raw));
  v1::LookupResponse response;
  ASSERT_TRUE(grpc::SerializationTraits<v1::LookupResponse>::Deserialize(
                  &raw, &response)
                  .ok());
  EXPECT_EQ(response.embeddings().data().size(), 2 * kDim * sizeof(float));
  // Field 2 (indices) as a length-delimited run longer than the message.
  const std::string bad("\x12\x7f\x01", 3);
  grpc::Slice bad_slice(bad);
  ASSERT_TRUE(stream->Write(grpc::ByteBuffer(&bad_slice, 1)));
  EXPECT_FALSE(stream->Read(&raw));
  ExpectError(stream->Finish(), grpc::StatusCode::INVALID_ARGUMENT,
              "malformed embedding.v1.LookupRequest");
}

TEST_F(EmbeddingServiceTest, OpenLookupStreamEndsUnavailableOnShutdown) {
  grpc::ClientContext context;
  auto stream = stub_->LookupStream(&context);
  ASSERT_TRUE(stream->Write(Lookup({1, 2})));
  v1::LookupResponse response;
  ASSERT_TRUE(stream->Read(&response));
  // The stream now waits for its next request: shutdown ends it with a code
  // the client can act on (retry elsewhere), not CANCELLED.
  std::thread stopper([&] { server_->Shutdown(absl::Seconds(5)); });
  EXPECT_FALSE(stream->Read(&response));
  ExpectError(stream->Finish(), grpc::StatusCode::UNAVAILABLE,
              "the server is shutting down");
  stopper.join();
}

TEST_F(EmbeddingServiceTest, BadTableSpecsAreRejected) {
  auto create = [&](int64_t rows, int64_t dim) {
    v1::CreateTableRequest request;
    request.mutable_spec()->set_name("new");
    request.mutable_spec()->set_num_embeddings(rows);
    request.mutable_spec()->set_embedding_dim(dim);
    return Call(&Stub::CreateTable, request);
  };
  ExpectError(create(0, 4), grpc::StatusCode::INVALID_ARGUMENT,
              "num_embeddings must be > 0, got 0");
  ExpectError(create(4, -2), grpc::StatusCode::INVALID_ARGUMENT,
              "embedding_dim must be > 0, got -2");
  ExpectError(create(int64_t{1} << 62, 1024),
              grpc::StatusCode::INVALID_ARGUMENT, "overflows 64-bit");
  ExpectError(create(100000, 64), grpc::StatusCode::RESOURCE_EXHAUSTED,
              "memory budget");
  v1::CreateTableRequest bad_lr;
  bad_lr.mutable_spec()->set_name("new");
  bad_lr.mutable_spec()->set_num_embeddings(4);
  bad_lr.mutable_spec()->set_embedding_dim(4);
  bad_lr.mutable_spec()->mutable_optimizer()->mutable_adagrad()->set_lr(-1);
  ExpectError(Call(&Stub::CreateTable, bad_lr),
              grpc::StatusCode::INVALID_ARGUMENT, "adagrad lr must be");
  v1::CreateTableRequest bad_beta = bad_lr;
  bad_beta.mutable_spec()
      ->mutable_optimizer()
      ->mutable_sparse_adam()
      ->set_beta2(1.5f);
  ExpectError(Call(&Stub::CreateTable, bad_beta),
              grpc::StatusCode::INVALID_ARGUMENT, "beta2 must be in [0, 1)");
  v1::ListTablesRequest list;
  grpc::ClientContext context;
  v1::ListTablesResponse tables;
  ASSERT_TRUE(stub_->ListTables(&context, list, &tables).ok());
  EXPECT_EQ(tables.tables_size(), 1);
}

TEST_F(EmbeddingServiceTest, BadBagsAreInvalidArgumentAndChangeNothing) {
  const testing::TableState before = ReadState("t");
  ExpectError(DoBagPush(BagPush({1, 2}, {1}, v1::BAG_MODE_SUM, 1)),
              grpc::StatusCode::INVALID_ARGUMENT, "offsets[0] must be 0");
  ExpectError(DoBagPush(BagPush({1, 2}, {0, 2, 1}, v1::BAG_MODE_SUM, 3)),
              grpc::StatusCode::INVALID_ARGUMENT, "non-decreasing");
  ExpectError(DoBagPush(BagPush({1, 2}, {0, 3}, v1::BAG_MODE_SUM, 2)),
              grpc::StatusCode::INVALID_ARGUMENT, "past the end");
  v1::PushBagGradientsRequest mean_weights =
      BagPush({1, 2}, {0}, v1::BAG_MODE_MEAN, 1);
  mean_weights.add_per_sample_weights(1);
  mean_weights.add_per_sample_weights(2);
  ExpectError(DoBagPush(mean_weights), grpc::StatusCode::INVALID_ARGUMENT,
              "only supported with mode SUM");
  v1::PushBagGradientsRequest short_weights =
      BagPush({1, 2}, {0}, v1::BAG_MODE_SUM, 1);
  short_weights.add_per_sample_weights(1);
  ExpectError(DoBagPush(short_weights), grpc::StatusCode::INVALID_ARGUMENT,
              "expected one per index (2)");
  ExpectError(DoBagPush(BagPush({1, 2}, {0, 1}, v1::BAG_MODE_SUM, 3)),
              grpc::StatusCode::INVALID_ARGUMENT, "expected [2, 4]");
  ExpectError(DoBagPush(BagPush({1, 2}, {0, 1}, v1::BAG_MODE_MAX, 2)),
              grpc::StatusCode::INVALID_ARGUMENT, "max_indices has 0 entries");
  v1::PushBagGradientsRequest foreign_max =
      BagPush({1, 2}, {0}, v1::BAG_MODE_MAX, 1);
  for (int d = 0; d < kDim; ++d) foreign_max.add_max_indices(7);
  ExpectError(DoBagPush(foreign_max), grpc::StatusCode::INVALID_ARGUMENT,
              "not one of the batch's indices");
  EXPECT_EQ(ReadState("t"), before);
}

TEST_F(EmbeddingServiceTest, SetOptimizerOfAnotherKindIsFailedPrecondition) {
  v1::SetOptimizerRequest request;
  request.set_table("t");
  request.mutable_optimizer()->mutable_adagrad()->set_lr(0.1f);
  ExpectError(Call(&Stub::SetOptimizer, request),
              grpc::StatusCode::FAILED_PRECONDITION,
              "cannot change to adagrad");
}

TEST_F(EmbeddingServiceTest, ResponseOverTheMessageLimitIsResourceExhausted) {
  v1::CreateTableRequest request;
  request.mutable_spec()->set_name("wide");
  request.mutable_spec()->set_num_embeddings(4);
  request.mutable_spec()->set_embedding_dim(1024);
  ASSERT_TRUE(Call(&Stub::CreateTable, request).ok());
  v1::LookupRequest lookup = Lookup(std::vector<int64_t>(900, 1));
  lookup.set_table("wide");
  ExpectError(Call(&Stub::Lookup, lookup), grpc::StatusCode::RESOURCE_EXHAUSTED,
              "split the batch");
}

TEST_F(EmbeddingServiceTest, HealthGoesNotServingOnShutdown) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(health->Check(&context, request, &response).ok());
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::SERVING);
  }
  request.set_service("no.such.Service");
  {
    grpc::ClientContext context;
    ExpectError(health->Check(&context, request, &response),
                grpc::StatusCode::NOT_FOUND,
                "unknown service \"no.such.Service\"");
  }
  // A watcher sees SERVING, then NOT_SERVING once shutdown begins.
  request.set_service("embedding.v1.EmbeddingService");
  grpc::ClientContext context;
  auto watch = health->Watch(&context, request);
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  std::thread stopper([&] { server_->Shutdown(absl::Seconds(5)); });
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  stopper.join();
}

}  // namespace
}  // namespace embedding
