// Time in a run: the clock both processes stamp messages with, the plan that says how long a run lasts, and
// the meter that says how much CPU other processes took meanwhile.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_TIMING_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_TIMING_H_

#include <time.h>

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

namespace eshm_bench {

// The TSC when it is invariant and the kernel's clock source is the TSC too (then every core reads one
// constant-rate counter), CLOCK_MONOTONIC otherwise. Calibrate() runs once in the parent before any fork,
// so both ends convert ticks with the same factor.
class Clock {
 public:
  // Chooses the counter (`prefer_tsc` false forces CLOCK_MONOTONIC) and measures ticks per nanosecond.
  static void Calibrate(bool prefer_tsc);
  static bool uses_tsc() { return use_tsc_; }

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

// How long a run lasts: a warm-up of warmup_s that is not recorded, then either `messages` timed messages
// or, when messages is 0, duration_s of timed messages.
struct LoadSpec {
  double warmup_s = 0.2;
  double duration_s = 1.0;
  std::int64_t messages = 0;  // > 0: exactly this many timed messages, whatever the duration
};

// The sender asks Next() before every message.
class LoadPlan {
 public:
  enum class Step { kWarmup, kTimed, kLast };

  explicit LoadPlan(const LoadSpec& spec)
      : messages_(spec.messages),
        warmup_ticks_(Clock::FromNs(spec.warmup_s * 1e9)),
        duration_ticks_(Clock::FromNs(spec.duration_s * 1e9)) {}

  void Start(std::uint64_t now) { warmup_end_ = now + warmup_ticks_; }

  // What the message about to be sent at `now` is. The first non-warm-up step starts the timed section.
  Step Next(std::uint64_t now) {
    if (!timing_) {
      if (now < warmup_end_) return Step::kWarmup;
      timing_ = true;
      timed_start_ = now;
    }
    ++timed_;
    const bool last = messages_ > 0 ? timed_ >= static_cast<std::uint64_t>(messages_)
                                    : now - timed_start_ >= duration_ticks_;
    return last ? Step::kLast : Step::kTimed;
  }
  std::uint64_t timed() const { return timed_; }

 private:
  const std::int64_t messages_;
  const std::uint64_t warmup_ticks_;
  const std::uint64_t duration_ticks_;
  std::uint64_t warmup_end_ = 0;
  std::uint64_t timed_start_ = 0;
  std::uint64_t timed_ = 0;
  bool timing_ = false;
};

// CPU other processes took while a run was measured: the machine's busy time (/proc/stat) minus this
// process's and its reaped children's (getrusage), over the wall time. On a shared machine this says which
// figures were disturbed (with 2 CPUs, 1.0 means a whole core went to someone else).
class CpuMeter {
 public:
  CpuMeter();  // starts measuring now
  // Average cores used by other processes since construction (never negative); -1 if unknown.
  double OthersCores() const;

 private:
  std::uint64_t start_ns_;
  double start_busy_s_;
  double start_own_s_;
};

// User plus system CPU seconds of this process (all its threads), and with `children` of its reaped children.
double CpuSeconds(bool children = false);

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_TIMING_H_
