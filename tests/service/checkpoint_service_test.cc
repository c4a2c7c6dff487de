// The server's checkpoints through the wire: SaveCheckpoint's codes and
// reply, last_checkpoint in GetTable/ListTables, restore on start, periodic
// saves, the final checkpoint of Shutdown (and its abandonment when the
// grace period is over), and every call UNAVAILABLE while restoring.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "embedding/v1/embedding_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/server.h"
#include "spdlog/spdlog.h"
#include "tests/service/temp_dir.h"

namespace embedding {
namespace {

using ::embedding::testing::TempDir;
using ::testing::SizeIs;

constexpr int64_t kRows = 100;
constexpr int64_t kDim = 4;

// Regular files anywhere under `dir`.
int FileCount(const std::string& dir) {
  int count = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    count += entry.is_regular_file();
  }
  return count;
}

class CheckpointServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::warn); }

  void Start(ServerOptions options = {}) {
    options.listen_address = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->WaitUntilServing(absl::Seconds(30)));
    stub_ = v1::EmbeddingService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                            grpc::InsecureChannelCredentials()));
  }

  void StartWithCheckpoints(double interval_s = 0) {
    ServerOptions options;
    options.checkpoint_dir = dir_.path();
    options.checkpoint_interval_s = interval_s;
    Start(options);
  }

  void Restart(absl::Duration grace) {
    server_->Shutdown(grace);
    server_.reset();
    StartWithCheckpoints();
  }

  void Create(const std::string& name) {
    v1::CreateTableRequest request;
    request.mutable_spec()->set_name(name);
    request.mutable_spec()->set_num_embeddings(kRows);
    request.mutable_spec()->set_embedding_dim(kDim);
    grpc::ClientContext context;
    v1::TableInfo info;
    ASSERT_TRUE(stub_->CreateTable(&context, request, &info).ok());
  }

  // One SGD step on `row`; returns the table's new version.
  int64_t Push(const std::string& table, int64_t row) {
    v1::PushGradientsRequest request;
    request.set_table(table);
    request.add_indices(row);
    v1::Tensor* grad = request.mutable_grad();
    grad->set_dtype(v1::DTYPE_FLOAT32);
    grad->add_shape(1);
    grad->add_shape(kDim);
    const std::vector<float> values(kDim, 0.25f);
    grad->set_data(std::string(reinterpret_cast<const char*>(values.data()),
                               kDim * sizeof(float)));
    grpc::ClientContext context;
    v1::PushGradientsResponse response;
    EXPECT_TRUE(stub_->PushGradients(&context, request, &response).ok());
    return response.version();
  }

  grpc::Status Save(std::vector<std::string> tables, bool incremental,
                    v1::SaveCheckpointResponse* response) {
    v1::SaveCheckpointRequest request;
    request.mutable_tables()->Add(tables.begin(), tables.end());
    request.set_incremental(incremental);
    grpc::ClientContext context;
    return stub_->SaveCheckpoint(&context, request, response);
  }

  v1::TableInfo Info(const std::string& table) {
    v1::GetTableRequest request;
    request.set_name(table);
    grpc::ClientContext context;
    v1::TableInfo info;
    EXPECT_TRUE(stub_->GetTable(&context, request, &info).ok());
    return info;
  }

  std::string Rows(const std::string& table) {
    v1::ReadRowsRequest request;
    request.set_table(table);
    grpc::ClientContext context;
    std::string rows;
    auto reader = stub_->ReadRows(&context, request);
    v1::ReadRowsResponse chunk;
    while (reader->Read(&chunk)) rows += chunk.values().data();
    EXPECT_TRUE(reader->Finish().ok());
    return rows;
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::EmbeddingService::Stub> stub_;
};

