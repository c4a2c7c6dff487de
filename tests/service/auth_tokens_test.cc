#include "server/security/auth_tokens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "absl/status/status.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

absl::Status ParseError(const std::string& text) {
  return TokenSet::Parse(text, "tokens.txt").status();
}

TEST(TokenSetTest, ParsesRolesTokensNamesCommentsAndBlankLines) {
  absl::StatusOr<TokenSet> tokens = TokenSet::Parse(
      "# operators\n"
      "\n"
      "reader r-1\n"
      "  trainer\tt-1  \n"
      "admin a-1\n"
      "admin cn:ops console\n",
      "tokens.txt");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->FindToken("r-1"), Role::kReader);
  EXPECT_EQ(tokens->FindToken("t-1"), Role::kTrainer);
  EXPECT_EQ(tokens->FindToken("a-1"), Role::kAdmin);
  EXPECT_EQ(tokens->FindToken("a-"), std::nullopt);
  EXPECT_EQ(tokens->FindToken("a-11"), std::nullopt);
  EXPECT_EQ(tokens->FindToken(""), std::nullopt);
  EXPECT_EQ(tokens->FindCommonName("ops console"), Role::kAdmin);
  EXPECT_EQ(tokens->FindCommonName("ops"), std::nullopt);
  EXPECT_EQ(tokens->TokenCount(Role::kReader), 1);
  EXPECT_EQ(tokens->TokenCount(Role::kAdmin), 1);
  EXPECT_EQ(tokens->CommonNameCount(), 1);
}

TEST(TokenSetTest, EmptyFileHasNoTokens) {
  absl::StatusOr<TokenSet> tokens = TokenSet::Parse("# none yet\n", "t");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->FindToken("anything"), std::nullopt);
}

TEST(TokenSetTest, LineWithOneFieldIsInvalidArgumentWithoutEchoingIt) {
  const absl::Status status = ParseError("reader ok\nsecret-token\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("tokens.txt:2: expected"));
  EXPECT_THAT(status.message(), Not(HasSubstr("secret-token")));
}

TEST(TokenSetTest, UnknownRoleIsInvalidArgumentWithoutEchoingIt) {
  const absl::Status status = ParseError("secret-token reader\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "tokens.txt:1: unknown role (expected reader, trainer or admin)");
}

TEST(TokenSetTest, RoleNamesAreCaseSensitive) {
  EXPECT_EQ(ParseError("Admin tok\n").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TokenSetTest, TokenWithWhitespaceIsInvalidArgument) {
  const absl::Status status = ParseError("\n\nreader two words\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "tokens.txt:3: a token cannot contain whitespace");
}

TEST(TokenSetTest, DuplicateTokenIsInvalidArgumentNamingBothLines) {
  const absl::Status status = ParseError("reader same\nadmin same\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "tokens.txt:2: duplicate token (first on line 1)");
}

TEST(TokenSetTest, EmptyCommonNameIsInvalidArgument) {
  const absl::Status status = ParseError("admin cn:\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "tokens.txt:1: empty name after \"cn:\"");
}

TEST(TokenSetTest, DuplicateCommonNameIsInvalidArgument) {
  const absl::Status status =
      ParseError("reader cn:trainer-1\nadmin cn:trainer-1\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "tokens.txt:2: common name \"trainer-1\" already mapped on line "
            "1");
}

TEST(TokenSetTest, UnreadableFileIsInvalidArgumentNamingIt) {
  const absl::Status status =
      TokenSet::ReadFile("/nonexistent/tokens.txt").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("cannot read /nonexistent/tokens.txt: No such file"));
}

TEST(TokenSetTest, ReadFileNamesTheFileInParseErrors) {
  const std::string path = ::testing::TempDir() + "/tokens_bad.txt";
  std::ofstream(path) << "reader ok\nwriter x\n";
  const absl::Status status = TokenSet::ReadFile(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(path + ":2: unknown role"));
}

}  // namespace
}  // namespace embedding
