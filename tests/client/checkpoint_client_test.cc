// Checkpoints and .npy files through the C++ client and the CLI's commands,
// against the real in-process server with a checkpoint directory and a
// 1 MiB message limit on both sides (so a 40000 x 16 table moves in three
// chunks each way: anything sent whole would be refused).
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cpp/cli_commands.h"
#include "client/cpp/embedding_client.h"
#include "client/cpp/npy_format.h"
#include "client/cpp/npy_transfer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/server.h"
#include "spdlog/spdlog.h"
#include "tests/client/wire_bytes.h"
#include "tests/service/temp_dir.h"

namespace embedding {
namespace {

using ::embedding::testing::DecodeFloats;
using ::embedding::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr int kMessageBytes = 1 << 20;
constexpr int64_t kDim = 16;
constexpr int64_t kRows = 40000;

v1::TableSpec Spec(const std::string& name, int64_t rows) {
  v1::TableSpec spec;
  spec.set_name(name);
  spec.set_num_embeddings(rows);
  spec.set_embedding_dim(kDim);
  spec.mutable_optimizer()->mutable_sgd()->set_lr(0.5f);
  return spec;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A .npy file: the header of `dict` as numpy writes it, then `data_bytes`
// zero bytes.
std::string NpyFile(const std::string& dict, int64_t data_bytes) {
  std::string text = dict;
  text.append(64 - (10 + text.size() + 1) % 64, ' ');
  text.push_back('\n');
  return std::string("\x93NUMPY\x01\x00", 8) +
         static_cast<char>(text.size() & 0xff) +
         static_cast<char>(text.size() >> 8) + text +
         std::string(data_bytes, '\0');
}

class CheckpointClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::warn); }

  void SetUp() override { StartServer(checkpoints_.path()); }

