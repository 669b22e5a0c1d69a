// Timestamps both processes of a run can compare: the TSC when it is invariant and the kernel's clock
// source is the TSC too (then every core reads one constant-rate counter), CLOCK_MONOTONIC otherwise.
//
// Calibrate() runs once in the parent before any fork, so both ends convert ticks with the same factor.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_CLOCK_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_CLOCK_H_

#include <time.h>

#include <cstdint>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace eshm_bench {

class Clock {
 public:
  // Chooses the counter (`prefer_tsc` false forces CLOCK_MONOTONIC) and measures ticks per nanosecond.
  static void Calibrate(bool prefer_tsc);
  static bool uses_tsc() { return use_tsc_; }
  // "tsc" or "clock_monotonic".
  static std::string Name() { return use_tsc_ ? "tsc" : "clock_monotonic"; }

  static std::uint64_t Ticks() {
#if defined(__x86_64__) || defined(__i386__)
    if (use_tsc_) {
      unsigned int aux;
      return __rdtscp(&aux);  // rdtscp waits for earlier instructions: the operation timed is complete
    }
#endif
    return MonotonicNs();
  }
  static double ToNs(std::uint64_t ticks) { return static_cast<double>(ticks) * ns_per_tick_; }
  static std::uint64_t FromNs(double ns) { return static_cast<std::uint64_t>(ns / ns_per_tick_); }

  static std::uint64_t MonotonicNs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
  }

 private:
  static bool use_tsc_;
  static double ns_per_tick_;
};

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_CLOCK_H_