TEST_F(CheckpointServiceTest, SaveWithoutCheckpointDirIsFailedPrecondition) {
  Start();
  Create("t");
  v1::SaveCheckpointResponse response;
  const grpc::Status status = Save({}, false, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(status.error_message(),
            "this server keeps no checkpoints: start it with --checkpoint_dir");
  EXPECT_FALSE(Info("t").has_last_checkpoint());
}

TEST_F(CheckpointServiceTest, SaveOfAnUnknownTableIsNotFoundBeforeAnyWrite) {
  StartWithCheckpoints();
  Create("a");
  v1::SaveCheckpointResponse response;
  const grpc::Status status = Save({"a", "b"}, false, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "table \"b\" not found");
  EXPECT_EQ(FileCount(dir_.path()), 0);
  EXPECT_FALSE(Info("a").has_last_checkpoint());
}

TEST_F(CheckpointServiceTest, SaveRepliesPerTableInTheOrderAsked) {
  StartWithCheckpoints();
  Create("a");
  Create("b");
  const int64_t version = Push("b", 3);
  v1::SaveCheckpointResponse response;
  ASSERT_TRUE(Save({"b", "a"}, false, &response).ok());
  ASSERT_THAT(response.saved(), SizeIs(2));
  const v1::SaveCheckpointResponse::Saved& b = response.saved(0);
  EXPECT_EQ(b.table(), "b");
  EXPECT_EQ(response.saved(1).table(), "a");
  EXPECT_EQ(b.checkpoint().version(), version);
  EXPECT_FALSE(b.checkpoint().incremental());
  EXPECT_EQ(b.rows(), kRows);
  EXPECT_GT(b.bytes_written(), kRows * kDim * 4);
  EXPECT_TRUE(std::filesystem::exists(b.checkpoint().path()))
      << b.checkpoint().path();
  const absl::Time time =
      absl::FromUnixMicros(b.checkpoint().time_unix_micros());
  EXPECT_LT(absl::Now() - time, absl::Minutes(1));

  const v1::TableInfo info = Info("b");
  ASSERT_TRUE(info.has_last_checkpoint());
  EXPECT_EQ(info.last_checkpoint().SerializeAsString(),
            b.checkpoint().SerializeAsString());

  // Empty asks for every table, by name.
  response.Clear();
  ASSERT_TRUE(Save({}, true, &response).ok());
  ASSERT_THAT(response.saved(), SizeIs(2));
  EXPECT_EQ(response.saved(0).table(), "a");
  EXPECT_EQ(response.saved(1).table(), "b");
}

TEST_F(CheckpointServiceTest, RestartRestoresTheTablesAndTheirCheckpoint) {
  StartWithCheckpoints();
  Create("t");
  Push("t", 1);
  v1::SaveCheckpointResponse response;
  ASSERT_TRUE(Save({}, false, &response).ok());
  const std::string rows = Rows("t");
  Restart(absl::ZeroDuration());  // No final checkpoint: the save is all.
  EXPECT_EQ(Rows("t"), rows);
  const v1::TableInfo info = Info("t");
  EXPECT_EQ(info.version(), 1);
  EXPECT_EQ(info.last_checkpoint().version(), 1);
}

TEST_F(CheckpointServiceTest, DeletedTableStaysDeletedAfterARestart) {
  StartWithCheckpoints();
  Create("gone");
  Create("kept");
  v1::SaveCheckpointResponse response;
  ASSERT_TRUE(Save({}, false, &response).ok());
  grpc::ClientContext context;
  v1::DeleteTableRequest request;
  request.set_name("gone");
  v1::DeleteTableResponse deleted;
  ASSERT_TRUE(stub_->DeleteTable(&context, request, &deleted).ok());
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/gone"));
  Restart(absl::Seconds(10));  // The final checkpoint must not revive it.

  v1::ListTablesResponse tables;
  grpc::ClientContext list_context;
  ASSERT_TRUE(
      stub_->ListTables(&list_context, v1::ListTablesRequest(), &tables).ok());
  ASSERT_THAT(tables.tables(), SizeIs(1));
  EXPECT_EQ(tables.tables(0).spec().name(), "kept");
  // Nothing left behind but the kept table's directory.
  int entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().filename(), "kept");
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST_F(CheckpointServiceTest, ShutdownSavesEveryTableOnceMore) {
  StartWithCheckpoints();
  Create("t");
  v1::SaveCheckpointResponse response;
  ASSERT_TRUE(Save({}, false, &response).ok());
  Push("t", 1);
  const int64_t version = Push("t", 2);
  const std::string rows = Rows("t");
  Restart(absl::Seconds(30));
  EXPECT_EQ(Info("t").version(), version);
  EXPECT_EQ(Rows("t"), rows);
}

TEST_F(CheckpointServiceTest, FinalCheckpointBeyondTheGracePeriodIsAbandoned) {
  StartWithCheckpoints();
  Create("t");
  v1::SaveCheckpointResponse response;
  ASSERT_TRUE(Save({}, false, &response).ok());
  const std::string saved_rows = Rows("t");
  Push("t", 1);
  // No grace at all: the final checkpoint never starts, the earlier one
  // stays the newest.
  Restart(absl::ZeroDuration());
  EXPECT_EQ(Info("t").version(), 0);
  EXPECT_EQ(Rows("t"), saved_rows);
}

TEST_F(CheckpointServiceTest, OpenStreamsAndIdleClientsDoNotStarveTheFinal) {
  // A client with an open LookupStream and another connected but idle
  // (stub_): gRPC's Shutdown would wait for both until its deadline; the
  // drain ends the stream and leaves the connections to the end.
  StartWithCheckpoints();
  Create("t");
  const int64_t version = Push("t", 2);
  grpc::ClientContext context;
  auto stream = stub_->LookupStream(&context);
  v1::LookupRequest request;
  request.set_table("t");
  request.add_indices(2);
  v1::LookupResponse response;
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));
  const absl::Time start = absl::Now();
  Restart(absl::Seconds(60));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_FALSE(stream->Finish().ok());
  EXPECT_EQ(Info("t").version(), version);
  EXPECT_EQ(Info("t").last_checkpoint().version(), version);
}

