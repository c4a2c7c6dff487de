// What the C++ clients put on the wire for indices (client/CONTRACT.md,
// "Index encoding"), seen by a client interceptor that records every message
// sent, against real in-process servers: Lookup, LookupStream and
// PushGradients carry `indices_le` (raw little-endian int64) and no
// `indices`, from EmbeddingClient and from ShardedEmbeddingClient's
// sub-requests; bag requests keep `indices`. The results equal those of the
// same requests sent by hand with `repeated int64 indices`.
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_interceptor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/lookup_stream.h"
#include "client/cpp/sharded_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/client/shard_server.h"
#include "tests/client/wire_bytes.h"

namespace embedding {
namespace {

using ::embedding::testing::DecodeFloats;
using ::embedding::testing::DecodeIndicesLe;
using ::embedding::testing::LoopbackAddress;
using ::embedding::testing::StartShardServer;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using ::testing::SizeIs;
namespace exp = ::grpc::experimental;

constexpr int64_t kRows = 50;
constexpr int64_t kDim = 4;

// Every message sent on the channels it is given to, serialized, with its
// method ("/embedding.v1.EmbeddingService/Lookup").
class SentMessages {
 public:
  void Add(std::string method, std::string bytes) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    sent_.emplace_back(std::move(method), std::move(bytes));
  }

  // The messages sent to methods ending in "/`method`", parsed.
  template <typename Request>
  std::vector<Request> Of(const std::string& method) const
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<Request> requests;
    for (const auto& [name, bytes] : sent_) {
      if (!absl::EndsWith(name, absl::StrCat("/", method))) continue;
      EXPECT_TRUE(requests.emplace_back().ParseFromString(bytes)) << name;
    }
    return requests;
  }

  void Clear() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    sent_.clear();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::pair<std::string, std::string>> sent_ ABSL_GUARDED_BY(mu_);
};

class RecordingInterceptor : public exp::Interceptor {
 public:
  RecordingInterceptor(std::string method, SentMessages* sent)
      : method_(std::move(method)), sent_(sent) {}

  void Intercept(exp::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            exp::InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      std::vector<grpc::Slice> slices;
      grpc::ByteBuffer* buffer = methods->GetSerializedSendMessage();
      EXPECT_TRUE(buffer != nullptr && buffer->Dump(&slices).ok());
      std::string bytes;
      for (const grpc::Slice& slice : slices) {
        bytes.append(reinterpret_cast<const char*>(slice.begin()),
                     slice.size());
      }
      sent_->Add(method_, std::move(bytes));
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  SentMessages* const sent_;
};

class RecordingFactory : public exp::ClientInterceptorFactoryInterface {
 public:
  explicit RecordingFactory(SentMessages* sent) : sent_(sent) {}
  exp::Interceptor* CreateClientInterceptor(exp::ClientRpcInfo* info) override {
    return new RecordingInterceptor(info->method(), sent_);
  }

 private:
  SentMessages* const sent_;
};

// A client of `server` whose messages `sent` records.
std::unique_ptr<EmbeddingClient> RecordedClient(const Server& server,
                                                SentMessages* sent) {
  std::vector<std::unique_ptr<exp::ClientInterceptorFactoryInterface>>
      factories;
  factories.push_back(std::make_unique<RecordingFactory>(sent));
  std::shared_ptr<grpc::Channel> channel =
      exp::CreateCustomChannelWithInterceptors(
          LoopbackAddress(server), grpc::InsecureChannelCredentials(),
          grpc::ChannelArguments(), std::move(factories));
  return std::make_unique<EmbeddingClient>(
      v1::EmbeddingService::NewStub(channel), ClientOptions());
}

v1::TableSpec Spec(const std::string& name) {
  v1::TableSpec spec;
  spec.set_name(name);
  spec.set_num_embeddings(kRows);
  spec.set_embedding_dim(kDim);
  spec.set_seed(11);
  return spec;
}

class IndicesWireTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::warn); }

  void SetUp() override {
    server_ = StartShardServer();
    ASSERT_NE(server_, nullptr);
    client_ = RecordedClient(*server_, &sent_);
    stub_ = v1::EmbeddingService::NewStub(grpc::CreateChannel(
        LoopbackAddress(*server_), grpc::InsecureChannelCredentials()));
  }

  // A Lookup sent by hand with `repeated int64 indices`: the oracle.
  std::vector<float> VarintLookup(const std::string& table,
                                  const std::vector<int64_t>& indices) {
    v1::LookupRequest request;
    request.set_table(table);
    request.mutable_indices()->Add(indices.begin(), indices.end());
    grpc::ClientContext context;
    v1::LookupResponse response;
    const grpc::Status status = stub_->Lookup(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return DecodeFloats(response.embeddings().data());
  }

  // Every row of `table`, through the client.
  std::vector<float> AllRows(const std::string& table) {
    absl::StatusOr<ReadRowsResult> rows = client_->ReadRowRange(table, 0, 0);
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.ok() ? rows->values.data : std::vector<float>();
  }

  SentMessages sent_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<EmbeddingClient> client_;
  std::unique_ptr<v1::EmbeddingService::Stub> stub_;
};

