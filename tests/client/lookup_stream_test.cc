// LookupStream against the real in-process server (embedding::Server on a
// free loopback port): results equal to unary Lookups and in order, at most
// `depth` lookups in flight, a bad batch ending the stream with the
// server's code and message after the results before it, WritesDone,
// Cancel and the deadline; and EmbeddingClient::LookupInto, the unary
// lookup into a reused buffer.
#include "client/cpp/lookup_stream.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/cpp/embedding_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/server.h"
#include "spdlog/spdlog.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kRows = 1000;
constexpr int64_t kDim = 8;
constexpr char kTable[] = "items";

// Batch b: 1 + b % 7 indices starting at (37 * b) % kRows, so every batch
// differs from its neighbours and an out-of-order result shows.
std::vector<int64_t> Batch(int b) {
  std::vector<int64_t> indices;
  for (int i = 0; i < 1 + b % 7; ++i) indices.push_back((37 * b + i) % kRows);
  return indices;
}

class LookupStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::warn); }

  void SetUp() override {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
        EmbeddingClient::Connect(absl::StrCat("127.0.0.1:", server_->port()));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    v1::TableSpec spec;
    spec.set_name(kTable);
    spec.set_num_embeddings(kRows);
    spec.set_embedding_dim(kDim);
    absl::StatusOr<v1::TableInfo> info = client_->CreateTable(spec);
    ASSERT_TRUE(info.ok()) << info.status();
  }

  std::unique_ptr<LookupStream> Open(int depth, CallOptions call = {}) {
    absl::StatusOr<std::unique_ptr<LookupStream>> stream =
        client_->OpenLookupStream(kTable, {.depth = depth}, call);
    EXPECT_TRUE(stream.ok()) << stream.status();
    return stream.ok() ? *std::move(stream) : nullptr;
  }

  // The unary Lookup of batch b, the oracle.
  FloatTensor Expected(int b, const LookupOptions& options = {}) {
    absl::StatusOr<FloatTensor> rows =
        client_->Lookup(kTable, Batch(b), options);
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.ok() ? *std::move(rows) : FloatTensor();
  }

  std::unique_ptr<Server> server_;
  std::unique_ptr<EmbeddingClient> client_;
};

void ExpectSameTensor(const FloatTensor& got, const FloatTensor& want,
                      int batch) {
  EXPECT_EQ(got.shape, want.shape) << "batch " << batch;
  EXPECT_EQ(got.data, want.data) << "batch " << batch;
}

