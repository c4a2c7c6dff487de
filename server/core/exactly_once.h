// ExactlyOnceTracker: remembers which (client_id, sequence) pushes a table
// has applied, so a retried push is acknowledged without being applied twice,
// in bounded memory.
//
//   ExactlyOnceTracker tracker({.idle = absl::Hours(1)});
//   absl::StatusOr<bool> fresh = tracker.Claim(client_id, sequence);
//   if (fresh.ok() && *fresh) ApplyPush();
//
// The rule, per table:
// - A client_id is 1 to kMaxClientIdBytes (256) bytes and a sequence > 0;
//   INVALID_ARGUMENT otherwise.
// - A client is remembered from its first push until it has pushed nothing
//   for `idle` (default 1 hour). Its window is the kWindow sequences up to
//   the highest it claimed: a sequence claimed before is a duplicate
//   (acknowledged, not applied again); an unclaimed one in the window or
//   above it is applied; one below the window is FAILED_PRECONDITION (too
//   old to tell whether it was applied).
// - A client idle for longer than `idle` is forgotten: its window is dropped
//   and its id kept as forgotten. Every later push with that id, a retry or
//   a new push alike (the server cannot tell them apart), is
//   FAILED_PRECONDITION ("forgotten after being idle"), never applied: the
//   client must go on with a new client_id.
// - An id never seen (neither remembered nor forgotten) is a new client and
//   its first push may carry any sequence: a client whose pushes after a
//   checkpoint's cut were lost in a restore goes on with its next sequence,
//   and callers may choose their own.
// - At most max_clients are remembered at once; past that, after the idle
//   ones are forgotten, a new client is RESOURCE_EXHAUSTED.
// What bounded memory costs: forgotten ids are kept as 64-bit fingerprints,
// only the last max_forgotten (default 65536) per table, and not saved in
// checkpoints. A forgotten client's push is therefore taken for a new
// client's, and applied, once max_forgotten more clients have been
// forgotten on the table or the table has been restored from a checkpoint;
// so a retry can be applied twice only if it comes more than `idle` after
// the client's last push and after one of those. Clients whose retries of a
// push end within `idle` (the clients' policy: 4 attempts of 30 s) are
// never exposed. (A new id whose fingerprint equals a forgotten one's,
// about 1 in 2^48 at 65536 forgotten, is refused as forgotten.)
//
// Memory: at most max_clients * (kWindow / 8 + kMaxClientIdBytes + ~100)
// bytes (about 14 MiB at the defaults) plus about 28 bytes per forgotten id
// (about 2 MiB).
//
// Export and Import carry the windows through a checkpoint, so that a push
// retried after a restore is still recognised; an imported client's idle
// time starts at the import.
//
// Thread-safe.
#ifndef SERVER_CORE_EXACTLY_ONCE_H_
#define SERVER_CORE_EXACTLY_ONCE_H_

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/core/mutex.h"

namespace embedding {

// The longest client_id a push may carry.
inline constexpr size_t kMaxClientIdBytes = 256;

// The sequences of one client that a tracker remembers.
struct ClientWindow {
  std::string client_id;
  std::vector<uint64_t> sequences;  // Ascending, at most kWindow.

  friend bool operator==(const ClientWindow&, const ClientWindow&) = default;
};

struct ExactlyOnceOptions {
  // A client that pushed nothing for longer than this is forgotten.
  // Default: 1 hour. REQUIRES: > 0.
  absl::Duration idle = absl::Hours(1);
  // Clients remembered at once.
  // Default: 16384. REQUIRES: >= 1.
  int64_t max_clients = 16384;
  // Forgotten ids remembered (whose pushes are refused).
  // Default: 65536. REQUIRES: >= 0.
  int64_t max_forgotten = 65536;
  // The time; called under the tracker's lock, so thread-safe and quick.
  // Default (null): absl::Now.
  std::function<absl::Time()> clock;
};

class ExactlyOnceTracker {
 public:
  static constexpr size_t kWindow = 4096;

  explicit ExactlyOnceTracker(ExactlyOnceOptions options = {});

  // Replaces the options; every remembered client's idle time starts now.
  void SetOptions(ExactlyOnceOptions options);

  // INVALID_ARGUMENT for an empty or too long client_id or sequence 0: the
  // checks of Claim that need no state.
  static absl::Status CheckClaim(absl::string_view client_id,
                                 uint64_t sequence);

  // Returns true when the push is new and must be applied (and records it),
  // false when it was already claimed. INVALID_ARGUMENT for an empty or too
  // long client_id or sequence 0; FAILED_PRECONDITION for a sequence older
  // than the window or a forgotten client; RESOURCE_EXHAUSTED for a new
  // client when max_clients are remembered.
  absl::StatusOr<bool> Claim(absl::string_view client_id, uint64_t sequence);

  // Every remembered client's window (the idle ones left out), sorted by
  // client id.
  std::vector<ClientWindow> Export() const;

  // Replaces everything remembered (the forgotten ids too) by `windows`.
  // INVALID_ARGUMENT (nothing changed) for an empty or repeated client id,
  // more than kWindow sequences, or sequences not ascending or 0. Windows of
  // ids longer than kMaxClientIdBytes are skipped (no push can use them),
  // and sequences more than kWindow below a window's highest are dropped
  // (they would be refused as too old).
  absl::Status Import(const std::vector<ClientWindow>& windows);

 private:
  struct Client {
    std::string id;
    absl::Time last_push;
    uint64_t highest = 0;  // The highest sequence claimed.
    // Bit s % kWindow: sequence s in (highest - kWindow, highest] claimed.
    std::array<uint64_t, kWindow / 64> claimed{};

    bool Test(uint64_t sequence) const;
    void Set(uint64_t sequence);
    // Claims `sequence` >= the bottom of the window: false when claimed.
    bool Claim(uint64_t sequence);
    // The lowest sequence the window holds.
    uint64_t Bottom() const {
      return highest < kWindow ? 1 : highest - kWindow + 1;
    }
  };
  // Least recently pushed first; the map's keys view the ids in the nodes.
  using Clients = std::list<Client>;

  absl::Time Now() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Forgets the clients idle at `now`.
  void ForgetIdle(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RememberForgotten(absl::string_view client_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static uint64_t Fingerprint(absl::string_view client_id);

  mutable SharedMutex mu_;
  ExactlyOnceOptions options_ ABSL_GUARDED_BY(mu_);
  Clients clients_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<absl::string_view, Clients::iterator> by_id_
      ABSL_GUARDED_BY(mu_);
  // Fingerprints of forgotten ids, and the order they came in.
  absl::flat_hash_set<uint64_t> forgotten_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> forgotten_order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace embedding

#endif  // SERVER_CORE_EXACTLY_ONCE_H_
