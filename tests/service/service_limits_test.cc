// The service's limits over a real port: response buffers, stream backlogs,
// push scratch and ReadRows chunks reserved from the in-flight account;
// cancellation and deadlines reaching the engine; open streams bounded;
// idle and slow-reader streams ended; a drain that ends blocked streams by
// its deadline. The service is registered as the server does (through
// BoundedService); BoundedService gets no account of its own here, so
// InflightMemory::used() shows exactly what the service reserved.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "embedding/v1/embedding_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/table_registry.h"
#include "server/service/bounded_service.h"
#include "server/service/embedding_service_impl.h"
#include "server/service/inflight_memory.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;

// Asserts `status` has `code` and a message containing `text`.
void ExpectError(const grpc::Status& status, grpc::StatusCode code,
                 const std::string& text) {
  EXPECT_EQ(status.error_code(), code) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(text));
}

// The status of a stream the server ends before any response (or after
// the last one read).
template <typename Response, typename Stream>
grpc::Status EndOf(Stream& stream) {
  Response response;
  EXPECT_FALSE(stream->Read(&response));
  return stream->Finish();
}

// Polls `done` for up to 10 s; whether it became true.
template <typename Done>
bool Eventually(const Done& done) {
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (!done()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// A gRPC client that sends one call by hand over HTTP/2 and then never
// reads its socket, as a hostile or stuck client would: it grants the
// server no window beyond HTTP/2's initial 64 KiB, so a larger response
// blocks the server's Write. (gRPC's own clients take in what arrives even
// when the application does not read.)
class NeverReadingClient {
 public:
  // Connects and sends `method`'s call with `request`; with `last`, the
  // request also ends the client's side (a unary request).
  NeverReadingClient(int port, const std::string& method,
                     const google::protobuf::Message& request, bool last) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&address),
                                     sizeof(address)) == 0;
    std::string out = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    out += Frame(/*type=*/4, /*flags=*/0, /*stream=*/0, "");  // SETTINGS
    std::string headers;
    for (const auto& [name, value] :
         std::vector<std::pair<std::string, std::string>>{
             {":method", "POST"},
             {":scheme", "http"},
             {":path", "/embedding.v1.EmbeddingService/" + method},
             {":authority", "localhost"},
             {"content-type", "application/grpc"},
             {"te", "trailers"}}) {
      // HPACK: a literal without indexing, new name (lengths < 127).
      headers += '\0';
      headers += static_cast<char>(name.size());
      headers += name;
      headers += static_cast<char>(value.size());
      headers += value;
    }
    out += Frame(/*type=*/1, /*flags=END_HEADERS*/ 4, /*stream=*/1, headers);
    const std::string message = request.SerializeAsString();
    std::string data(1, '\0');  // Not compressed.
    for (int shift = 24; shift >= 0; shift -= 8) {
      data += static_cast<char>((message.size() >> shift) & 0xff);
    }
    data += message;
    out += Frame(/*type=*/0, /*flags=*/last ? 1 : 0, /*stream=*/1, data);
    connected_ = connected_ && write(fd_, out.data(), out.size()) ==
                                   static_cast<ssize_t>(out.size());
  }
  ~NeverReadingClient() { Close(); }

  bool connected() const { return connected_; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  static std::string Frame(int type, int flags, int stream,
                           const std::string& payload) {
    std::string frame;
    for (int shift = 16; shift >= 0; shift -= 8) {
      frame += static_cast<char>((payload.size() >> shift) & 0xff);
    }
    frame += static_cast<char>(type);
    frame += static_cast<char>(flags);
    for (int shift = 24; shift >= 0; shift -= 8) {
      frame += static_cast<char>((stream >> shift) & 0xff);
    }
    return frame + payload;
  }

  int fd_ = -1;
  bool connected_ = false;
};

// Heap bytes in use (small and mmapped blocks): what this process holds.
int64_t HeapBytes() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

