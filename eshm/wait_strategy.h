// How a side that cannot proceed (no data to read, no space to write) passes the time: spin, then yield,
// then sleep on a futex.
//
// Spinning answers in tens of nanoseconds but burns a core; a futex sleep costs nothing while idle but
// tens of microseconds to wake (a hypervisor IPI on virtual machines). The budgets below choose the
// trade-off per endpoint. Backoff is the small state machine that walks the three phases.
#ifndef ESHM_WAIT_STRATEGY_H_
#define ESHM_WAIT_STRATEGY_H_

#include "eshm/internal/require_cxx20.h"
#if ESHM_CXX20

#include <cstdint>

namespace eshm {

struct WaitStrategy {
  // Busy-poll (with a CPU pause hint) for this long before yielding.
  std::int64_t spin_ns = 20'000;
  // Then poll with sched_yield() for this long before sleeping.
  std::int64_t yield_ns = 30'000;
  // Then sleep on the futex; false never sleeps (pure spin: lowest latency, one core busy per waiter).
  bool allow_sleep = true;

  // Never sleeps: for latency-critical endpoints that own a core.
  static constexpr WaitStrategy Spin() { return WaitStrategy{INT64_MAX, 0, false}; }
  // Sleeps at once, and again at once after each sleep: no CPU spent spinning while idle. Only a reader in
  // the middle of a stream (its last sleep woke to a backlog, or its last look found a message) first
  // yields its CPU once and looks for up to 64 pauses (about 1 us in all), so that catching up with a
  // steady writer does not cost the writer a wake-up each time.
  static constexpr WaitStrategy Sleep() { return WaitStrategy{0, 0, true}; }
  // The default: spin briefly, yield briefly, then sleep.
  static constexpr WaitStrategy Adaptive() { return WaitStrategy{}; }
};

// Walks spin -> yield -> sleep for one wait. Thread-compatible; create one per wait.
class Backoff {
 public:
  explicit Backoff(const WaitStrategy& strategy) : strategy_(strategy) {}

  // Spends one polling step (a pause or a yield). Returns false once the caller should sleep instead, and
  // from then on.
  bool Pause();

 private:
  const WaitStrategy strategy_;
  std::int64_t start_ns_ = 0;
  std::uint32_t steps_ = 0;
  bool in_yield_phase_ = false;
  bool sleeping_ = false;
};

// A CPU hint that this thread is busy-waiting (PAUSE on x86, YIELD on Arm).
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace eshm

#endif  // ESHM_CXX20
#endif  // ESHM_WAIT_STRATEGY_H_
