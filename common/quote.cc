#include "common/quote.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace embedding {

std::string QuoteForMessage(absl::string_view s) {
  if (s.size() <= kQuotedPrefixBytes) {
    return absl::StrCat("\"", absl::CHexEscape(s), "\"");
  }
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kQuotedPrefixBytes)),
                      "\"... (", s.size(), " bytes)");
}

}  // namespace embedding