class ServiceLimitsTest : public ::testing::Test {
 protected:
  void Start(ServiceOptions options, int64_t inflight_bytes) {
    options.max_message_bytes =
        std::max<int64_t>(options.max_message_bytes, int64_t{256} << 20);
    registry_ = std::make_unique<TableRegistry>(
        RegistryOptions{.memory_budget_bytes = int64_t{1} << 30});
    memory_ = std::make_unique<InflightMemory>(inflight_bytes);
    service_ = std::make_unique<EmbeddingServiceImpl>(
        registry_.get(), options, /*checkpointer=*/nullptr, memory_.get());
    bounded_ = std::make_unique<BoundedService>(service_.get(), nullptr);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(bounded_.get());
    builder.SetMaxReceiveMessageSize(
        static_cast<int>(options.max_message_bytes));
    builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    channel_ =
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_),
                                  grpc::InsecureChannelCredentials(), args);
    stub_ = v1::EmbeddingService::NewStub(channel_);
  }

  void TearDown() override {
    if (server_ == nullptr) return;
    service_->Drain(absl::Now() + absl::Seconds(5));
    server_->Shutdown(std::chrono::system_clock::now());
    server_.reset();
  }

  // One unary call of `method` on the stub; its status.
  template <typename Response, typename Request, typename Method>
  grpc::Status Call(Method method, const Request& request) {
    grpc::ClientContext context;
    Response response;
    return (stub_.get()->*method)(&context, request, &response);
  }

  void CreateTable(const std::string& name, int64_t rows, int64_t dim) {
    TableSpec spec;
    spec.name = name;
    spec.num_embeddings = rows;
    spec.embedding_dim = dim;
    ASSERT_TRUE(registry_->Create(spec, {}).ok());
  }

  static v1::LookupRequest Lookup(const std::string& table, int64_t count,
                                  int64_t rows) {
    v1::LookupRequest request;
    request.set_table(table);
    for (int64_t i = 0; i < count; ++i) request.add_indices(i % rows);
    return request;
  }

  static v1::ReadRowsRequest ReadRange(const std::string& table,
                                       int64_t rows_per_message) {
    v1::ReadRowsRequest request;
    request.set_table(table);
    request.set_rows_per_message(rows_per_message);
    return request;
  }

  int64_t Version(const std::string& table) {
    absl::StatusOr<std::shared_ptr<EmbeddingTable>> got = registry_->Get(table);
    return got.ok() ? (*got)->Stats().version : -1;
  }

  std::unique_ptr<TableRegistry> registry_;
  std::unique_ptr<InflightMemory> memory_;
  std::unique_ptr<EmbeddingServiceImpl> service_;
  std::unique_ptr<BoundedService> bounded_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EmbeddingService::Stub> stub_;
};

TEST_F(ServiceLimitsTest, ResponsesAreReservedBeforeTheyAreBuilt) {
  Start(ServiceOptions{}, /*inflight_bytes=*/1 << 20);
  CreateTable("t", 64, 64);  // 256-byte rows.
  {
    grpc::ClientContext context;
    v1::LookupResponse response;
    ExpectError(stub_->Lookup(&context, Lookup("t", 8192, 64), &response),
                grpc::StatusCode::RESOURCE_EXHAUSTED,
                "Lookup response needs 2097152 bytes");
  }
  {
    grpc::ClientContext context;
    v1::LookupResponse response;
    ASSERT_TRUE(stub_->Lookup(&context, Lookup("t", 1024, 64), &response).ok());
    EXPECT_EQ(response.embeddings().data().size(), 1024u * 256);
  }
  {
    // MAX bags: 1 MiB of rows and 2 MiB of max_indices.
    v1::LookupBagRequest bags;
    bags.set_table("t");
    bags.set_mode(v1::BAG_MODE_MAX);
    for (int64_t i = 0; i < 4096; ++i) {
      bags.add_indices(i % 64);
      bags.add_offsets(i);
    }
    grpc::ClientContext context;
    v1::LookupBagResponse response;
    const grpc::Status status = stub_->LookupBag(&context, bags, &response);
    ExpectError(status, grpc::StatusCode::RESOURCE_EXHAUSTED,
                "LookupBag response needs 3145728 bytes");
    EXPECT_THAT(status.error_message(), HasSubstr("--max_inflight_bytes"));
  }
  EXPECT_EQ(memory_->used(), 0);
}

