#include "server/core/exactly_once.h"

#include <algorithm>
#include <utility>

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

std::vector<ClientWindow> ExactlyOnceTracker::Export() const {
  std::vector<ClientWindow> windows;
  {
    ReaderLock lock(&mu_);
    windows.reserve(claimed_.size());
    for (const auto& [client_id, claimed] : claimed_) {
      windows.push_back(
          {client_id, std::vector<uint64_t>(claimed.begin(), claimed.end())});
    }
  }
  std::sort(windows.begin(), windows.end(),
            [](const ClientWindow& a, const ClientWindow& b) {
              return a.client_id < b.client_id;
            });
  return windows;
}

absl::Status ExactlyOnceTracker::Import(
    const std::vector<ClientWindow>& windows) {
  absl::flat_hash_map<std::string, absl::btree_set<uint64_t>> claimed;
  claimed.reserve(windows.size());
  for (const ClientWindow& window : windows) {
    if (window.client_id.empty()) {
      return absl::InvalidArgumentError("exactly-once window has no client_id");
    }
    if (window.sequences.size() > kWindow) {
      return absl::InvalidArgumentError(absl::StrCat(
          "exactly-once window of client \"", window.client_id, "\" has ",
          window.sequences.size(), " sequences, more than ", kWindow));
    }
    for (size_t i = 0; i < window.sequences.size(); ++i) {
      if (window.sequences[i] == 0 ||
          (i > 0 && window.sequences[i] <= window.sequences[i - 1])) {
        return absl::InvalidArgumentError(
            absl::StrCat("exactly-once window of client \"", window.client_id,
                         "\": sequence ", window.sequences[i], " at position ",
                         i, " is 0 or not ascending"));
      }
    }
    auto [it, inserted] = claimed.try_emplace(
        window.client_id, window.sequences.begin(), window.sequences.end());
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("exactly-once window of client \"", window.client_id,
                       "\" appears twice"));
    }
  }
  WriterLock lock(&mu_);
  claimed_ = std::move(claimed);
  return absl::OkStatus();
}

}  // namespace embedding