TEST_F(CheckpointServiceTest, PeriodicSavesAreIncrementalAndKeepUp) {
  StartWithCheckpoints(/*interval_s=*/0.05);
  Create("t");
  // The first checkpoint of a table is full, the next ones deltas.
  for (bool incremental : {false, true}) {
    const int64_t version = Push("t", 4);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    v1::TableInfo info = Info("t");
    while (info.last_checkpoint().version() != version &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      info = Info("t");
    }
    EXPECT_EQ(info.last_checkpoint().version(), version);
    EXPECT_EQ(info.last_checkpoint().incremental(), incremental);
  }
}

TEST_F(CheckpointServiceTest, ConcurrentSavesOfOneTableAllLand) {
  // The RPC from several threads and the periodic thread save the same
  // table while pushes go on; the manager serialises them per table.
  StartWithCheckpoints(/*interval_s=*/0.01);
  Create("t");
  std::atomic<bool> done{false};
  std::thread pusher([&] {
    for (int64_t i = 0; !done.load(); ++i) Push("t", i % kRows);
  });
  std::vector<std::thread> savers;
  std::atomic<int> failures{0};
  for (int thread = 0; thread < 3; ++thread) {
    savers.emplace_back([&, thread] {
      for (int i = 0; i < 10; ++i) {
        v1::SaveCheckpointResponse response;
        grpc::Status status = Save({"t"}, (i + thread) % 2 == 1, &response);
        if (!status.ok()) {
          ADD_FAILURE() << status.error_message();
          ++failures;
        }
      }
    });
  }
  for (std::thread& saver : savers) saver.join();
  done.store(true);
  pusher.join();
  EXPECT_EQ(failures.load(), 0);
  const std::string rows = Rows("t");
  const int64_t version = Info("t").version();
  Restart(absl::Seconds(30));
  EXPECT_EQ(Info("t").version(), version);
  EXPECT_EQ(Rows("t"), rows);
}

