// PeriodicCancelCheck: asks a Cancellation once every
// kRowsBetweenCancelChecks rows of a long loop (the first row included), so
// the loop stops soon after its caller gives up and pays one virtual call
// per block, not per row.
//
//   PeriodicCancelCheck check(cancel);
//   for (int64_t row : rows) {
//     if (check.Cancelled()) return check.status();
//     ...
//   }
//
// Thread-compatible: one loop uses one check.
#ifndef COMMON_CANCEL_CHECK_H_
#define COMMON_CANCEL_CHECK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/cancellation.h"

namespace embedding {

class PeriodicCancelCheck {
 public:
  explicit PeriodicCancelCheck(const Cancellation& cancel) : cancel_(cancel) {}

  // Call once per row: true when this row is the first of a block and the
  // operation has been cancelled.
  bool Cancelled() {
    if (countdown_-- > 0) return false;
    countdown_ = kRowsBetweenCancelChecks - 1;
    return cancel_.IsCancelled();
  }

  // What a cancelled operation returns.
  absl::Status status() const { return cancel_.Status(); }

 private:
  const Cancellation& cancel_;
  int64_t countdown_ = 0;
};

}  // namespace embedding

#endif  // COMMON_CANCEL_CHECK_H_
