#include "eshm/wait_strategy.h"

#include <sched.h>

#include "eshm/deadline.h"

namespace eshm {

bool Backoff::Pause() {
  if (sleeping_) return false;
  // Read the clock only every 64 steps: it costs about as much as a short spin.
  if ((steps_++ & 63) == 0) {
    const std::int64_t now = MonotonicNowNs();
    if (start_ns_ == 0) start_ns_ = now;
    const std::int64_t elapsed = now - start_ns_;
    if (elapsed >= strategy_.spin_ns) {
      if (elapsed - strategy_.spin_ns >= strategy_.yield_ns) {
        if (strategy_.allow_sleep) {
          sleeping_ = true;  // and at every later step: no more polling between sleeps
          return false;
        }
        // A spin-only strategy whose budgets ran out keeps yielding rather than sleeping.
      }
      in_yield_phase_ = true;
    }
  }
  if (in_yield_phase_) {
    sched_yield();
  } else {
    CpuRelax();
  }
  return true;
}

}  // namespace eshm