TEST_F(IndicesWireTest, LookupsSendIndicesLeAndGetTheVarintLookupsRows) {
  ASSERT_TRUE(client_->CreateTable(Spec("t")).ok());
  const std::vector<int64_t> indices = {5, 1, 5, 49, 0, 7};
  LookupOptions options;
  options.shape = {2, 3};
  absl::StatusOr<FloatTensor> rows = client_->Lookup("t", indices, options);
  ASSERT_TRUE(rows.ok()) << rows.status();
  FloatTensor reused;
  ASSERT_TRUE(client_->LookupInto("t", indices, &reused, options).ok());

  const std::vector<float> expected = VarintLookup("t", indices);
  EXPECT_THAT(rows->shape, ElementsAre(2, 3, kDim));
  EXPECT_EQ(rows->data, expected);
  EXPECT_EQ(reused.data, expected);
  const auto requests = sent_.Of<v1::LookupRequest>("Lookup");
  ASSERT_THAT(requests, SizeIs(2));
  for (const v1::LookupRequest& request : requests) {
    EXPECT_THAT(request.indices(), IsEmpty());
    EXPECT_THAT(DecodeIndicesLe(request.indices_le()),
                ElementsAreArray(indices));
    EXPECT_THAT(request.shape(), ElementsAre(2, 3));
  }
}

TEST_F(IndicesWireTest, LookupStreamSendsIndicesLe) {
  ASSERT_TRUE(client_->CreateTable(Spec("t")).ok());
  const std::vector<std::vector<int64_t>> batches = {{3, 2}, {9}, {2, 2, 40}};
  absl::StatusOr<std::unique_ptr<LookupStream>> stream =
      client_->OpenLookupStream("t");
  ASSERT_TRUE(stream.ok()) << stream.status();
  for (const std::vector<int64_t>& batch : batches) {
    ASSERT_TRUE((*stream)->Send(batch).ok());
  }
  for (const std::vector<int64_t>& batch : batches) {
    absl::StatusOr<FloatTensor> rows = (*stream)->Receive();
    ASSERT_TRUE(rows.ok()) << rows.status();
    EXPECT_EQ(rows->data, VarintLookup("t", batch));
  }
  (*stream)->WritesDone();
  EXPECT_TRUE((*stream)->Finish().ok());

  const auto requests = sent_.Of<v1::LookupRequest>("LookupStream");
  ASSERT_THAT(requests, SizeIs(batches.size()));
  for (size_t i = 0; i < batches.size(); ++i) {
    EXPECT_THAT(requests[i].indices(), IsEmpty());
    EXPECT_THAT(DecodeIndicesLe(requests[i].indices_le()),
                ElementsAreArray(batches[i]));
  }
}

TEST_F(IndicesWireTest, PushSendsIndicesLeAndUpdatesAsAVarintPush) {
  // Two equal Adagrad tables: one pushed through the client, one by hand.
  v1::TableSpec spec = Spec("client");
  spec.mutable_optimizer()->mutable_adagrad()->set_lr(0.5f);
  ASSERT_TRUE(client_->CreateTable(spec).ok());
  spec.set_name("varint");
  ASSERT_TRUE(client_->CreateTable(spec).ok());
  const std::vector<int64_t> indices = {4, 8, 4, 30};
  std::vector<float> grad(indices.size() * kDim);
  for (size_t i = 0; i < grad.size(); ++i) grad[i] = 0.25f * i - 1.5f;

  absl::StatusOr<PushGradientsResult> pushed =
      client_->PushGradients("client", indices, grad);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->rows_updated, 3);
  v1::PushGradientsRequest request;
  request.set_table("varint");
  request.mutable_indices()->Add(indices.begin(), indices.end());
  request.mutable_grad()->add_shape(static_cast<int64_t>(indices.size()));
  request.mutable_grad()->add_shape(kDim);
  request.mutable_grad()->set_data(grad.data(), grad.size() * sizeof(float));
  grpc::ClientContext context;
  v1::PushGradientsResponse response;
  ASSERT_TRUE(stub_->PushGradients(&context, request, &response).ok());

  EXPECT_EQ(AllRows("client"), AllRows("varint"));
  const auto requests = sent_.Of<v1::PushGradientsRequest>("PushGradients");
  ASSERT_THAT(requests, SizeIs(1));
  EXPECT_THAT(requests[0].indices(), IsEmpty());
  EXPECT_THAT(DecodeIndicesLe(requests[0].indices_le()),
              ElementsAreArray(indices));
}

