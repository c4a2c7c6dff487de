#include "server/service/inflight_memory.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace embedding {

InflightBytes::InflightBytes(InflightBytes&& other) noexcept
    : memory_(std::exchange(other.memory_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

InflightBytes& InflightBytes::operator=(InflightBytes&& other) noexcept {
  if (this != &other) {
    Reset();
    memory_ = std::exchange(other.memory_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void InflightBytes::ShrinkTo(int64_t bytes) {
  if (memory_ == nullptr || bytes >= bytes_) return;
  memory_->Release(bytes_ - bytes);
  bytes_ = bytes;
}

void InflightBytes::Reset() {
  if (memory_ != nullptr) memory_->Release(bytes_);
  memory_ = nullptr;
  bytes_ = 0;
}

absl::StatusOr<InflightBytes> InflightMemory::Reserve(int64_t bytes,
                                                      absl::string_view what) {
  if (bytes < 0) {
    return absl::InternalError(
        absl::StrCat("negative in-flight reservation for ", what));
  }
  int64_t used = used_.load(std::memory_order_relaxed);
  do {
    // Compared as limit_ - used >= bytes: no sum that could overflow.
    if (bytes > limit_ - used) {
      return absl::ResourceExhaustedError(absl::StrCat(
          what, " needs ", bytes, " bytes but ", used, " of the ", limit_,
          " bytes that requests in flight may hold are in use "
          "(--max_inflight_bytes); retry later or split the request"));
    }
  } while (!used_.compare_exchange_weak(used, used + bytes,
                                        std::memory_order_relaxed));
  return InflightBytes(this, bytes);
}

void InflightMemory::Release(int64_t bytes) {
  used_.fetch_sub(bytes, std::memory_order_relaxed);
}

}  // namespace embedding
