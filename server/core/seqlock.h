// A sequence counter for optimistic reads (a seqlock): readers copy data
// that writers may be changing, then check the counter to learn whether the
// copy is whole. A reader writes nothing shared, so readers of one stripe
// never bounce a cache line between cores.
//
// Writers must exclude each other with a lock of their own; the counter is
// odd while one changes the data:
//
//   { WriterLock lock(&mu); seq.WriteBegin(); StoreFloatsRelaxed(...);
//     seq.WriteEnd(); }
//   for (;;) {
//     const uint32_t begin = seq.ReadBegin();
//     LoadFloatsRelaxed(...);
//     if (seq.ReadValid(begin)) break;  // Else retry (or take the lock).
//   }
//
// Memory ordering (the classic seqlock, Boehm, "Can seqlocks get along with
// programming language memory models?", MSPC 2012):
//   writer: seq.store(odd, relaxed); fence(release); data stores (relaxed);
//           seq.store(even, release).
//   reader: s1 = seq.load(acquire); data loads (relaxed); fence(acquire);
//           s2 = seq.load(relaxed); the copy is whole iff s1 == s2, even.
// If a reader's data load saw a store of a write, its acquire fence
// synchronises with that write's release fence, so its s2 load happens after
// the odd store: s2 != s1. If s1 read a write's even store, the release
// store / acquire load pair makes all that write's data visible. Under
// ThreadSanitizer the data stores and loads are relaxed atomics
// (std::atomic_ref, one float at a time), so TSan checks the protocol with
// no suppression; other builds store and copy with plain, wide accesses
// (see kSeqlockPlainStores and LoadFloatsRelaxed for why that is sound).
//
// Thread-safe as described: any number of readers, one writer at a time.
#ifndef SERVER_CORE_SEQLOCK_H_
#define SERVER_CORE_SEQLOCK_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/base/config.h"

namespace embedding {

class SeqCounter {
 public:
  // The count to pass to ReadValid; odd while a write is under way.
  uint32_t ReadBegin() const { return count_.load(std::memory_order_acquire); }

  // True when no write began or was under way since ReadBegin returned
  // `begin`: the relaxed loads in between saw one consistent state.
  bool ReadValid(uint32_t begin) const {
    std::atomic_thread_fence(std::memory_order_acquire);
    return (begin & 1) == 0 && count_.load(std::memory_order_relaxed) == begin;
  }

  // REQUIRES: the caller excludes other writers (holds their lock).
  void WriteBegin() {
    count_.store(count_.load(std::memory_order_relaxed) + 1,
                 std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
  }
  void WriteEnd() {
    count_.store(count_.load(std::memory_order_relaxed) + 1,
                 std::memory_order_release);
  }

 private:
  std::atomic<uint32_t> count_{0};
};

// Copies `count` floats that a writer may be storing to (with
// StoreFloatsRelaxed) into `dst`, which need not be aligned.
//
// Under ThreadSanitizer: relaxed atomic loads, one float at a time, which is
// what the C++ memory model asks of a read that races with a write; TSan then
// checks that every store to the data is atomic, with no suppression.
// Otherwise: memcpy. The atomic loads compile to one 4-byte mov each, and
// that loop made a 64-float lookup 5x slower than memcpy
// (BM_EngineLookup/4096: 2.3 M against 13 M rows/s, same run). A memcpy that
// races with a writer is formally a data race; it is sound here as it is in
// Linux's seqlocks: GCC and Clang treat the acquire load before it and the
// acquire fence after it as compiler barriers, so the copy stays inside the
// window, and a copy that overlapped a write is thrown away (ReadValid).
inline void LoadFloatsRelaxed(const float* src, size_t count, void* dst) {
#ifdef ABSL_HAVE_THREAD_SANITIZER
  char* out = static_cast<char*>(dst);
  for (size_t i = 0; i < count; ++i) {
    // atomic_ref needs a mutable referent; it is only loaded.
    const float value = std::atomic_ref<float>(const_cast<float&>(src[i]))
                            .load(std::memory_order_relaxed);
    std::memcpy(out + i * sizeof(float), &value, sizeof(value));
  }
#else
  std::memcpy(dst, src, count * sizeof(float));
#endif
}

// Whether a writer stores data with plain (wide, vectorised) stores between
// WriteBegin and WriteEnd. Not under ThreadSanitizer: there every store is a
// relaxed atomic, so TSan still checks that no store to the data escapes the
// seqlock protocol (a store outside a write window, or without the lock,
// races with the readers' atomic loads and is reported).
//
// Why plain stores are sound elsewhere, as the memcpy of LoadFloatsRelaxed
// and Linux's seqlocks: GCC and Clang treat the release fence of WriteBegin
// and the release store of WriteEnd as compiler barriers, so the stores stay
// inside the window; in hardware the fence orders the odd count before them
// (x86-64 keeps stores in order anyway; AArch64 emits dmb ish) and the
// release store orders them before the even count. A reader whose copy saw
// any of them therefore sees the count moved (its acquire fence, then the
// count load) and throws the copy away, torn or not: a plain store cannot
// be observed half-done by a copy that is kept. What the relaxed atomics of
// the C++ model add (no tearing of one float) is not needed, since no kept
// copy overlaps a store.
#ifdef ABSL_HAVE_THREAD_SANITIZER
inline constexpr bool kSeqlockPlainStores = false;
#else
inline constexpr bool kSeqlockPlainStores = true;
#endif

// Stores `count` floats where readers may be loading them (with
// LoadFloatsRelaxed), between WriteBegin and WriteEnd. REQUIRES: the caller
// excludes other writers.
inline void StoreFloatsRelaxed(const float* src, size_t count, float* dst) {
  if constexpr (kSeqlockPlainStores) {
    std::memcpy(dst, src, count * sizeof(float));
  } else {
    for (size_t i = 0; i < count; ++i) {
      std::atomic_ref<float>(dst[i]).store(src[i], std::memory_order_relaxed);
    }
  }
}

}  // namespace embedding

#endif  // SERVER_CORE_SEQLOCK_H_
