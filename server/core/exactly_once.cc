#include "server/core/exactly_once.h"

#include <algorithm>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace embedding {

bool ExactlyOnceTracker::Client::Test(uint64_t sequence) const {
  const uint64_t bit = sequence % kWindow;
  return (claimed[bit / 64] >> (bit % 64)) & 1;
}

void ExactlyOnceTracker::Client::Set(uint64_t sequence) {
  const uint64_t bit = sequence % kWindow;
  claimed[bit / 64] |= uint64_t{1} << (bit % 64);
}

bool ExactlyOnceTracker::Client::Claim(uint64_t sequence) {
  if (sequence > highest) {
    // The window moves up: the bits of (highest, sequence] now stand for
    // those sequences, none claimed yet.
    const uint64_t step = sequence - highest;
    if (step >= kWindow) {
      claimed.fill(0);
    } else {
      for (uint64_t k = 1; k <= step; ++k) {
        const uint64_t bit = (highest + k) % kWindow;
        claimed[bit / 64] &= ~(uint64_t{1} << (bit % 64));
      }
    }
    highest = sequence;
  } else if (Test(sequence)) {
    return false;
  }
  Set(sequence);
  return true;
}

ExactlyOnceTracker::ExactlyOnceTracker(ExactlyOnceOptions options)
    : options_(std::move(options)) {}

void ExactlyOnceTracker::SetOptions(ExactlyOnceOptions options) {
  WriterLock lock(&mu_);
  options_ = std::move(options);
  const absl::Time now = Now();
  for (Client& client : clients_) client.last_push = now;
}

absl::Time ExactlyOnceTracker::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

uint64_t ExactlyOnceTracker::Fingerprint(absl::string_view client_id) {
  return absl::Hash<absl::string_view>{}(client_id);
}

void ExactlyOnceTracker::RememberForgotten(absl::string_view client_id) {
  if (options_.max_forgotten <= 0) return;
  const uint64_t fingerprint = Fingerprint(client_id);
  if (!forgotten_.insert(fingerprint).second) return;
  forgotten_order_.push_back(fingerprint);
  while (static_cast<int64_t>(forgotten_order_.size()) >
         options_.max_forgotten) {
    forgotten_.erase(forgotten_order_.front());
    forgotten_order_.pop_front();
  }
}

void ExactlyOnceTracker::ForgetIdle(absl::Time now) {
  while (!clients_.empty() &&
         now - clients_.front().last_push > options_.idle) {
    RememberForgotten(clients_.front().id);
    by_id_.erase(clients_.front().id);
    clients_.pop_front();
  }
}

absl::Status ExactlyOnceTracker::CheckClaim(absl::string_view client_id,
                                            uint64_t sequence) {
  if (client_id.empty()) {
    return absl::InvalidArgumentError("client_id is empty");
  }
  if (client_id.size() > kMaxClientIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("client_id ", QuoteForMessage(client_id),
                     " is longer than ", kMaxClientIdBytes, " bytes"));
  }
  if (sequence == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client_id ", QuoteForMessage(client_id), " needs a sequence > 0"));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> ExactlyOnceTracker::Claim(absl::string_view client_id,
                                               uint64_t sequence) {
  EMBEDDING_RETURN_IF_ERROR(CheckClaim(client_id, sequence));
  WriterLock lock(&mu_);
  const absl::Time now = Now();
  ForgetIdle(now);
  auto found = by_id_.find(client_id);
  if (found == by_id_.end()) {
    if (forgotten_.contains(Fingerprint(client_id))) {
      return absl::FailedPreconditionError(absl::StrCat(
          "client_id ", QuoteForMessage(client_id),
          " was forgotten after being idle for more than ",
          absl::FormatDuration(options_.idle),
          "; its pushes cannot be told apart from retries of pushes already "
          "applied, so none is applied: use a new client_id"));
    }
    if (static_cast<int64_t>(clients_.size()) >= options_.max_clients) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "exactly-once tracking of this table holds its maximum of ",
          options_.max_clients, " clients, each active within the last ",
          absl::FormatDuration(options_.idle), "; client_id ",
          QuoteForMessage(client_id), " cannot be added"));
    }
    clients_.push_back(Client{.id = std::string(client_id)});
    found = by_id_.emplace(clients_.back().id, std::prev(clients_.end())).first;
  }
  Client& client = *found->second;
  client.last_push = now;
  clients_.splice(clients_.end(), clients_, found->second);
  if (sequence < client.Bottom()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "sequence ", sequence, " of client ", QuoteForMessage(client_id),
        " is older than the last ", kWindow,
        " remembered; cannot tell whether it was applied"));
  }
  return client.Claim(sequence);
}

std::vector<ClientWindow> ExactlyOnceTracker::Export() const {
  std::vector<ClientWindow> windows;
  {
    ReaderLock lock(&mu_);
    const absl::Time now = Now();
    windows.reserve(clients_.size());
    for (const Client& client : clients_) {
      if (now - client.last_push > options_.idle) continue;
      ClientWindow& window = windows.emplace_back();
      window.client_id = client.id;
      // Counted, not compared: highest may be the largest uint64.
      const uint64_t bottom = client.Bottom();
      for (uint64_t k = 0; client.highest > 0 && k <= client.highest - bottom;
           ++k) {
        if (client.Test(bottom + k)) window.sequences.push_back(bottom + k);
      }
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
  absl::flat_hash_set<absl::string_view> seen;
  seen.reserve(windows.size());
  for (const ClientWindow& window : windows) {
    if (window.client_id.empty()) {
      return absl::InvalidArgumentError("exactly-once window has no client_id");
    }
    const std::string quoted = QuoteForMessage(window.client_id);
    if (window.sequences.size() > kWindow) {
      return absl::InvalidArgumentError(absl::StrCat(
          "exactly-once window of client ", quoted, " has ",
          window.sequences.size(), " sequences, more than ", kWindow));
    }
    for (size_t i = 0; i < window.sequences.size(); ++i) {
      if (window.sequences[i] == 0 ||
          (i > 0 && window.sequences[i] <= window.sequences[i - 1])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "exactly-once window of client ", quoted, ": sequence ",
            window.sequences[i], " at position ", i, " is 0 or not ascending"));
      }
    }
    if (!seen.insert(window.client_id).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "exactly-once window of client ", quoted, " appears twice"));
    }
  }
  WriterLock lock(&mu_);
  const absl::Time now = Now();
  clients_.clear();
  by_id_.clear();
  forgotten_.clear();
  forgotten_order_.clear();
  for (const ClientWindow& window : windows) {
    if (window.client_id.size() > kMaxClientIdBytes) continue;
    Client& client =
        clients_.emplace_back(Client{.id = window.client_id, .last_push = now});
    for (uint64_t sequence : window.sequences) {
      if (window.sequences.back() - sequence < kWindow) {
        client.Claim(sequence);
      }
    }
    by_id_.emplace(client.id, std::prev(clients_.end()));
  }
  return absl::OkStatus();
}

}  // namespace embedding
