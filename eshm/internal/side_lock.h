// SideLock: the mutex that serializes one side (writing or reading) of a C handle (eshm/c_api.cc).
//
// A three-state futex mutex (0 free, 1 held, 2 held and maybe a sleeper), with what std::mutex lacks for
// that job: a wait bounded by a deadline, in slices, that a `stop` check can end between slices, so that
// eshm_close() never waits forever on a thread that waits for the lock. The uncontended path is one
// compare-and-swap to take it and one exchange to give it back, inlined; the futex is touched only when
// threads contend.
//
// Memory ordering: taking the lock (the compare-and-swap or exchange that finds it free) is an acquire,
// giving it back (the exchange to 0 in Unlock) a release: SYNC(side-lock) pairs them, so everything one
// holder did happens-before the next holder's critical section. A sleeper reads nothing but the word,
// which FutexWait compares in the kernel, so a wake between its exchange and its sleep is never lost.
//
// The futex is the shared kind (eshm/futex.h explains why this project never uses FUTEX_PRIVATE_FLAG); for
// a word in process-private memory the kernel keys it by address space anyway.
//
// Threading: thread-safe. Not recursive: a holder that locks again waits for itself (until its deadline).
#ifndef ESHM_INTERNAL_SIDE_LOCK_H_
#define ESHM_INTERNAL_SIDE_LOCK_H_

#include <atomic>
#include <cstdint>

#include "eshm/deadline.h"
#include "eshm/futex.h"

namespace eshm::internal {

class SideLock {
 public:
  SideLock() = default;
  SideLock(const SideLock&) = delete;
  SideLock& operator=(const SideLock&) = delete;

  // Takes the lock if it is free. Never waits.
  bool TryLock() {
    std::uint32_t expected = kFree;
    // SYNC(side-lock): acquire, pairs with the release in Unlock.
    return word_.compare_exchange_strong(expected, kHeld, std::memory_order_acquire, std::memory_order_relaxed);
  }

  // Takes the lock, waiting for it until `deadline`. Every `slice_ns` at most (and whenever the lock is
  // given back) it calls `stop()`; the wait ends, without the lock, when `stop()` returns true or the
  // deadline passes. True if the lock was taken.
  template <typename Stop>
  bool LockUntil(Deadline deadline, std::int64_t slice_ns, Stop stop) {
    std::uint32_t seen = kFree;
    // SYNC(side-lock): acquire, pairs with the release in Unlock.
    if (word_.compare_exchange_strong(seen, kHeld, std::memory_order_acquire, std::memory_order_relaxed)) {
      return true;
    }
    // Announce a sleeper and try again in one step: the exchange finds kFree only if the holder let go, and
    // then the lock is ours (kept at kContended: the next Unlock may wake nobody, which is harmless).
    // SYNC(side-lock): acquire, pairs with the release in Unlock.
    if (seen != kContended) seen = word_.exchange(kContended, std::memory_order_acquire);
    deadline = deadline.Started();
    while (seen != kFree) {
      if (stop() || deadline.Expired()) return false;  // the word may stay kContended: see above
      FutexWait(&word_, kContended, deadline.CappedAfterNs(slice_ns));
      seen = word_.exchange(kContended, std::memory_order_acquire);
    }
    return true;
  }

  // The wake comes after the word is let go, so it may reach memory the next holder has already freed (as
  // eshm_close frees a handle): FUTEX_WAKE only looks the address up, and wakes nobody or makes a spurious
  // wakeup, which every futex waiter tolerates (as with pthread mutexes).
  void Unlock() {
    // SYNC(side-lock): release, pairs with the acquire of whoever takes the lock next.
    if (word_.exchange(kFree, std::memory_order_release) == kContended) FutexWake(&word_, 1);
  }

  // Wakes every thread sleeping in LockUntil, so that each calls its `stop()` at once rather than at the end
  // of its slice. Call it after making `stop()` true.
  void WakeWaiters() { FutexWakeAll(&word_); }

 private:
  static constexpr std::uint32_t kFree = 0;
  static constexpr std::uint32_t kHeld = 1;
  static constexpr std::uint32_t kContended = 2;  // held, and a thread may be sleeping on the word

  std::atomic<std::uint32_t> word_{kFree};
};

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_SIDE_LOCK_H_
