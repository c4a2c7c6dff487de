#include "server/checkpoint/checkpoint_format.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace embedding::internal {
namespace {

TEST(CheckpointFormatTest, CheckpointNamesHaveOneSpelling) {
  EXPECT_EQ((CheckpointName{7, false}).ToString(), "00000007.full");
  EXPECT_EQ((CheckpointName{123456789, true}).ToString(), "123456789.delta");
  const std::optional<CheckpointName> parsed =
      CheckpointName::Parse("00000042.delta");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->sequence, 42);
  EXPECT_TRUE(parsed->delta);
  for (const char* other :
       {"42.full", "00000000.full", "0000042a.full", "00000042.fulll",
        ".tmp-00000042.full", "00000042", "", "0000000000000000000000042.full",
        "099999999.full"}) {
    EXPECT_FALSE(CheckpointName::Parse(other).has_value()) << other;
  }
}

TEST(CheckpointFormatTest, TableDirectoriesStayInsideTheCheckpointDirectory) {
  EXPECT_EQ(TableDirectoryName("users"), "users");
  EXPECT_EQ(TableDirectoryName("."), "%2E");
  EXPECT_EQ(TableDirectoryName(".."), "%2E.");
  EXPECT_EQ(TableDirectoryName(".x"), "%2Ex");
  for (const char* table : {"users", ".", "..", ".x", "a.b"}) {
    EXPECT_EQ(TableOfDirectory(TableDirectoryName(table)), table);
  }
  for (const char* other : {".tmp", ".", "..", "a b", "%2", "x%2E"}) {
    EXPECT_FALSE(TableOfDirectory(other).has_value()) << other;
  }
}

checkpoint_v1::CheckpointMetadata SomeMetadata() {
  checkpoint_v1::CheckpointMetadata metadata;
  metadata.set_table("t");
  metadata.set_sequence(3);
  metadata.set_rows(10);
  return metadata;
}

TEST(CheckpointFormatTest, FramedMetadataRoundTrips) {
  const std::string file = FrameMetadata(SomeMetadata());
  EXPECT_EQ(file.substr(0, 8), "EMBDCKPT");
  absl::StatusOr<checkpoint_v1::CheckpointMetadata> read =
      UnframeMetadata(file);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->SerializeAsString(), SomeMetadata().SerializeAsString());
}

TEST(CheckpointFormatTest, EveryDamagedFrameIsRefusedWithItsReason) {
  const std::string good = FrameMetadata(SomeMetadata());
  std::string magic = good;
  magic[0] = 'X';
  std::string future = good;
  future[8] = 3;
  std::string reserved = good;
  reserved[12] = 1;
  std::string flipped = good;
  flipped.back() ^= 0x10;
  const struct {
    std::string file;
    absl::StatusCode code;
    std::string message;
  } cases[] = {
      {good.substr(0, 20), absl::StatusCode::kDataLoss,
       "truncated: 20 bytes, less than the 32-byte header"},
      {magic, absl::StatusCode::kDataLoss,
       "wrong magic \"XMBDCKPT\", expected \"EMBDCKPT\": not a checkpoint"},
      {future, absl::StatusCode::kFailedPrecondition,
       "format version 3; this server reads versions 1 and 2 (written by a "
       "newer one)"},
      {good.substr(0, good.size() - 1), absl::StatusCode::kDataLoss,
       absl::StrCat("header says ", good.size() - 32,
                    " bytes of metadata follow, the file has ",
                    good.size() - 33, " (truncated or corrupt)")},
      {reserved, absl::StatusCode::kDataLoss, "checksum mismatch"},
      {flipped, absl::StatusCode::kDataLoss, "checksum mismatch"},
  };
  for (const auto& c : cases) {
    const absl::Status status = UnframeMetadata(c.file).status();
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_TRUE(absl::StartsWith(status.message(), c.message)) << status;
  }
}

TEST(CheckpointFormatTest, NpyHeadersAreNumpysAndAligned) {
  const std::string header = NpyHeader(NpyType::kFloat32, {1000, 64});
  EXPECT_EQ(header.size() % 64, 0);
  EXPECT_EQ(header.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(static_cast<size_t>(static_cast<unsigned char>(header[8]) |
                                static_cast<unsigned char>(header[9]) << 8),
            header.size() - 10);
  EXPECT_EQ(header.substr(10, header.find('}') - 9),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 64), }");
  EXPECT_EQ(header.back(), '\n');
  const std::string ids = NpyHeader(NpyType::kInt64, {5});
  EXPECT_NE(ids.find("'descr': '<i8'"), std::string::npos);
  EXPECT_NE(ids.find("'shape': (5,)"), std::string::npos);
}

TEST(CheckpointFormatTest, ChecksumIsXxh3With64Bits) {
  // XXH3_64bits of the empty input and of "a" (reference values from the
  // xxHash project's own sanity checks).
  EXPECT_EQ(Checksum(""), 0x2D06800538D394C2ULL);
  EXPECT_EQ(Checksum("a"), 0xE6C632B61E964E1FULL);
}

}  // namespace
}  // namespace embedding::internal
