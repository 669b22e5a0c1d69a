#include "eshm/futex.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

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
  }
  return "unknown";
}

FutexResult FutexWait(const std::atomic<std::uint32_t>* word, std::uint32_t expected, Deadline deadline) {
  if (deadline.Expired()) return FutexResult::kTimedOut;
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline (plain FUTEX_WAIT takes a relative one).
  const timespec abs = deadline.ToTimespec();
  const long rc = Futex(word, FUTEX_WAIT_BITSET, expected, deadline.is_infinite() ? nullptr : &abs,
                        FUTEX_BITSET_MATCH_ANY);
  if (rc == 0) return FutexResult::kAwoken;
  switch (errno) {
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

int FutexWake(const std::atomic<std::uint32_t>* word, int count) {
  const long rc = Futex(word, FUTEX_WAKE, static_cast<std::uint32_t>(count), nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

int FutexWakeAll(const std::atomic<std::uint32_t>* word) { return FutexWake(word, INT_MAX); }

}  // namespace eshm
