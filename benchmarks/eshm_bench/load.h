// How long a run lasts: a warm-up of warmup_s that is not recorded, then either `messages` timed messages
// or, when messages is 0, duration_s of timed messages. The sender asks Next() before every message.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_LOAD_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_LOAD_H_

#include <cstdint>

#include "benchmarks/eshm_bench/clock.h"

namespace eshm_bench {

struct LoadSpec {
  double warmup_s = 0.2;
  double duration_s = 1.0;
  std::int64_t messages = 0;  // > 0: exactly this many timed messages, whatever the duration
};

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
  std::uint64_t timed_start() const { return timed_start_; }
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

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_LOAD_H_
