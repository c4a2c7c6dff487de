// A reader-writer mutex with Clang thread-safety annotations.
//
// Why not absl::Mutex: Debian's Abseil is built without ThreadSanitizer
// instrumentation, so TSan cannot see the synchronisation inside absl::Mutex
// and reports false races. A pthread rwlock (what std::shared_mutex wraps)
// is intercepted by TSan, and its uncontended paths cost a single atomic.
// Used directly so that a lock can prefer writers: glibc's default lets new
// readers in while a writer waits, which starves the writer of a lock that
// is held shared almost all the time (the table's mutation barrier).
//
//   SharedMutex mu;
//   int value ABSL_GUARDED_BY(mu);
//   { WriterLock lock(&mu); ++value; }
//   { ReaderLock lock(&mu); Use(value); }
//
// Thread-safe.
#ifndef SERVER_CORE_MUTEX_H_
#define SERVER_CORE_MUTEX_H_

#include <pthread.h>

#include <cstdlib>

#include "absl/base/thread_annotations.h"

namespace embedding {

class ABSL_LOCKABLE SharedMutex {
 public:
  enum class Prefer {
    // New readers may enter while a writer waits (glibc's default).
    kReaders,
    // A waiting writer keeps new readers out. A thread must then never take
    // the lock shared twice: a writer queued in between would deadlock it.
    kWriters,
  };

  explicit SharedMutex(Prefer prefer = Prefer::kReaders) {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    if (prefer == Prefer::kWriters) {
      pthread_rwlockattr_setkind_np(
          &attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    }
    pthread_rwlock_init(&mu_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~SharedMutex() { pthread_rwlock_destroy(&mu_); }
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  // These fail only on misuse (EDEADLK, too many readers): abort as
  // std::shared_mutex would throw.
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    if (pthread_rwlock_wrlock(&mu_) != 0) std::abort();
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() { pthread_rwlock_unlock(&mu_); }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() {
    if (pthread_rwlock_rdlock(&mu_) != 0) std::abort();
  }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { pthread_rwlock_unlock(&mu_); }

 private:
  pthread_rwlock_t mu_;
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
