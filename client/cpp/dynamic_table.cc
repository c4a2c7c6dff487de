#include "client/cpp/dynamic_table.h"

#include "absl/strings/str_cat.h"
#include "common/quote.h"

namespace embedding {

absl::Status CheckDynamicIds(absl::Span<const int64_t> ids) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == kReservedDynamicId) {
      return absl::InvalidArgumentError(
          absl::StrCat("index ", ids[i], " at position ", i,
                       " is reserved: no id of a dynamic table"));
    }
  }
  return absl::OkStatus();
}

absl::Status DenseOnly(const v1::TableSpec& spec, absl::string_view what) {
  if (!spec.has_dynamic()) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(
      "table ", QuoteForMessage(spec.name()),
      " is dynamic: this client cannot ", what, " of a dynamic table yet"));
}

}  // namespace embedding
