// client/CONTRACT.md's defaults table against the C++ client and the CLI's
// command defaults: every row must be there and match, and every row must be
// checked here (a row the table gains fails until a check is added).
// tests/contract checks the same table against the Python client and the
// CLI's printed flag defaults.
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/cpp/cli_commands.h"
#include "client/cpp/cli_text.h"
#include "client/cpp/embedding_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

constexpr char kBegin[] = "<!-- contract-defaults:begin -->";
constexpr char kEnd[] = "<!-- contract-defaults:end -->";

// {key: value} of the rows between the markers, values as written.
std::map<std::string, std::string> ContractDefaults() {
  std::ifstream file(EMBEDDING_CONTRACT_PATH);
  std::stringstream text;
  text << file.rdbuf();
  const std::string contract = text.str();
  const size_t begin = contract.find(kBegin);
  const size_t end = contract.find(kEnd);
  EXPECT_NE(begin, std::string::npos) << EMBEDDING_CONTRACT_PATH;
  EXPECT_NE(end, std::string::npos) << EMBEDDING_CONTRACT_PATH;
  std::map<std::string, std::string> rows;
  if (begin == std::string::npos || end == std::string::npos) return rows;
  const std::string table = contract.substr(begin + sizeof(kBegin) - 1,
                                            end - begin - (sizeof(kBegin) - 1));
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(table, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    ++line_number;
    std::vector<std::string> cells = absl::StrSplit(
        absl::StripSuffix(absl::StripPrefix(line, "|"), "|"), '|');
    for (std::string& cell : cells) absl::StripAsciiWhitespace(&cell);
    if (line_number == 1) {  // The header, then its |---| line.
      EXPECT_THAT(cells, ::testing::ElementsAre("key", "value", "what"));
      continue;
    }
    if (line_number == 2) continue;
    EXPECT_GE(cells.size(), 2u) << line;
    if (cells.size() >= 2) rows[cells[0]] = cells[1];
  }
  return rows;
}

// The contract's value of `key`; fails the test when the row is missing.
std::string Row(const std::map<std::string, std::string>& rows,
                const std::string& key) {
  auto it = rows.find(key);
  if (it == rows.end()) {
    ADD_FAILURE() << "client/CONTRACT.md has no default row \"" << key << "\"";
    return "";
  }
  return it->second;
}

int64_t Integer(const std::string& text) {
  int64_t value = 0;
  EXPECT_TRUE(absl::SimpleAtoi(text, &value)) << text;
  return value;
}

// What each row is checked against here.
const char* const kCheckedKeys[] = {
    "address",  "timeout_seconds", "max_message_bytes", "bulk_message_bytes",
    "bag_mode", "lookup_dtype",    "max_retries",       "retry_backoff_ms",
};

class ContractTest : public ::testing::Test {
 protected:
  const std::map<std::string, std::string> rows_ = ContractDefaults();
};

TEST_F(ContractTest, EveryRowIsCheckedHere) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : rows_) keys.push_back(key);
  EXPECT_THAT(keys, ::testing::UnorderedElementsAreArray(kCheckedKeys));
}

TEST_F(ContractTest, AddressIsTheClientsAndTheClisDefault) {
  EXPECT_EQ(kDefaultAddress, Row(rows_, "address"));
}

TEST_F(ContractTest, ClientOptionsDefaults) {
  const ClientOptions options;
  EXPECT_EQ(options.default_timeout,
            absl::Seconds(Integer(Row(rows_, "timeout_seconds"))));
  EXPECT_EQ(options.max_message_bytes,
            Integer(Row(rows_, "max_message_bytes")));
  EXPECT_EQ(options.max_retries, Integer(Row(rows_, "max_retries")));
  EXPECT_EQ(options.retry_backoff,
            absl::Milliseconds(Integer(Row(rows_, "retry_backoff_ms"))));
  EXPECT_TRUE(options.client_id.empty());  // A random one per client.
}

TEST_F(ContractTest, BulkMessageBytes) {
  EXPECT_EQ(kBulkMessageBytes, Integer(Row(rows_, "bulk_message_bytes")));
}

// The client's enums by their proto names; the CLI's flags as text.
TEST_F(ContractTest, BagModeAndLookupDTypeOfTheClientAndTheCli) {
  const std::string mode = Row(rows_, "bag_mode");
  const std::string dtype = Row(rows_, "lookup_dtype");
  EXPECT_EQ(v1::BagMode_Name(Bags{}.mode),
            "BAG_MODE_" + absl::AsciiStrToUpper(mode));
  EXPECT_EQ(v1::DType_Name(LookupOptions{}.dtype),
            "DTYPE_" + absl::AsciiStrToUpper(dtype));
  EXPECT_EQ(cli::CommandFlags{}.mode, mode);
  EXPECT_EQ(cli::CommandFlags{}.dtype, dtype);
}

}  // namespace
}  // namespace embedding
