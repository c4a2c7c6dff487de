// The retry policy of client/CONTRACT.md in one place: run an attempt again
// after UNAVAILABLE, up to `retries` times, retry k after backoff * 2^k.
// EmbeddingClient retries one call with it, ShardedEmbeddingClient the
// sub-calls of one fan-out that are still missing.
//
//   absl::StatusOr<Reply> reply = RetryOnUnavailable(
//       options.max_retries, options.retry_backoff, [&] { return Send(); });
//
// Thread-safe: a pure function of its arguments.
#ifndef CLIENT_CPP_RETRY_H_
#define CLIENT_CPP_RETRY_H_

#include <cmath>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace embedding {

// Returns attempt() (an absl::StatusOr) once it is not UNAVAILABLE or the
// retries are spent.
template <typename Attempt>
auto RetryOnUnavailable(int retries, absl::Duration backoff,
                        const Attempt& attempt) {
  for (int k = 0;; ++k) {
    auto result = attempt();
    if (result.ok() || k >= retries ||
        result.status().code() != absl::StatusCode::kUnavailable) {
      return result;
    }
    absl::SleepFor(backoff * std::ldexp(1.0, k));
  }
}

}  // namespace embedding

#endif  // CLIENT_CPP_RETRY_H_
