// Futex wait and wake on a 32-bit word in memory shared between processes.
//
// These are shared futexes: the kernel keys them by the page's inode and offset, so two processes that map
// the same segment at different addresses meet on the same word. FUTEX_PRIVATE_FLAG (used by abseil and
// folly for in-process locks) would key them by address space instead, and a wake from one process would
// never reach a waiter in another. Never add it here.
//
// Memory ordering: FutexWait compares the word with `expected` inside the kernel, atomically with going to
// sleep, so a waker that changes the word before calling FutexWake can never be missed. The functions imply
// no ordering for other memory; callers publish data with their own release/acquire pairs.
#ifndef ESHM_FUTEX_H_
#define ESHM_FUTEX_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

#include "eshm/deadline.h"

namespace eshm {

enum class FutexResult {
  kAwoken,        // a FutexWake reached this waiter (or a spurious wakeup: recheck the condition)
  kValueChanged,  // the word did not hold `expected` when the kernel looked
  kTimedOut,      // the deadline passed
  kInterrupted,   // a signal handler ran
  kNotSupported,  // FutexWaitAny only: the kernel has no FUTEX_WAITV
};

const char* FutexResultName(FutexResult result);

// Sleeps while `*word == expected`, until woken or until `deadline` (absolute, CLOCK_MONOTONIC).
FutexResult FutexWait(const std::atomic<std::uint32_t>* word, std::uint32_t expected, Deadline deadline);

// One word of a FutexWaitAny: sleep while `*word == expected`.
struct FutexWaiter {
  const std::atomic<std::uint32_t>* word;
  std::uint32_t expected;
};

// The most words one FutexWaitAny takes (the kernel's FUTEX_WAITV_MAX).
inline constexpr std::size_t kMaxFutexWaiters = 128;

// Sleeps while every word holds its expected value, until one is woken or `deadline` (FUTEX_WAITV, Linux
// 5.16+): kAwoken names no word, recheck them all. kNotSupported if the kernel lacks the call (or more than
// kMaxFutexWaiters words are given), without sleeping.
FutexResult FutexWaitAny(std::span<const FutexWaiter> waiters, Deadline deadline);

// Wakes up to `count` waiters sleeping on `word`; returns how many were woken.
int FutexWake(const std::atomic<std::uint32_t>* word, int count);

// Wakes every waiter sleeping on `word`.
int FutexWakeAll(const std::atomic<std::uint32_t>* word);

}  // namespace eshm

#endif  // ESHM_FUTEX_H_
