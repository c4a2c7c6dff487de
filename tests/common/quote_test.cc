#include "common/quote.h"

#include <string>

#include "gtest/gtest.h"

namespace embedding {
namespace {

TEST(QuoteTest, ShortStringsAreQuotedWhole) {
  EXPECT_EQ(QuoteForMessage(""), "\"\"");
  EXPECT_EQ(QuoteForMessage("ads.v2"), "\"ads.v2\"");
  EXPECT_EQ(QuoteForMessage(std::string(64, 'x')),
            "\"" + std::string(64, 'x') + "\"");
}

TEST(QuoteTest, LongStringsKeepAPrefixAndTheirLength) {
  EXPECT_EQ(QuoteForMessage(std::string(65, 'x')),
            "\"" + std::string(64, 'x') + "\"... (65 bytes)");
  EXPECT_EQ(QuoteForMessage(std::string(8000, 'y')),
            "\"" + std::string(64, 'y') + "\"... (8000 bytes)");
}

TEST(QuoteTest, QuotesAndUnprintableBytesAreEscaped) {
  EXPECT_EQ(QuoteForMessage("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
  EXPECT_EQ(QuoteForMessage(std::string("\x00\xff", 2)), "\"\\x00\\xff\"");
}

TEST(QuoteTest, EvenTheWorstStringGivesAShortQuote) {
  const std::string worst(1 << 20, '\x01');
  EXPECT_LE(QuoteForMessage(worst).size(), 4 * kQuotedPrefixBytes + 32);
}

}  // namespace
}  // namespace embedding
