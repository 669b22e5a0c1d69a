// Deadlines on CLOCK_MONOTONIC, the clock futex waits and heartbeats are measured on.
//
// Deadlines are absolute so that a wait interrupted by a signal, or split into slices, never extends the
// caller's time budget. A Timeout becomes absolute when the call it is given to first has to wait: a
// blocking call that completes at once then never reads the clock.
#ifndef ESHM_DEADLINE_H_
#define ESHM_DEADLINE_H_

#include "eshm/internal/require_cxx20.h"
#if ESHM_CXX20

#include <time.h>

#include <algorithm>
#include <cassert>
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
  static constexpr Deadline AtMonotonicNs(std::int64_t ns) { return Deadline(ns < 0 ? 0 : ns); }
  // `timeout` from now.
  static Deadline After(absl::Duration timeout) { return Timeout(timeout).Started(); }
  static Deadline AfterMs(std::int64_t ms) { return After(absl::Milliseconds(ms)); }
  // `timeout` from the moment the call given this deadline first has to wait, for the deadline of one
  // blocking call: a call that completes at once (a message was queued, there was room) never reads the
  // clock, which costs about a third of a small message's way through a blocking stream.
  static Deadline Timeout(absl::Duration timeout) {
    if (timeout == absl::InfiniteDuration()) return Infinite();
    if (timeout <= absl::ZeroDuration()) return Past();
    return Deadline(-absl::ToInt64Nanoseconds(timeout));  // negative: not started; at least 1 ns
  }
  static Deadline TimeoutMs(std::int64_t ms) { return Timeout(absl::Milliseconds(ms)); }

  // False for a Timeout that no wait has started yet.
  bool started() const { return ns_ >= 0; }
  // This deadline, with a Timeout not yet started starting now. A call that waits starts its deadline once,
  // before its first wait, and waits on the result (each start of the same Timeout would grant it anew).
  Deadline Started() const {
    if (ns_ >= 0) return *this;
    const std::int64_t now = MonotonicNowNs();
    const std::int64_t delta = -ns_;
    return delta > std::numeric_limits<std::int64_t>::max() - now ? Infinite() : Deadline(now + delta);
  }

  // The observers below take a started deadline (a Timeout not started counts from now).
  bool is_infinite() const { return ns_ == std::numeric_limits<std::int64_t>::max(); }
  bool Expired() const { return !is_infinite() && MonotonicNowNs() >= AbsoluteNs(); }
  std::int64_t monotonic_ns() const { return AbsoluteNs(); }
  // The earlier of this deadline and `ns_from_now` nanoseconds from now (now itself if that is not positive).
  Deadline CappedAfterNs(std::int64_t ns_from_now) const {
    const std::int64_t absolute = AbsoluteNs();
    const std::int64_t now = MonotonicNowNs();
    if (ns_from_now > std::numeric_limits<std::int64_t>::max() - now) return Deadline(absolute);
    const std::int64_t cap = now + std::max<std::int64_t>(ns_from_now, 0);
    return cap < absolute ? Deadline(cap) : Deadline(absolute);
  }
  timespec ToTimespec() const {
    const std::int64_t absolute = AbsoluteNs();
    return timespec{static_cast<time_t>(absolute / 1'000'000'000), static_cast<long>(absolute % 1'000'000'000)};
  }

 private:
  constexpr explicit Deadline(std::int64_t ns) : ns_(ns) {}
  std::int64_t AbsoluteNs() const {
    assert(started() && "a Timeout must be started (Started()) before a wait looks at it");
    return Started().ns_;
  }
  // Absolute nanoseconds, or minus the timeout of a Timeout not started.
  std::int64_t ns_;
};

}  // namespace eshm

#endif  // ESHM_CXX20
#endif  // ESHM_DEADLINE_H_
