// The two wire forms of a request's indices: `indices` (varints) and
// `indices_le` (raw little-endian int64) give the same results on a real
// server; a request with both, or with a length that is not whole int64s,
// or with too many, is refused with a precise status and changes nothing.
#include <grpcpp/grpcpp.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "embedding/v1/embedding_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/request_indices.h"
#include "server/service/server.h"
#include "tests/service/service_fixture.h"

namespace embedding {
namespace {

using ::testing::ElementsAre;
using Stub = v1::EmbeddingService::Stub;

constexpr int64_t kRows = 20;
constexpr int64_t kDim = 4;
constexpr int64_t kMaxIndices = 100;

std::string Packed(const std::vector<int64_t>& indices) {
  return std::string(reinterpret_cast<const char*>(indices.data()),
                     indices.size() * sizeof(int64_t));
}

v1::Tensor Grad(int64_t rows) {
  std::vector<float> values(rows * kDim);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.25f * (i % 7);
  v1::Tensor tensor;
  tensor.set_dtype(v1::DTYPE_FLOAT32);
  tensor.add_shape(rows);
  tensor.add_shape(kDim);
  tensor.set_data(std::string(reinterpret_cast<const char*>(values.data()),
                              values.size() * sizeof(float)));
  return tensor;
}

// Sets a request's indices in the form under test.
template <typename Request>
void SetIndices(const std::vector<int64_t>& indices, bool packed,
                Request* request) {
  if (packed) {
    request->set_indices_le(Packed(indices));
  } else {
    request->mutable_indices()->Add(indices.begin(), indices.end());
  }
}

// The table each form of a test uses (two identical tables).
const char* TableOf(bool packed) { return packed ? "packed" : "varint"; }

// Sets a bag request's table, indices (in the form under test), mode and
// two bags: [0, 2) and [2, end).
template <typename Request>
void SetTwoBags(const std::vector<int64_t>& indices, bool packed,
                v1::BagMode mode, Request* request) {
  request->set_table(TableOf(packed));
  SetIndices(indices, packed, request);
  request->add_offsets(0);
  request->add_offsets(2);
  request->set_mode(mode);
}

class PackedIndicesTest : public testing::ServiceFixture {
 protected:
  void SetUp() override {
    ServerOptions options = LoopbackOptions();
    options.service.max_indices_per_request = kMaxIndices;
    ASSERT_NO_FATAL_FAILURE(StartServer(options));
    // Two identical tables: one for each form.
    for (bool packed : {false, true}) {
      v1::CreateTableRequest request;
      request.mutable_spec()->set_name(TableOf(packed));
      request.mutable_spec()->set_num_embeddings(kRows);
      request.mutable_spec()->set_embedding_dim(kDim);
      request.mutable_spec()->set_seed(3);
      request.mutable_spec()->mutable_optimizer()->mutable_adagrad();
      v1::TableInfo info;
      grpc::ClientContext context;
      ASSERT_TRUE(stub_->CreateTable(&context, request, &info).ok());
    }
  }
};

TEST_F(PackedIndicesTest, LookupGivesTheSameRowsInBothForms) {
  const std::vector<int64_t> indices = {3, 19, 3, 0, 7, 12};
  std::string data[2];
  for (bool packed : {false, true}) {
    v1::LookupRequest request;
    request.set_table("varint");
    SetIndices(indices, packed, &request);
    request.add_shape(2);
    request.add_shape(3);
    v1::LookupResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Lookup(&context, request, &response).ok());
    EXPECT_THAT(response.embeddings().shape(), ElementsAre(2, 3, kDim));
    data[packed] = response.embeddings().data();
  }
  EXPECT_EQ(data[0].size(), indices.size() * kDim * sizeof(float));
  EXPECT_EQ(data[0], data[1]);
}

TEST_F(PackedIndicesTest, LookupStreamTakesThePackedForm) {
  grpc::ClientContext context;
  auto stream = stub_->LookupStream(&context);
  v1::LookupRequest request;
  request.set_table("varint");
  request.set_indices_le(Packed({4, 5}));
  ASSERT_TRUE(stream->Write(request));
  v1::LookupResponse response;
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_THAT(response.embeddings().shape(), ElementsAre(2, kDim));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(PackedIndicesTest, PushAppliesTheSameStepInBothForms) {
  const std::vector<int64_t> indices = {2, 9, 2, 15};
  ASSERT_EQ(ReadState("varint").rows, ReadState("packed").rows);
  for (bool packed : {false, true}) {
    v1::PushGradientsRequest request;
    request.set_table(TableOf(packed));
    SetIndices(indices, packed, &request);
    *request.mutable_grad() = Grad(indices.size());
    v1::PushGradientsResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->PushGradients(&context, request, &response).ok());
    EXPECT_EQ(response.rows_updated(), 3);
  }
  EXPECT_EQ(ReadState("varint"), ReadState("packed"));
}

TEST_F(PackedIndicesTest, BagsGiveTheSameResultsInBothForms) {
  const std::vector<int64_t> indices = {1, 2, 2, 8, 13};
  std::string pooled[2];
  for (bool packed : {false, true}) {
    v1::LookupBagRequest lookup;
    SetTwoBags(indices, packed, v1::BAG_MODE_SUM, &lookup);
    v1::LookupBagResponse response;
    grpc::ClientContext lookup_context;
    ASSERT_TRUE(stub_->LookupBag(&lookup_context, lookup, &response).ok());
    pooled[packed] = response.embeddings().data();

    v1::PushBagGradientsRequest push;
    SetTwoBags(indices, packed, v1::BAG_MODE_MEAN, &push);
    *push.mutable_grad() = Grad(2);
    v1::PushGradientsResponse pushed;
    grpc::ClientContext push_context;
    ASSERT_TRUE(stub_->PushBagGradients(&push_context, push, &pushed).ok());
    EXPECT_EQ(pushed.rows_updated(), 4);
  }
  EXPECT_EQ(pooled[0], pooled[1]);
  EXPECT_EQ(ReadState("varint"), ReadState("packed"));
}

TEST_F(PackedIndicesTest, BadPackedIndicesAreRefusedAndChangeNothing) {
  const auto before = ReadState("packed");
  auto lookup = [&](const std::string& packed,
                    const std::vector<int64_t>& indices) {
    v1::LookupRequest request;
    request.set_table("packed");
    request.set_indices_le(packed);
    request.mutable_indices()->Add(indices.begin(), indices.end());
    v1::LookupResponse response;
    grpc::ClientContext context;
    return stub_->Lookup(&context, request, &response);
  };
  auto push = [&](const std::string& packed, int64_t rows) {
    v1::PushGradientsRequest request;
    request.set_table("packed");
    request.set_indices_le(packed);
    *request.mutable_grad() = Grad(rows);
    v1::PushGradientsResponse response;
    grpc::ClientContext context;
    return stub_->PushGradients(&context, request, &response);
  };
  ExpectError(lookup(Packed({1}), {2}), grpc::StatusCode::INVALID_ARGUMENT,
              "set indices or indices_le, not both (got 1 indices and 8 "
              "bytes of indices_le)");
  ExpectError(lookup(Packed({1, 2}).substr(0, 12), {}),
              grpc::StatusCode::INVALID_ARGUMENT,
              "indices_le has 12 bytes, not a multiple of 8");
  ExpectError(lookup(Packed(std::vector<int64_t>(kMaxIndices + 1, 1)), {}),
              grpc::StatusCode::RESOURCE_EXHAUSTED,
              "request has 101 indices; the limit is 100");
  ExpectError(lookup(Packed({1, kRows}), {}),
              grpc::StatusCode::INVALID_ARGUMENT, "at position 1");
  ExpectError(push(Packed({1, 2}).substr(0, 15), 2),
              grpc::StatusCode::INVALID_ARGUMENT,
              "indices_le has 15 bytes, not a multiple of 8");
  ExpectError(push(Packed({1, -1}), 2), grpc::StatusCode::INVALID_ARGUMENT,
              "at position 1");
  // The gradient's rows are counted against the packed indices.
  ExpectError(push(Packed({1, 2}), 3), grpc::StatusCode::INVALID_ARGUMENT,
              "grad has shape [3, 4], expected [2, 4]");
  EXPECT_EQ(ReadState("packed"), before);
}

TEST(RequestIndicesTest, DecodesUnalignedBytesByCopying) {
  const std::vector<int64_t> values = {5, -1, int64_t{1} << 40};
  const std::string shifted = "x" + Packed(values);
  const absl::string_view unaligned = absl::string_view(shifted).substr(1);
  std::vector<int64_t> scratch;
  const absl::StatusOr<absl::Span<const int64_t>> decoded =
      RequestIndices({}, unaligned, &scratch);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(*decoded, ElementsAre(5, -1, int64_t{1} << 40));
  EXPECT_EQ(decoded->data(), scratch.data());
}

TEST(RequestIndicesTest, ViewsAlignedBytesInPlace) {
  const std::string packed = Packed({7, 8});
  std::vector<int64_t> scratch;
  const absl::StatusOr<absl::Span<const int64_t>> decoded =
      RequestIndices({}, packed, &scratch);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(*decoded, ElementsAre(7, 8));
  EXPECT_EQ(static_cast<const void*>(decoded->data()), packed.data());
  EXPECT_TRUE(scratch.empty());
}

}  // namespace
}  // namespace embedding