  void StartServer(const std::string& checkpoint_dir) {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.service.max_message_bytes = kMessageBytes;
    options.checkpoint_dir = checkpoint_dir;
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->WaitUntilServing(absl::Seconds(30)));
    ClientOptions client_options;
    client_options.max_message_bytes = kMessageBytes;
    absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
        EmbeddingClient::Connect(absl::StrCat("127.0.0.1:", server_->port()),
                                 client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  // A table whose row r holds r + c / 100 in column c.
  void Create(const std::string& name, int64_t rows = kRows) {
    std::vector<float> weights(rows * kDim);
    for (int64_t i = 0; i < rows * kDim; ++i) {
      weights[i] = static_cast<float>(i / kDim) + (i % kDim) / 100.0f;
    }
    absl::StatusOr<v1::TableInfo> info =
        client_->CreateTable(Spec(name, rows), weights);
    ASSERT_TRUE(info.ok()) << info.status();
  }

  void Push(const std::string& table, std::vector<int64_t> rows) {
    const std::vector<float> grad(rows.size() * kDim, 1.0f);
    ASSERT_TRUE(client_->PushGradients(table, rows, grad).ok());
  }

  std::vector<float> Rows(const std::string& table) {
    absl::StatusOr<ReadRowsResult> read = client_->ReadRowRange(table, 0, 0);
    EXPECT_TRUE(read.ok()) << read.status();
    return read.ok() ? read->values.data : std::vector<float>();
  }

  v1::TableInfo Info(const std::string& table) {
    absl::StatusOr<v1::TableInfo> info = client_->GetTable(table);
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? *info : v1::TableInfo();
  }

  // Runs a CLI command against the server; returns its output.
  absl::StatusOr<std::string> Cli(std::vector<std::string> args,
                                  cli::CommandFlags flags = {}) {
    std::ostringstream out;
    absl::Status status = cli::RunCommand(*client_, args, flags, out);
    if (!status.ok()) return status;
    return out.str();
  }

  TempDir checkpoints_;
  TempDir files_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<EmbeddingClient> client_;
};

TEST_F(CheckpointClientTest, SaveWithoutNamesSavesEveryTableByName) {
  Create("b", 10);
  Create("a", 20);
  Push("a", {3});
  absl::StatusOr<v1::SaveCheckpointResponse> response =
      client_->SaveCheckpoint();
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_THAT(response->saved(), SizeIs(2));
  const v1::SaveCheckpointResponse::Saved& a = response->saved(0);
  EXPECT_EQ(a.table(), "a");
  EXPECT_EQ(response->saved(1).table(), "b");
  EXPECT_EQ(a.checkpoint().version(), Info("a").version());
  EXPECT_FALSE(a.checkpoint().incremental());
  EXPECT_EQ(a.rows(), 20);
  EXPECT_GT(a.bytes_written(), 20 * kDim * 4);
  EXPECT_THAT(a.checkpoint().path(), HasSubstr(checkpoints_.path()));
  EXPECT_GT(a.checkpoint().time_unix_micros(), 0);

  // GetTable and ListTables report it.
  const v1::TableInfo info = Info("a");
  ASSERT_TRUE(info.has_last_checkpoint());
  EXPECT_EQ(info.last_checkpoint().path(), a.checkpoint().path());
  EXPECT_EQ(info.last_checkpoint().version(), a.checkpoint().version());
  absl::StatusOr<std::vector<v1::TableInfo>> tables = client_->ListTables();
  ASSERT_TRUE(tables.ok()) << tables.status();
  EXPECT_EQ((*tables)[0].last_checkpoint().path(), a.checkpoint().path());
}

TEST_F(CheckpointClientTest, IncrementalSaveWritesOnlyTheRowsChanged) {
  Create("t");
  absl::StatusOr<v1::SaveCheckpointResponse> full =
      client_->SaveCheckpoint({"t"});
  ASSERT_TRUE(full.ok()) << full.status();
  Push("t", {5, 7});
  absl::StatusOr<v1::SaveCheckpointResponse> delta =
      client_->SaveCheckpoint({"t"}, /*incremental=*/true);
  ASSERT_TRUE(delta.ok()) << delta.status();
  ASSERT_THAT(delta->saved(), SizeIs(1));
  EXPECT_TRUE(delta->saved(0).checkpoint().incremental());
  EXPECT_EQ(delta->saved(0).rows(), 2);
  EXPECT_LT(delta->saved(0).bytes_written(),
            full->saved(0).bytes_written() / 10);
  EXPECT_TRUE(Info("t").last_checkpoint().incremental());
}

TEST_F(CheckpointClientTest, SaveNamingAnUnknownTableIsNotFoundAndSavesNone) {
  Create("t", 10);
  const std::vector<std::string> tables = {"t", "nope"};
  EXPECT_EQ(client_->SaveCheckpoint(tables).status(),
            absl::NotFoundError("table \"nope\" not found"));
  EXPECT_FALSE(Info("t").has_last_checkpoint());
}

TEST_F(CheckpointClientTest, CliCheckpointPrintsOneLinePerTable) {
  Create("a", 10);
  Create("b", 10);
  absl::StatusOr<std::string> out = Cli({"checkpoint"});
  ASSERT_TRUE(out.ok()) << out.status();
  const std::regex line(
      "saved (a|b): version 0, 10 rows, [0-9]+ bytes, full, .+");
  std::vector<std::string> lines =
      absl::StrSplit(*out, '\n', absl::SkipEmpty());
  ASSERT_THAT(lines, SizeIs(2));
  for (const std::string& text : lines) {
    EXPECT_TRUE(std::regex_match(text, line)) << text;
  }
  EXPECT_THAT(lines[0], ::testing::StartsWith("saved a: "));

  Push("b", {1});
  cli::CommandFlags incremental;
  incremental.incremental = true;
  out = Cli({"checkpoint", "b"}, incremental);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(std::regex_match(
      *out, std::regex("saved b: version 1, 1 rows, [0-9]+ bytes, "
                       "incremental, .+\n")))
      << *out;

  out = Cli({"describe", "b"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(std::regex_search(
      *out, std::regex("last_checkpoint: +version 1, incremental, "
                       "20[0-9-]+T[0-9:.]+\\+00:00, .+\n")))
      << *out;
  out = Cli({"describe", "a"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("last_checkpoint:    version 0, full, "));
}

TEST_F(CheckpointClientTest, RestartedServerHasTheTablesBack) {
  Create("t");
  Push("t", {1, 2, 3});
  ASSERT_TRUE(client_->SaveCheckpoint().ok());
  Push("t", {4});  // After the checkpoint: saved by the shutdown's.
  const std::vector<float> rows = Rows("t");
  const int64_t version = Info("t").version();
  server_->Shutdown(absl::Seconds(30));
  server_.reset();

  StartServer(checkpoints_.path());
  const v1::TableInfo info = Info("t");
  EXPECT_EQ(info.version(), version);
  EXPECT_EQ(info.last_checkpoint().version(), version);
  EXPECT_EQ(Rows("t"), rows);
}

TEST_F(CheckpointClientTest, ExportWritesTheTableAsNumpyWouldInChunks) {
  Create("t");
  Push("t", {0, kRows - 1});
  const std::string file = files_.File("t.npy");
  absl::StatusOr<NpyTransfer> exported = ExportNpy(*client_, "t", file);
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ(exported->rows, kRows);
  EXPECT_EQ(exported->dim, kDim);
  const std::string bytes = ReadFile(file);
  EXPECT_EQ(exported->file_bytes, static_cast<int64_t>(bytes.size()));
  const std::string header = NpyHeader(kRows, kDim);
  ASSERT_EQ(bytes.size(), header.size() + kRows * kDim * sizeof(float));
  EXPECT_EQ(bytes.substr(0, header.size()), header);
  EXPECT_EQ(DecodeFloats(bytes.substr(header.size())), Rows("t"));
  EXPECT_FALSE(std::filesystem::exists(file + ".partial"));
}

TEST_F(CheckpointClientTest, ImportRestoresAnExportIntoAnotherTable) {
  Create("t");
  Push("t", {9});
  const std::string file = files_.File("t.npy");
  ASSERT_TRUE(ExportNpy(*client_, "t", file).ok());
  v1::TableSpec spec = Spec("copy", kRows);
  spec.mutable_initializer()->mutable_constant()->set_value(0);
  ASSERT_TRUE(client_->CreateTable(spec).ok());
  absl::StatusOr<NpyTransfer> imported = ImportNpy(*client_, "copy", file);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->rows, kRows);
  EXPECT_EQ(imported->version, 3);  // One range write per chunk.
  EXPECT_EQ(Rows("copy"), Rows("t"));
}

TEST_F(CheckpointClientTest, CliExportAndImport) {
  Create("t", 100);
  Create("u", 100);
  Push("t", {1});
  const std::string file = files_.File("t.npy");
  absl::StatusOr<std::string> out = Cli({"export", "t", file});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, absl::StrCat("exported t: 100 rows x 16 to ", file, " (",
                               128 + 100 * kDim * 4, " bytes)\n"));
  out = Cli({"import", "u", file});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, absl::StrCat("imported u: 100 rows x 16 from ", file,
                               ", version 1\n"));
  EXPECT_EQ(Rows("u"), Rows("t"));
  EXPECT_EQ(Cli({"export", "t"}).status(),
            absl::InvalidArgumentError(
                "export takes a table NAME and a FILE, got 1 operands"));
}

TEST_F(CheckpointClientTest, ImportOfAnUnfitFileIsInvalidArgumentNamingIt) {
  Create("t", 10);
  const std::vector<float> before = Rows("t");
  const std::string good = "'fortran_order': False, 'shape': (10, 16), }";
  const struct {
    const char* name;
    std::string bytes;
    std::string message;
  } cases[] = {
      {"float64", NpyFile("{'descr': '<f8', " + good, 10 * 16 * 8),
       "dtype <f8 is not little-endian float32 (<f4)"},
      {"one-dimensional",
       NpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (160,), }",
               160 * 4),
       "shape (160,) is not 2-D (num_embeddings, dim)"},
      {"wrong shape",
       NpyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (16, 10), }",
               160 * 4),
       "shape (16, 10) does not match table t [10, 16]"},
      {"fortran order",
       NpyFile("{'descr': '<f4', 'fortran_order': True, 'shape': (10, 16), }",
               160 * 4),
       "the array is in Fortran (column-major) order; save it in C order "
       "(numpy.ascontiguousarray)"},
      {"truncated", NpyFile("{'descr': '<f4', " + good, 160 * 4 - 3),
       "truncated: its header says (10, 16) float32, 640 bytes of data, but "
       "637 bytes follow the header"},
      {"trailing bytes", NpyFile("{'descr': '<f4', " + good, 160 * 4 + 4),
       "its header says (10, 16) float32, 640 bytes of data, but 644 bytes "
       "follow the header"},
      {"not npy", "just text",
       "not a .npy file (it does not start with \\x93NUMPY)"},
  };
  for (const auto& [name, bytes, message] : cases) {
    SCOPED_TRACE(name);
    const std::string file = files_.File(absl::StrCat(name, ".npy"));
    WriteFile(file, bytes);
    const absl::Status status = ImportNpy(*client_, "t", file).status();
    EXPECT_EQ(status,
              absl::InvalidArgumentError(absl::StrCat(file, ": ", message)));
    // The CLI returns the same.
    EXPECT_EQ(Cli({"import", "t", file}).status(), status);
  }
  EXPECT_EQ(Rows("t"), before);
  EXPECT_EQ(Info("t").version(), 0);
}