// Content is checked before the response or scratch is reserved: a bad
// index is INVALID_ARGUMENT however full the account is (under load it was
// RESOURCE_EXHAUSTED).
TEST_F(ServiceLimitsTest, ABadIndexIsInvalidEvenWhenItsResponseWouldNotFit) {
  constexpr int64_t kIndices = 8192;
  Start(ServiceOptions{}, /*inflight_bytes=*/1 << 20);
  CreateTable("t", 64, 64);  // 8192 rows of 256 bytes: 2 MiB.
  v1::LookupRequest lookup = Lookup("t", kIndices, 64);
  lookup.set_indices(kIndices - 1, 64);
  v1::LookupBagRequest bags;
  bags.set_table("t");
  *bags.mutable_indices() = lookup.indices();
  for (int64_t i = 0; i < kIndices; ++i) bags.add_offsets(i);
  v1::PushGradientsRequest push;
  push.set_table("t");
  *push.mutable_indices() = lookup.indices();
  push.mutable_grad()->add_shape(kIndices);
  push.mutable_grad()->add_shape(64);
  push.mutable_grad()->mutable_data()->resize(kIndices * 64 * sizeof(float));
  v1::PushBagGradientsRequest bag_push;
  bag_push.set_table("t");
  *bag_push.mutable_indices() = bags.indices();
  *bag_push.mutable_offsets() = bags.offsets();
  *bag_push.mutable_grad() = push.grad();
  const grpc::Status statuses[] = {
      Call<v1::LookupResponse>(&v1::EmbeddingService::Stub::Lookup, lookup),
      Call<v1::LookupBagResponse>(&v1::EmbeddingService::Stub::LookupBag, bags),
      Call<v1::PushGradientsResponse>(
          &v1::EmbeddingService::Stub::PushGradients, push),
      Call<v1::PushGradientsResponse>(
          &v1::EmbeddingService::Stub::PushBagGradients, bag_push)};
  for (const grpc::Status& status : statuses) {
    ExpectError(status, grpc::StatusCode::INVALID_ARGUMENT,
                "index 64 at position 8191 is outside [0, 64)");
  }
  EXPECT_EQ(Version("t"), 0);
  EXPECT_EQ(memory_->used(), 0);
}

TEST_F(ServiceLimitsTest,
       ALookupStreamHoldsItsOneResponseUntilTheClientTakesIt) {
  // A 1 MiB response is held twice while written (message and bytes).
  Start(ServiceOptions{}, /*inflight_bytes=*/3 << 20);
  CreateTable("t", 64, 64);
  const v1::LookupRequest request = Lookup("t", 4096, 64);
  NeverReadingClient slow(port_, "LookupStream", request, /*last=*/false);
  ASSERT_TRUE(slow.connected());
  // Its response waits in a Write blocked by flow control, still reserved;
  // the stream reads no further request meanwhile.
  ASSERT_TRUE(Eventually([&] { return memory_->used() == 2 << 20; }));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(memory_->used(), 2 << 20);

  grpc::ClientContext other_context;
  auto other = stub_->LookupStream(&other_context);
  ASSERT_TRUE(other->Write(request));
  ExpectError(EndOf<v1::LookupResponse>(other),
              grpc::StatusCode::RESOURCE_EXHAUSTED, "--max_inflight_bytes");

  slow.Close();  // The Write fails; the bytes go back.
  EXPECT_TRUE(Eventually([&] { return memory_->used() == 0; }));
  EXPECT_TRUE(Eventually([&] { return service_->open_streams() == 0; }));
}

TEST_F(ServiceLimitsTest, PushScratchIsReservedAndAPushOverItChangesNothing) {
  constexpr int64_t kIndices = 4096;
  constexpr int64_t kDim = 8;
  Start(ServiceOptions{},
        /*inflight_bytes=*/PushScratchBytes(kIndices, kDim) - 1);
  CreateTable("t", 64, kDim);
  v1::PushGradientsRequest push;
  push.set_table("t");
  for (int64_t i = 0; i < kIndices; ++i) push.add_indices(i % 64);
  push.mutable_grad()->add_shape(kIndices);
  push.mutable_grad()->add_shape(kDim);
  push.mutable_grad()->mutable_data()->resize(kIndices * kDim * sizeof(float));
  const int64_t version = Version("t");
  grpc::ClientContext context;
  v1::PushGradientsResponse response;
  ExpectError(stub_->PushGradients(&context, push, &response),
              grpc::StatusCode::RESOURCE_EXHAUSTED,
              "PushGradients scratch needs");
  EXPECT_EQ(Version("t"), version);
  EXPECT_EQ(memory_->used(), 0);
}