TEST_F(IndicesWireTest, BagRequestsKeepRepeatedIndices) {
  ASSERT_TRUE(client_->CreateTable(Spec("t")).ok());
  const std::vector<int64_t> indices = {1, 2, 3};
  const std::vector<int64_t> offsets = {0, 2};
  Bags bags{indices, offsets, v1::BAG_MODE_SUM, {}, false};
  ASSERT_TRUE(client_->LookupBag("t", bags).ok());
  ASSERT_TRUE(
      client_->PushBagGradients("t", bags, std::vector<float>(2 * kDim, 1))
          .ok());

  const auto lookups = sent_.Of<v1::LookupBagRequest>("LookupBag");
  ASSERT_THAT(lookups, SizeIs(1));
  EXPECT_THAT(lookups[0].indices(), ElementsAre(1, 2, 3));
  EXPECT_THAT(lookups[0].indices_le(), IsEmpty());
  const auto pushes = sent_.Of<v1::PushBagGradientsRequest>("PushBagGradients");
  ASSERT_THAT(pushes, SizeIs(1));
  EXPECT_THAT(pushes[0].indices(), ElementsAre(1, 2, 3));
  EXPECT_THAT(pushes[0].indices_le(), IsEmpty());
}

TEST_F(IndicesWireTest, ShardedSubRequestsSendIndicesLe) {
  constexpr int kShards = 2;
  std::vector<std::unique_ptr<Server>> servers;
  std::vector<std::unique_ptr<EmbeddingClient>> shards;
  std::vector<std::string> addresses;
  for (int k = 0; k < kShards; ++k) {
    servers.push_back(StartShardServer(k, kShards));
    ASSERT_NE(servers.back(), nullptr);
    shards.push_back(RecordedClient(*servers.back(), &sent_));
    addresses.push_back(LoopbackAddress(*servers.back()));
  }
  ShardedEmbeddingClient cluster(std::move(shards), std::move(addresses));
  ASSERT_TRUE(cluster.CreateTable(Spec("t")).ok());
  ASSERT_TRUE(client_->CreateTable(Spec("t")).ok());  // The single server.
  sent_.Clear();

  const std::vector<int64_t> indices = {7, 2, 7, 4, 11};
  FloatTensor rows;
  ASSERT_TRUE(cluster.LookupInto("t", indices, &rows).ok());
  EXPECT_EQ(rows.data, VarintLookup("t", indices));
  const std::vector<float> grad(indices.size() * kDim, 0.5f);
  ASSERT_TRUE(cluster.PushGradients("t", indices, grad).ok());
  ASSERT_TRUE(client_->PushGradients("t", indices, grad).ok());
  absl::StatusOr<FloatTensor> after = cluster.Lookup("t", indices);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->data, VarintLookup("t", indices));

  // Shard 0 holds the even rows, shard 1 the odd ones, in the caller's
  // order; the single server's requests come after the shards' ones.
  const auto lookups = sent_.Of<v1::LookupRequest>("Lookup");
  ASSERT_THAT(lookups, SizeIs(2 * kShards));
  const auto pushes = sent_.Of<v1::PushGradientsRequest>("PushGradients");
  ASSERT_THAT(pushes, SizeIs(kShards + 1));
  for (const auto& request : lookups) EXPECT_THAT(request.indices(), IsEmpty());
  for (const auto& request : pushes) EXPECT_THAT(request.indices(), IsEmpty());
  std::vector<std::vector<int64_t>> pushed;
  for (int k = 0; k < kShards; ++k) {
    pushed.push_back(DecodeIndicesLe(pushes[k].indices_le()));
  }
  EXPECT_THAT(pushed, ::testing::UnorderedElementsAre(ElementsAre(2, 4),
                                                      ElementsAre(7, 7, 11)));
}

}  // namespace
}  // namespace embedding
