// InflightMemory: the one account of the memory that requests in flight
// hold outside the tables: parsed requests, response buffers, stream
// backlogs and push scratch. Every such allocation reserves its bytes
// first; a reservation that would pass the limit is refused with
// RESOURCE_EXHAUSTED naming --max_inflight_bytes, so the server's memory
// stays under memory_budget + max_inflight_bytes + a fixed overhead
// whatever clients send (README, Guarantees).
//
//   InflightMemory memory(/*limit_bytes=*/1 << 30);
//   EMBEDDING_ASSIGN_OR_RETURN(InflightBytes held,
//                              memory.Reserve(bytes, "Lookup response"));
//   ... allocate and use up to `bytes` ...
//   // `held` returns the bytes to the account when it is destroyed.
//
// Thread-safe; Reserve and release are one atomic operation each.
#ifndef SERVER_SERVICE_INFLIGHT_MEMORY_H_
#define SERVER_SERVICE_INFLIGHT_MEMORY_H_

#include <atomic>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace embedding {

class InflightMemory;

// Bytes reserved in an InflightMemory; returned when destroyed (or reset).
// Move-only. A default-constructed one holds nothing.
class InflightBytes {
 public:
  InflightBytes() = default;
  InflightBytes(InflightBytes&& other) noexcept;
  InflightBytes& operator=(InflightBytes&& other) noexcept;
  ~InflightBytes() { Reset(); }

  int64_t bytes() const { return bytes_; }
  // Returns what is held beyond `bytes` (when less turned out to be
  // needed). REQUIRES: 0 <= bytes.
  void ShrinkTo(int64_t bytes);
  // Returns the bytes now.
  void Reset();

 private:
  friend class InflightMemory;
  InflightBytes(InflightMemory* memory, int64_t bytes)
      : memory_(memory), bytes_(bytes) {}

  InflightMemory* memory_ = nullptr;
  int64_t bytes_ = 0;
};

class InflightMemory {
 public:
  // REQUIRES: limit_bytes > 0.
  explicit InflightMemory(int64_t limit_bytes) : limit_(limit_bytes) {}

  // Reserves `bytes` (>= 0) for `what` ("Lookup response", "parsing a
  // PushGradientsRequest"...). RESOURCE_EXHAUSTED, saying what needed how
  // much, how much is in use and the limit (--max_inflight_bytes), when
  // the total would pass the limit; nothing is reserved then.
  absl::StatusOr<InflightBytes> Reserve(int64_t bytes, absl::string_view what);

  int64_t limit() const { return limit_; }
  int64_t used() const { return used_.load(std::memory_order_relaxed); }

 private:
  friend class InflightBytes;
  void Release(int64_t bytes);

  const int64_t limit_;
  std::atomic<int64_t> used_{0};
};

}  // namespace embedding

#endif  // SERVER_SERVICE_INFLIGHT_MEMORY_H_
