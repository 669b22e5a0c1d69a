#include "eshm/futex.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <time.h>

#include <climits>

namespace eshm {
namespace {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t),
              "the kernel reads the futex word as a plain u32");

long Futex(const std::atomic<std::uint32_t>* word, int op, std::uint32_t value, const timespec* timeout,
           std::uint32_t bitset) {
  // Shared futex: no FUTEX_PRIVATE_FLAG (see futex.h).
  return syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word), op, value, timeout, nullptr, bitset);
}

// What a failed FUTEX_WAIT or FUTEX_WAITV means to the caller.
FutexResult ResultOfFailedWait(int error) {
  switch (error) {
    case ENOSYS:
      return FutexResult::kNotSupported;
    case EAGAIN:
      return FutexResult::kValueChanged;
    case ETIMEDOUT:
      return FutexResult::kTimedOut;
    case EINTR:
      return FutexResult::kInterrupted;
    default:
      // EFAULT/EINVAL cannot happen for a mapped, aligned word; treat as a spurious wakeup so callers
      // recheck their condition instead of sleeping on a broken futex.
      return FutexResult::kAwoken;
  }
}

}  // namespace

const char* FutexResultName(FutexResult result) {
  switch (result) {
    case FutexResult::kAwoken:
      return "awoken";
    case FutexResult::kValueChanged:
      return "value changed";
    case FutexResult::kTimedOut:
      return "timed out";
    case FutexResult::kInterrupted:
      return "interrupted";
    case FutexResult::kNotSupported:
      return "not supported";
  }
  return "unknown";
}

FutexResult FutexWait(const std::atomic<std::uint32_t>* word, std::uint32_t expected, Deadline deadline) {
  deadline = deadline.Started();
  if (deadline.Expired()) return FutexResult::kTimedOut;
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline (plain FUTEX_WAIT takes a relative one).
  const timespec abs = deadline.ToTimespec();
  const long rc = Futex(word, FUTEX_WAIT_BITSET, expected, deadline.is_infinite() ? nullptr : &abs,
                        FUTEX_BITSET_MATCH_ANY);
  return rc == 0 ? FutexResult::kAwoken : ResultOfFailedWait(errno);
}

FutexResult FutexWaitAny(std::span<const FutexWaiter> waiters, Deadline deadline) {
  if (waiters.size() > kMaxFutexWaiters) return FutexResult::kNotSupported;
  deadline = deadline.Started();
  if (deadline.Expired()) return FutexResult::kTimedOut;
  // The kernel's struct futex_waitv, spelled out: older headers lack it.
  struct Waitv {
    std::uint64_t val;
    std::uint64_t uaddr;
    std::uint32_t flags;
    std::uint32_t reserved;
  };
  constexpr std::uint32_t kSize32 = 0x02;  // FUTEX2_SIZE_U32; shared: no FUTEX2_PRIVATE (see futex.h)
  constexpr long kSysFutexWaitv = 449;
  Waitv v[kMaxFutexWaiters];
  for (std::size_t i = 0; i < waiters.size(); ++i) {
    v[i] = Waitv{waiters[i].expected, reinterpret_cast<std::uintptr_t>(waiters[i].word), kSize32, 0};
  }
  const timespec abs = deadline.ToTimespec();
  const long rc = syscall(kSysFutexWaitv, v, waiters.size(), 0, deadline.is_infinite() ? nullptr : &abs,
                          CLOCK_MONOTONIC);
  return rc >= 0 ? FutexResult::kAwoken : ResultOfFailedWait(errno);
}

int FutexWake(const std::atomic<std::uint32_t>* word, int count) {
  const long rc = Futex(word, FUTEX_WAKE, static_cast<std::uint32_t>(count), nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

int FutexWakeAll(const std::atomic<std::uint32_t>* word) { return FutexWake(word, INT_MAX); }

}  // namespace eshm