// Every method of EmbeddingService, called once with an empty request.
std::vector<std::pair<std::string, grpc::Status>> CallEveryMethod(
    v1::EmbeddingService::Stub& stub) {
  std::vector<std::pair<std::string, grpc::Status>> results;
  auto unary = [&](const char* name, auto method, auto request, auto response) {
    grpc::ClientContext context;
    results.emplace_back(name, (stub.*method)(&context, request, &response));
  };
  unary("CreateTable", &v1::EmbeddingService::Stub::CreateTable,
        v1::CreateTableRequest(), v1::TableInfo());
  unary("GetTable", &v1::EmbeddingService::Stub::GetTable,
        v1::GetTableRequest(), v1::TableInfo());
  unary("ListTables", &v1::EmbeddingService::Stub::ListTables,
        v1::ListTablesRequest(), v1::ListTablesResponse());
  unary("DeleteTable", &v1::EmbeddingService::Stub::DeleteTable,
        v1::DeleteTableRequest(), v1::DeleteTableResponse());
  unary("Lookup", &v1::EmbeddingService::Stub::Lookup, v1::LookupRequest(),
        v1::LookupResponse());
  unary("LookupBag", &v1::EmbeddingService::Stub::LookupBag,
        v1::LookupBagRequest(), v1::LookupBagResponse());
  unary("PushGradients", &v1::EmbeddingService::Stub::PushGradients,
        v1::PushGradientsRequest(), v1::PushGradientsResponse());
  unary("PushBagGradients", &v1::EmbeddingService::Stub::PushBagGradients,
        v1::PushBagGradientsRequest(), v1::PushGradientsResponse());
  unary("WriteRows", &v1::EmbeddingService::Stub::WriteRows,
        v1::WriteRowsRequest(), v1::WriteRowsResponse());
  unary("SetOptimizer", &v1::EmbeddingService::Stub::SetOptimizer,
        v1::SetOptimizerRequest(), v1::TableInfo());
  unary("SaveCheckpoint", &v1::EmbeddingService::Stub::SaveCheckpoint,
        v1::SaveCheckpointRequest(), v1::SaveCheckpointResponse());
  {
    grpc::ClientContext context;
    auto reader = stub.ReadRows(&context, v1::ReadRowsRequest());
    v1::ReadRowsResponse ignored;
    while (reader->Read(&ignored)) {
    }
    results.emplace_back("ReadRows", reader->Finish());
  }
  {
    grpc::ClientContext context;
    auto stream = stub.LookupStream(&context);
    stream->WritesDone();
    v1::LookupResponse ignored;
    while (stream->Read(&ignored)) {
    }
    results.emplace_back("LookupStream", stream->Finish());
  }
  return results;
}

TEST(RestoringServiceTest, EveryCallIsUnavailableWhileRestoring) {
  TableRegistry registry(RegistryOptions{});
  EmbeddingServiceImpl service(&registry, ServiceOptions{});
  service.SetRestoring(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::EmbeddingService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  const auto results = CallEveryMethod(*stub);
  // One per RPC of the service: a new RPC must be added above.
  EXPECT_THAT(results, SizeIs(v1::SaveCheckpointRequest::descriptor()
                                  ->file()
                                  ->FindServiceByName("EmbeddingService")
                                  ->method_count()));
  for (const auto& [method, status] : results) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << method;
    EXPECT_EQ(status.error_message(), "restoring checkpoints") << method;
  }
  service.SetRestoring(false);
  grpc::ClientContext context;
  v1::ListTablesResponse tables;
  EXPECT_TRUE(stub->ListTables(&context, {}, &tables).ok());
  server->Shutdown();
}

}  // namespace
}  // namespace embedding
