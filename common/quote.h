// Quoting a client's string (a table name, a client id) inside an error
// message: the message must stay short whatever the client sent, since gRPC
// carries it in a header the client caps (8 KiB by default).
//
//   absl::NotFoundError(absl::StrCat("table ", QuoteForMessage(name),
//                                    " not found"));
//   // table "ads"                                   (short: whole)
//   // table "xxxxxxxx...(64 bytes)..."... (8000 bytes)  (long: cut)
//
// Thread-safe: a pure function.
#ifndef COMMON_QUOTE_H_
#define COMMON_QUOTE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace embedding {

// Bytes of a client's string that QuoteForMessage keeps.
inline constexpr size_t kQuotedPrefixBytes = 64;

// `s` in double quotes with C escapes (\", \\, \n, \xNN for bytes outside
// printable ASCII); longer than kQuotedPrefixBytes, only that prefix,
// followed by `... (N bytes)` with its full length. At most
// 4 * kQuotedPrefixBytes + 32 characters.
std::string QuoteForMessage(absl::string_view s);

}  // namespace embedding

#endif  // COMMON_QUOTE_H_