TEST_F(ServiceLimitsTest, AReadRowsChunkIsReservedOnceForTheStream) {
  Start(ServiceOptions{}, /*inflight_bytes=*/1 << 20);
  CreateTable("t", 4096, 64);
  {
    grpc::ClientContext context;
    auto reader = stub_->ReadRows(&context, ReadRange("t", 4096));
    ExpectError(EndOf<v1::ReadRowsResponse>(reader),
                grpc::StatusCode::RESOURCE_EXHAUSTED, "ReadRows chunk needs");
  }
  grpc::ClientContext context;
  auto reader = stub_->ReadRows(&context, ReadRange("t", 512));
  v1::ReadRowsResponse chunk;
  int64_t rows = 0;
  while (reader->Read(&chunk)) {
    EXPECT_EQ(chunk.indices(0), rows);
    rows += chunk.indices_size();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(rows, 4096);
  EXPECT_TRUE(Eventually([&] { return memory_->used() == 0; }));
}

TEST_F(ServiceLimitsTest, ReadRowsOfARangeNeverListsTheWholeRange) {
  // 4M rows: a list of their ids would be 32 MiB.
  constexpr int64_t kRows = int64_t{1} << 22;
  Start(ServiceOptions{}, /*inflight_bytes=*/int64_t{1} << 30);
  CreateTable("big", kRows, 1);
  const int64_t before = HeapBytes();
  NeverReadingClient slow(port_, "ReadRows", ReadRange("big", 1024),
                          /*last=*/true);
  ASSERT_TRUE(slow.connected());
  // The stream is under way, then blocked on the client with the rest of
  // the range to go: what it holds is a chunk, not the range.
  ASSERT_TRUE(Eventually([&] { return memory_->used() > 0; }));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_LT(HeapBytes() - before, int64_t{8} << 20);
}

TEST_F(ServiceLimitsTest, ALookupPastItsDeadlineStopsEarly) {
  ServiceOptions options;
  options.max_indices_per_request = int64_t{1} << 22;
  Start(options, /*inflight_bytes=*/int64_t{1} << 30);
  CreateTable("t", 128, 32);
  // 1M one-byte indices: quick to send and parse, long to gather (128 MiB),
  // so the call is under way when its 20 ms deadline passes.
  const v1::LookupRequest request = Lookup("t", int64_t{1} << 20, 128);
  {
    // Connected, and the server's receive window grown, first: on a fresh
    // connection the deadline would pass before the request is received.
    v1::LookupRequest warm_up = request;
    warm_up.set_table("missing");
    grpc::ClientContext context;
    v1::LookupResponse response;
    ASSERT_EQ(stub_->Lookup(&context, warm_up, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  // Should the deadline pass before the call reaches the service (then
  // nothing runs to stop: a loaded machine, a sanitizer build), try again
  // with twice the time, until the call is received but not yet done.
  absl::Duration timeout = absl::Milliseconds(20);
  for (int attempt = 0; attempt < 9 && service_->calls_cancelled() == 0;
       ++attempt, timeout *= 2) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    v1::LookupResponse response;
    const grpc::StatusCode code =
        stub_->Lookup(&context, request, &response).error_code();
    if (code == grpc::StatusCode::OK) break;  // The lookup beat the time.
    EXPECT_EQ(code, grpc::StatusCode::DEADLINE_EXCEEDED);
    // The server's handler may still be returning.
    Eventually([&] { return memory_->used() == 0; });
  }
  EXPECT_GT(service_->calls_cancelled(), 0);
  EXPECT_TRUE(Eventually([&] { return memory_->used() == 0; }));
}

TEST_F(ServiceLimitsTest, StreamsPastMaxOpenStreamsAreResourceExhausted) {
  ServiceOptions options;
  options.max_open_streams = 2;
  // Were the third stream let in, the test would wait for it this long.
  options.stream_idle_timeout = absl::Seconds(5);
  Start(options, /*inflight_bytes=*/int64_t{1} << 30);
  CreateTable("t", 64, 4);
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<
      grpc::ClientReaderWriter<v1::LookupRequest, v1::LookupResponse>>>
      streams;
  v1::LookupResponse response;
  for (int i = 0; i < 2; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stub_->LookupStream(contexts.back().get()));
    ASSERT_TRUE(streams.back()->Write(Lookup("t", 1, 64)));
    ASSERT_TRUE(streams.back()->Read(&response));  // Open and answered.
  }
  {
    grpc::ClientContext context;
    auto third = stub_->LookupStream(&context);
    third->Write(Lookup("t", 1, 64));
    ExpectError(EndOf<v1::LookupResponse>(third),
                grpc::StatusCode::RESOURCE_EXHAUSTED,
                "the limit is 2 (--max_open_streams)");
  }
  {
    grpc::ClientContext context;
    auto reader = stub_->ReadRows(&context, ReadRange("t", 0));
    ExpectError(EndOf<v1::ReadRowsResponse>(reader),
                grpc::StatusCode::RESOURCE_EXHAUSTED, "--max_open_streams");
  }
  {
    grpc::ClientContext context;  // Unary calls still go through.
    EXPECT_TRUE(stub_->Lookup(&context, Lookup("t", 1, 64), &response).ok());
  }
  ASSERT_TRUE(streams[0]->WritesDone());
  EXPECT_TRUE(streams[0]->Finish().ok());
  ASSERT_TRUE(Eventually([&] { return service_->open_streams() == 1; }));
  grpc::ClientContext context;
  auto again = stub_->LookupStream(&context);
  ASSERT_TRUE(again->Write(Lookup("t", 1, 64)));
  EXPECT_TRUE(again->Read(&response));
  again->WritesDone();
  EXPECT_TRUE(again->Finish().ok());
  streams[1]->WritesDone();
  EXPECT_TRUE(streams[1]->Finish().ok());
}

TEST_F(ServiceLimitsTest, AnIdleLookupStreamIsEndedWithUnavailable) {
  ServiceOptions options;
  options.stream_idle_timeout = absl::Milliseconds(200);
  Start(options, /*inflight_bytes=*/int64_t{1} << 30);
  CreateTable("t", 64, 4);
  grpc::ClientContext context;
  // Without the timeout the test fails on this deadline, not hangs.
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(20));
  auto stream = stub_->LookupStream(&context);
  v1::LookupResponse response;
  // Requests a bit apart, each within the timeout, keep it open.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(stream->Write(Lookup("t", 1, 64)));
    ASSERT_TRUE(stream->Read(&response));
    absl::SleepFor(absl::Milliseconds(100));
  }
  ExpectError(EndOf<v1::LookupResponse>(stream), grpc::StatusCode::UNAVAILABLE,
              "no request for longer than --stream_idle_timeout");
  EXPECT_TRUE(Eventually([&] { return service_->open_streams() == 0; }));
}

