// Saves that fail on I/O: a full disk (a file size limit, EFBIG), a
// checkpoint directory that became a file (ENOTDIR) or was deleted (ENOENT).
// Each fails with the promised code and a message naming the file and the
// OS error; no temporary directory is left and the previous checkpoint
// survives.
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/checkpoint/file_io.h"
#include "tests/checkpoint/checkpoint_testing.h"

namespace embedding {
namespace {

using ::embedding::internal::JoinPath;
using ::embedding::testing::Capture;
using ::embedding::testing::ExpectSameImage;
using ::embedding::testing::GetTable;
using ::embedding::testing::List;
using ::embedding::testing::RestoreInto;
using ::embedding::testing::SaveOne;
using ::embedding::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::MatchesRegex;

class IoFailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_
                    .Create(testing::TestSpec("t", OptimizerKind::kAdagrad,
                                              /*rows=*/4000, /*dim=*/16),
                            {})
                    .ok());
    manager_ = testing::MakeManager(dir_.path(), registry_);
    SaveOne(*manager_, "t", SaveKind::kFull);
    saved_ = Capture(*GetTable(registry_, "t"));
    testing::Train(*GetTable(registry_, "t"), {1, 2, 3}, 1);
  }

  absl::Status Save() {
    const std::vector<std::string> tables = {"t"};
    return manager_->Save(tables, SaveKind::kFull).status();
  }

  TempDir dir_;
  TableRegistry registry_{{}};
  std::unique_ptr<CheckpointManager> manager_;
  testing::TableImage saved_;
};

// The status of a save in a child process whose files may not grow past
// 64 KiB: writes then fail with EFBIG (SIGXFSZ ignored), as on a full disk.
TEST_F(IoFailureTest, AFullDiskFailsTheSaveAndKeepsThePreviousCheckpoint) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipe_fds[0]);
    signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{.rlim_cur = 64 << 10, .rlim_max = 64 << 10};
    setrlimit(RLIMIT_FSIZE, &limit);
    const absl::Status status = Save();
    const std::string report =
        absl::StrCat(static_cast<int>(status.code()), " ", status.message());
    (void)!write(pipe_fds[1], report.data(), report.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string report;
  char buffer[512];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0;) {
    report.append(buffer, n);
  }
  close(pipe_fds[0]);
  int wait_status;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);
  EXPECT_THAT(
      report,
      MatchesRegex(absl::StrCat(
          static_cast<int>(absl::StatusCode::kResourceExhausted),
          " saving table \"t\": write ", dir_.path(),
          "/t/\\.tmp-00000002\\.full/(weights|state)\\.npy: File too large "
          "\\(EFBIG\\)")));
  EXPECT_THAT(List(JoinPath(dir_.path(), "t")), ElementsAre("00000001.full"));
  ExpectSameImage(Capture(*GetTable(*RestoreInto(dir_.path()).registry, "t")),
                  saved_);
}

TEST_F(IoFailureTest, ACheckpointDirectoryThatBecameAFileFailsTheSave) {
  const std::string moved = dir_.path() + ".moved";
  ASSERT_TRUE(internal::Rename(dir_.path(), moved).ok());
  testing::WriteBytes(dir_.path(), "a file now");
  const absl::Status status = Save();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            absl::StrCat("saving table \"t\": mkdir ", dir_.path(),
                         "/t: Not a directory (ENOTDIR)"));
  ASSERT_EQ(unlink(dir_.path().c_str()), 0);
  ASSERT_TRUE(internal::Rename(moved, dir_.path()).ok());
  EXPECT_THAT(List(JoinPath(dir_.path(), "t")), ElementsAre("00000001.full"));
  // The server keeps going: once the directory is back, saves work.
  EXPECT_TRUE(Save().ok());
}

TEST_F(IoFailureTest, ADeletedCheckpointDirectoryFailsTheSave) {
  ASSERT_TRUE(internal::RemoveTree(dir_.path()).ok());
  const absl::Status status = Save();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            absl::StrCat("saving table \"t\": mkdir ", dir_.path(),
                         "/t: No such file or directory (ENOENT)"));
  ASSERT_EQ(mkdir(dir_.path().c_str(), 0755), 0);
}

// Permission bits do not stop root; without root, a read-only table
// directory fails the save with EACCES.
TEST_F(IoFailureTest, AReadOnlyDirectoryFailsTheSave) {
  if (geteuid() == 0) GTEST_SKIP() << "root ignores permission bits";
  const std::string table_dir = JoinPath(dir_.path(), "t");
  ASSERT_EQ(chmod(table_dir.c_str(), 0555), 0);
  const absl::Status status = Save();
  ASSERT_EQ(chmod(table_dir.c_str(), 0755), 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            absl::StrCat("saving table \"t\": mkdir ", table_dir,
                         "/.tmp-00000002.full: Permission denied (EACCES)"));
  EXPECT_THAT(List(table_dir), ElementsAre("00000001.full"));
}

TEST(IoErrorTest, OsErrorsMapToThePromisedCodes) {
  const struct {
    int error;
    absl::StatusCode code;
  } cases[] = {
      {ENOSPC, absl::StatusCode::kResourceExhausted},
      {EDQUOT, absl::StatusCode::kResourceExhausted},
      {EFBIG, absl::StatusCode::kResourceExhausted},
      {ENOENT, absl::StatusCode::kFailedPrecondition},
      {EACCES, absl::StatusCode::kFailedPrecondition},
      {EROFS, absl::StatusCode::kFailedPrecondition},
      {EPERM, absl::StatusCode::kFailedPrecondition},
      {ENOTDIR, absl::StatusCode::kFailedPrecondition},
      {EIO, absl::StatusCode::kUnavailable},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(internal::IoError(c.error, "write", "/x").code(), c.code)
        << c.error;
  }
  EXPECT_EQ(internal::IoError(ENOSPC, "fsync", "/d/f").message(),
            "fsync /d/f: No space left on device (ENOSPC)");
}

}  // namespace
}  // namespace embedding