TEST_F(CheckpointClientTest, MissingFilesAndTablesAreNotFound) {
  Create("t", 10);
  const std::string missing = files_.File("missing.npy");
  EXPECT_EQ(ImportNpy(*client_, "t", missing).status(),
            absl::NotFoundError(absl::StrCat("cannot open ", missing,
                                             ": No such file or directory")));
  const std::string file = files_.File("t.npy");
  ASSERT_TRUE(ExportNpy(*client_, "t", file).ok());
  EXPECT_EQ(ImportNpy(*client_, "nope", file).status(),
            absl::NotFoundError("table \"nope\" not found"));
  EXPECT_EQ(ExportNpy(*client_, "nope", files_.File("nope.npy")).status(),
            absl::NotFoundError("table \"nope\" not found"));
  EXPECT_FALSE(std::filesystem::exists(files_.File("nope.npy")));
  // A directory that does not exist: the OS error, nothing left behind.
  const std::string nowhere = files_.File("no/such/dir/t.npy");
  EXPECT_EQ(ExportNpy(*client_, "t", nowhere).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(CheckpointWithoutDirectoryTest, SaveIsFailedPrecondition) {
  spdlog::set_level(spdlog::level::warn);
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<std::unique_ptr<EmbeddingClient>> client =
      EmbeddingClient::Connect(absl::StrCat("127.0.0.1:", (*server)->port()));
  ASSERT_TRUE(client.ok());
  const absl::Status expected = absl::FailedPreconditionError(
      "this server keeps no checkpoints: start it with --checkpoint_dir");
  EXPECT_EQ((*client)->SaveCheckpoint().status(), expected);
  std::ostringstream out;
  EXPECT_EQ(cli::RunCommand(**client, {"checkpoint"}, {}, out), expected);
  EXPECT_EQ(out.str(), "");
}

}  // namespace
}  // namespace embedding
