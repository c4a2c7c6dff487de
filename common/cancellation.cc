#include "common/cancellation.h"

namespace embedding {
namespace {

class Never final : public Cancellation {
 public:
  bool IsCancelled() const override { return false; }
};

}  // namespace

const Cancellation& NeverCancelled() {
  static const Never never;
  return never;
}

}  // namespace embedding
