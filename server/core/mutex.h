// A reader-writer mutex with Clang thread-safety annotations.
//
// Why not absl::Mutex: Debian's Abseil is built without ThreadSanitizer
// instrumentation, so TSan cannot see the synchronisation inside absl::Mutex
// and reports false races. std::shared_mutex is a pthread rwlock, which TSan
// intercepts, and its uncontended paths cost the same single atomic.
//
//   SharedMutex mu;
//   int value ABSL_GUARDED_BY(mu);
//   { WriterLock lock(&mu); ++value; }
//   { ReaderLock lock(&mu); Use(value); }
//
// Thread-safe.
#ifndef SERVER_CORE_MUTEX_H_
#define SERVER_CORE_MUTEX_H_

#include <shared_mutex>

#include "absl/base/thread_annotations.h"

namespace embedding {

class ABSL_LOCKABLE SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { mu_.lock_shared(); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// Holds `mu` exclusively for its lifetime.
class ABSL_SCOPED_LOCKABLE WriterLock {
 public:
  explicit WriterLock(SharedMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu) {
    mu_->Lock();
  }
  ~WriterLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex* const mu_;
};

// Holds `mu` shared for its lifetime.
class ABSL_SCOPED_LOCKABLE ReaderLock {
 public:
  explicit ReaderLock(SharedMutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ~ReaderLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex* const mu_;
};

}  // namespace embedding

#endif  // SERVER_CORE_MUTEX_H_