TEST_F(LookupStreamTest, ResultsEqualUnaryLookupsInOrderFromOneThread) {
  constexpr int kDepth = 4;
  constexpr int kBatches = 100;
  std::unique_ptr<LookupStream> stream = Open(kDepth);
  ASSERT_NE(stream, nullptr);
  // Every third batch as a 2-D index tensor, every fifth in float16.
  auto options = [](int b) {
    LookupOptions options;
    if (b % 3 == 0 && Batch(b).size() % 2 == 0) {
      options.shape = {2, static_cast<int64_t>(Batch(b).size() / 2)};
    }
    if (b % 5 == 0) options.dtype = v1::DTYPE_FLOAT16;
    return options;
  };
  int received = 0;
  FloatTensor reused;
  for (int b = 0; b < kBatches; ++b) {
    if (stream->in_flight() == kDepth) {
      ASSERT_TRUE(stream->Receive(&reused).ok());
      ExpectSameTensor(reused, Expected(received, options(received)), received);
      ++received;
    }
    ASSERT_TRUE(stream->Send(Batch(b), options(b)).ok()) << b;
    EXPECT_LE(stream->in_flight(), kDepth);
  }
  for (; received < kBatches; ++received) {
    absl::StatusOr<FloatTensor> rows = stream->Receive();
    ASSERT_TRUE(rows.ok()) << rows.status();
    ExpectSameTensor(*rows, Expected(received, options(received)), received);
  }
  EXPECT_EQ(stream->in_flight(), 0);
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(LookupStreamTest, ProducerAndConsumerThreadsKeepOrderAndDepth) {
  constexpr int kDepth = 3;
  constexpr int kBatches = 300;
  std::unique_ptr<LookupStream> stream = Open(kDepth);
  ASSERT_NE(stream, nullptr);
  std::atomic<int> most_in_flight{0};
  std::thread producer([&] {
    for (int b = 0; b < kBatches; ++b) {
      ASSERT_TRUE(stream->Send(Batch(b)).ok()) << b;
      int seen = stream->in_flight();
      int most = most_in_flight.load();
      while (seen > most && !most_in_flight.compare_exchange_weak(most, seen)) {
      }
    }
    stream->WritesDone();
  });
  std::vector<FloatTensor> results;
  while (true) {
    absl::StatusOr<FloatTensor> rows = stream->Receive();
    if (absl::IsOutOfRange(rows.status())) break;
    ASSERT_TRUE(rows.ok()) << rows.status();
    results.push_back(*std::move(rows));
  }
  producer.join();
  ASSERT_EQ(results.size(), kBatches);
  for (int b = 0; b < kBatches; ++b)
    ExpectSameTensor(results[b], Expected(b), b);
  EXPECT_LE(most_in_flight.load(), kDepth);
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(LookupStreamTest, SendWaitsWhileDepthLookupsAreInFlight) {
  constexpr int kDepth = 2;
  std::unique_ptr<LookupStream> stream = Open(kDepth);
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(stream->Send(Batch(0)).ok());
  ASSERT_TRUE(stream->Send(Batch(1)).ok());
  EXPECT_EQ(stream->in_flight(), kDepth);
  absl::Notification sent;
  std::thread third([&] {
    EXPECT_TRUE(stream->Send(Batch(2)).ok());
    sent.Notify();
  });
  // Whatever the timing, the third Send cannot return before a Receive.
  EXPECT_FALSE(sent.WaitForNotificationWithTimeout(absl::Milliseconds(300)));
  EXPECT_EQ(stream->in_flight(), kDepth);
  absl::StatusOr<FloatTensor> first = stream->Receive();
  ASSERT_TRUE(first.ok()) << first.status();
  ExpectSameTensor(*first, Expected(0), 0);
  sent.WaitForNotification();
  third.join();
  EXPECT_EQ(stream->in_flight(), kDepth);
  for (int b = 1; b <= 2; ++b) {
    absl::StatusOr<FloatTensor> rows = stream->Receive();
    ASSERT_TRUE(rows.ok()) << rows.status();
    ExpectSameTensor(*rows, Expected(b), b);
  }
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(LookupStreamTest, BadBatchEndsTheStreamAfterTheResultsBeforeIt) {
  std::unique_ptr<LookupStream> stream = Open(/*depth=*/4);
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(stream->Send(Batch(0)).ok());
  ASSERT_TRUE(stream->Send(Batch(1)).ok());
  ASSERT_TRUE(stream->Send({3, kRows + 5}).ok());  // Out of range.
  // May already see the end of the stream; then with the same error.
  absl::Status after = stream->Send(Batch(3));
  for (int b = 0; b < 2; ++b) {
    absl::StatusOr<FloatTensor> rows = stream->Receive();
    ASSERT_TRUE(rows.ok()) << rows.status();
    ExpectSameTensor(*rows, Expected(b), b);
  }
  absl::StatusOr<FloatTensor> bad = stream->Receive();
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument)
      << bad.status();
  EXPECT_THAT(bad.status().message(), HasSubstr(absl::StrCat(kRows + 5)));
  if (!after.ok()) {
    EXPECT_EQ(after, bad.status());
  }
  // From now on every call returns the same error.
  EXPECT_EQ(stream->Receive().status(), bad.status());
  EXPECT_EQ(stream->Send(Batch(4)), bad.status());
  EXPECT_EQ(stream->Finish(), bad.status());
  // Nothing else broke: unary lookups and a new stream work.
  ExpectSameTensor(Expected(5), Expected(5), 5);
  std::unique_ptr<LookupStream> next = Open(/*depth=*/2);
  ASSERT_NE(next, nullptr);
  ASSERT_TRUE(next->Send(Batch(6)).ok());
  absl::StatusOr<FloatTensor> rows = next->Receive();
  ASSERT_TRUE(rows.ok()) << rows.status();
  ExpectSameTensor(*rows, Expected(6), 6);
  EXPECT_TRUE(next->Finish().ok());
}

TEST_F(LookupStreamTest, UnknownTableIsNotFound) {
  absl::StatusOr<std::unique_ptr<LookupStream>> stream =
      client_->OpenLookupStream("missing");
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_TRUE((*stream)->Send({1}).ok());
  absl::StatusOr<FloatTensor> rows = (*stream)->Receive();
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kNotFound) << rows.status();
  EXPECT_THAT(rows.status().message(), HasSubstr("missing"));
  EXPECT_EQ((*stream)->Finish(), rows.status());
}

TEST_F(LookupStreamTest, WritesDoneThenReceiveTheRestThenOutOfRange) {
  std::unique_ptr<LookupStream> stream = Open(/*depth=*/4);
  ASSERT_NE(stream, nullptr);
  ASSERT_TRUE(stream->Send(Batch(0)).ok());
  ASSERT_TRUE(stream->Send(Batch(1)).ok());
  stream->WritesDone();
  EXPECT_EQ(stream->Send(Batch(2)).code(),
            absl::StatusCode::kFailedPrecondition);
  for (int b = 0; b < 2; ++b) {
    absl::StatusOr<FloatTensor> rows = stream->Receive();
    ASSERT_TRUE(rows.ok()) << rows.status();
    ExpectSameTensor(*rows, Expected(b), b);
  }
  EXPECT_EQ(stream->Receive().status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(LookupStreamTest, FinishDropsResultsNotReceived) {
  std::unique_ptr<LookupStream> stream = Open(/*depth=*/4);
  ASSERT_NE(stream, nullptr);
  for (int b = 0; b < 4; ++b) ASSERT_TRUE(stream->Send(Batch(b)).ok());
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(stream->in_flight(), 0);
  EXPECT_EQ(stream->Send(Batch(0)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(LookupStreamTest, CancelEndsWaitingReceiveAndSend) {
  std::unique_ptr<LookupStream> stream = Open(/*depth=*/1);
  ASSERT_NE(stream, nullptr);
  // A Receive with nothing in flight waits for a Send; Cancel ends it.
  std::thread receiver([&] {
    EXPECT_EQ(stream->Receive().status().code(), absl::StatusCode::kCancelled);
  });
  stream->Cancel();
  receiver.join();
  EXPECT_EQ(stream->Send(Batch(0)).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(stream->Finish().code(), absl::StatusCode::kCancelled);

  // A Send waiting for room: Cancel ends it too.
  std::unique_ptr<LookupStream> full = Open(/*depth=*/1);
  ASSERT_NE(full, nullptr);
  ASSERT_TRUE(full->Send(Batch(0)).ok());
  std::thread sender([&] {
    EXPECT_EQ(full->Send(Batch(1)).code(), absl::StatusCode::kCancelled);
  });
  full->Cancel();
  sender.join();
  EXPECT_EQ(full->Receive().status().code(), absl::StatusCode::kCancelled);
}

TEST_F(LookupStreamTest, DeadlineEndsAWaitingReceive) {
  CallOptions call;
  call.timeout = absl::Milliseconds(200);
  std::unique_ptr<LookupStream> stream = Open(/*depth=*/2, call);
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(stream->Receive().status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(stream->Finish().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(LookupStreamTest, DestroyingAnOpenStreamCancelsIt) {
  std::unique_ptr<LookupStream> stream = Open(/*depth=*/4);
  ASSERT_NE(stream, nullptr);
  for (int b = 0; b < 4; ++b) ASSERT_TRUE(stream->Send(Batch(b)).ok());
  stream.reset();
  ExpectSameTensor(Expected(0), Expected(0), 0);
}

// The unary sibling of Receive(FloatTensor*): same rows, buffer reused.
TEST_F(LookupStreamTest, LookupIntoEqualsLookupAndReusesTheBuffer) {
  FloatTensor result;
  ASSERT_TRUE(client_->LookupInto(kTable, Batch(6), &result).ok());
  ExpectSameTensor(result, Expected(6), 6);
  const float* buffer = result.data.data();
  ASSERT_TRUE(client_->LookupInto(kTable, Batch(5), &result).ok());
  ExpectSameTensor(result, Expected(5), 5);
  EXPECT_EQ(result.data.data(), buffer);  // 6 rows, then 5: no new buffer.
  EXPECT_EQ(client_->LookupInto(kTable, {kRows}, &result).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(LookupStreamTest, DepthBelowOneIsInvalid) {
  absl::StatusOr<std::unique_ptr<LookupStream>> stream =
      client_->OpenLookupStream(kTable, {.depth = 0});
  EXPECT_EQ(stream.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(stream.status().message(), HasSubstr("depth"));
}

}  // namespace
}  // namespace embedding