TEST_F(ServiceLimitsTest, AClientThatTakesNoResponseIsEndedAfterTheTimeout) {
  ServiceOptions options;
  options.stream_idle_timeout = absl::Milliseconds(200);
  Start(options, /*inflight_bytes=*/int64_t{1} << 30);
  CreateTable("t", 1 << 16, 64);
  // 1 MiB messages: far more than the client's window.
  NeverReadingClient slow(port_, "ReadRows", ReadRange("t", 4096),
                          /*last=*/true);
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(Eventually([&] { return service_->calls_cancelled() == 1; }));
  EXPECT_TRUE(Eventually([&] { return service_->open_streams() == 0; }));
  EXPECT_TRUE(Eventually([&] { return memory_->used() == 0; }));
}

TEST_F(ServiceLimitsTest, DrainEndsAStreamBlockedOnItsClientByTheDeadline) {
  Start(ServiceOptions{}, /*inflight_bytes=*/int64_t{1} << 30);
  CreateTable("t", 1 << 16, 64);
  NeverReadingClient slow(port_, "ReadRows", ReadRange("t", 4096),
                          /*last=*/true);
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(Eventually([&] { return memory_->used() > 0; }));
  absl::SleepFor(absl::Milliseconds(50));  // Blocked in Write by now.
  // It does not end by itself: the drain ends it shortly before the
  // deadline, so nothing is left running at the deadline.
  EXPECT_EQ(service_->Drain(absl::Now() + absl::Milliseconds(500)), 0);
  EXPECT_EQ(service_->open_streams(), 0);
}

TEST_F(ServiceLimitsTest, ARawLookupStreamParsesWithinTheAccount) {
  Start(ServiceOptions{}, /*inflight_bytes=*/64 << 10);
  CreateTable("t", 64, 4);
  grpc::ClientContext context;
  auto stream = stub_->LookupStream(&context);
  v1::LookupResponse response;
  ASSERT_TRUE(stream->Write(Lookup("t", 2, 64)));
  ASSERT_TRUE(stream->Read(&response));
  // 100,000 indices parse to 800 KB: refused before they are parsed.
  ASSERT_TRUE(stream->Write(Lookup("t", 100000, 64)));
  ExpectError(EndOf<v1::LookupResponse>(stream),
              grpc::StatusCode::RESOURCE_EXHAUSTED, "--max_inflight_bytes");
  EXPECT_TRUE(Eventually([&] { return memory_->used() == 0; }));
}

}  // namespace
}  // namespace embedding
