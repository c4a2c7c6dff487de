// ExactlyOnceTracker: remembers which (client_id, sequence) pushes a table
// has applied, so a retried push is acknowledged without being applied twice.
//
//   absl::StatusOr<bool> fresh = tracker.Claim(client_id, sequence);
//   if (fresh.ok() && *fresh) ApplyPush();
//
// Per client it keeps the last kWindow sequences claimed: retries and
// out-of-order pushes within that window are recognised; a sequence older
// than the window is refused (FAILED_PRECONDITION) since it cannot be told
// apart. Memory: O(clients * kWindow).
//
// Export and Import carry the windows through a checkpoint, so that a push
// retried after a restore is still recognised.
//
// Thread-safe.
#ifndef SERVER_CORE_EXACTLY_ONCE_H_
#define SERVER_CORE_EXACTLY_ONCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/mutex.h"

namespace embedding {

// The sequences of one client that a tracker remembers.
struct ClientWindow {
  std::string client_id;
  std::vector<uint64_t> sequences;  // Ascending, at most kWindow.

  friend bool operator==(const ClientWindow&, const ClientWindow&) = default;
};

class ExactlyOnceTracker {
 public:
  static constexpr size_t kWindow = 4096;

  // Returns true when the push is new and must be applied (and records it),
  // false when it was already claimed. INVALID_ARGUMENT for sequence 0,
  // FAILED_PRECONDITION for a sequence older than the window.
  absl::StatusOr<bool> Claim(absl::string_view client_id, uint64_t sequence);

  // Every client's window, sorted by client id.
  std::vector<ClientWindow> Export() const;

  // Replaces everything remembered by `windows`. INVALID_ARGUMENT (nothing
  // changed) for an empty or repeated client id, more than kWindow
  // sequences, or sequences not ascending or 0.
  absl::Status Import(const std::vector<ClientWindow>& windows);

 private:
  mutable SharedMutex mu_;
  absl::flat_hash_map<std::string, absl::btree_set<uint64_t>> claimed_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace embedding

#endif  // SERVER_CORE_EXACTLY_ONCE_H_
