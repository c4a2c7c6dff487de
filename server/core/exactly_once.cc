#include "server/core/exactly_once.h"

#include "absl/strings/str_cat.h"

namespace embedding {

absl::StatusOr<bool> ExactlyOnceTracker::Claim(absl::string_view client_id,
                                               uint64_t sequence) {
  if (sequence == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("client_id \"", client_id, "\" needs a sequence > 0"));
  }
  WriterLock lock(&mu_);
  absl::btree_set<uint64_t>& claimed = claimed_[client_id];
  if (claimed.size() >= kWindow && sequence < *claimed.begin()) {
    return absl::FailedPreconditionError(
        absl::StrCat("sequence ", sequence, " of client \"", client_id,
                     "\" is older than the last ", kWindow,
                     " remembered; cannot tell whether it was applied"));
  }
  if (!claimed.insert(sequence).second) return false;
  if (claimed.size() > kWindow) claimed.erase(claimed.begin());
  return true;
}

}  // namespace embedding
