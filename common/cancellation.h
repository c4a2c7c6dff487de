// Cancellation: how a long operation learns that its caller gave up (the
// client cancelled, its deadline passed, or the server's shutdown grace
// period ran out). Operations ask between blocks of work (every few
// thousand rows), stop, and return CANCELLED with nothing changed: a push
// asks only before it starts to apply, never halfway.
//
//   absl::Status Gather(..., const Cancellation& cancel) {
//     for (int64_t i = 0; i < n; ++i) {
//       if (i % kRowsBetweenChecks == 0 && cancel.IsCancelled()) {
//         return cancel.Status();
//       }
//       ...
//
// Implementations are thread-safe and cheap enough to call every few
// microseconds.
#ifndef COMMON_CANCELLATION_H_
#define COMMON_CANCELLATION_H_

#include "absl/status/status.h"

namespace embedding {

class Cancellation {
 public:
  virtual ~Cancellation() = default;
  virtual bool IsCancelled() const = 0;
  // The status a cancelled operation returns; CANCELLED unless an
  // implementation knows better (UNAVAILABLE when the server stops it).
  virtual absl::Status Status() const {
    return absl::CancelledError("the call was cancelled");
  }
};

// Never cancelled: the default argument of operations that take one.
const Cancellation& NeverCancelled();

// Rows a long loop handles between two IsCancelled checks.
inline constexpr int64_t kRowsBetweenCancelChecks = 16384;

}  // namespace embedding

#endif  // COMMON_CANCELLATION_H_
