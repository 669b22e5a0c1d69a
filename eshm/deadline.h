// Absolute deadlines on CLOCK_MONOTONIC, the clock futex waits and heartbeats are measured on.
//
// Deadlines are absolute so that a wait interrupted by a signal, or split into slices, never extends the
// caller's time budget.
#ifndef ESHM_DEADLINE_H_
#define ESHM_DEADLINE_H_

#include "eshm/internal/require_cxx20.h"
#if ESHM_CXX20

#include <time.h>

#include <cstdint>
#include <limits>

#include "absl/time/time.h"

namespace eshm {

// Nanoseconds on CLOCK_MONOTONIC.
inline std::int64_t MonotonicNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Nanoseconds since the Unix epoch (CLOCK_REALTIME): for times other processes and people read, such as a
// segment's creation time; never for deadlines.
inline std::int64_t RealtimeNowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

class Deadline {
 public:
  static constexpr Deadline Infinite() { return Deadline(std::numeric_limits<std::int64_t>::max()); }
  static constexpr Deadline Past() { return Deadline(0); }
  static constexpr Deadline AtMonotonicNs(std::int64_t ns) { return Deadline(ns); }
  static Deadline After(absl::Duration timeout) {
    if (timeout == absl::InfiniteDuration()) return Infinite();
    if (timeout <= absl::ZeroDuration()) return Past();
    const std::int64_t now = MonotonicNowNs();
    const std::int64_t delta = absl::ToInt64Nanoseconds(timeout);
    return delta > std::numeric_limits<std::int64_t>::max() - now ? Infinite() : Deadline(now + delta);
  }
  static Deadline AfterMs(std::int64_t ms) { return After(absl::Milliseconds(ms)); }

  bool is_infinite() const { return ns_ == std::numeric_limits<std::int64_t>::max(); }
  bool Expired() const { return !is_infinite() && MonotonicNowNs() >= ns_; }
  std::int64_t monotonic_ns() const { return ns_; }
  // The earlier of this deadline and `ns_from_now` nanoseconds from now.
  Deadline CappedAfterNs(std::int64_t ns_from_now) const {
    const std::int64_t cap = MonotonicNowNs() + ns_from_now;
    return cap < ns_ ? Deadline(cap) : *this;
  }
  timespec ToTimespec() const {
    return timespec{static_cast<time_t>(ns_ / 1'000'000'000), static_cast<long>(ns_ % 1'000'000'000)};
  }

 private:
  constexpr explicit Deadline(std::int64_t ns) : ns_(ns) {}
  std::int64_t ns_;
};

}  // namespace eshm

#endif  // ESHM_CXX20
#endif  // ESHM_DEADLINE_H_
