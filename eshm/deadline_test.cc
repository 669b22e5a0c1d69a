// Deadline: absolute times, and Timeouts that start when a call first waits.
#include "eshm/deadline.h"

#include <limits>
#include <thread>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace eshm {
namespace {

TEST(DeadlineTest, AfterCountsFromNow) {
  const std::int64_t before = MonotonicNowNs();
  const Deadline deadline = Deadline::AfterMs(50);
  EXPECT_TRUE(deadline.started());
  EXPECT_GE(deadline.monotonic_ns(), before + 50'000'000);
  EXPECT_LE(deadline.monotonic_ns(), MonotonicNowNs() + 50'000'000);
  EXPECT_FALSE(deadline.Expired());
}

// A Timeout is a per-call timeout: made once, given to many calls, each of which counts it from its own
// first wait. Made long before it is started, it still grants its whole length.
TEST(DeadlineTest, ATimeoutStartsWhenStartedAndGrantsItsWholeLengthThen) {
  const Deadline per_call = Deadline::TimeoutMs(50);
  EXPECT_FALSE(per_call.started());
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  const std::int64_t before = MonotonicNowNs();
  const Deadline started = per_call.Started();
  EXPECT_TRUE(started.started());
  EXPECT_GE(started.monotonic_ns(), before + 50'000'000);
  EXPECT_LE(started.monotonic_ns(), MonotonicNowNs() + 50'000'000);
  EXPECT_FALSE(started.Expired());
  // Starting a started deadline changes nothing: a call's slices and retries never extend it.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(started.Started().monotonic_ns(), started.monotonic_ns());
  EXPECT_FALSE(per_call.started()) << "starting returns a new deadline; the Timeout stays reusable";
}

TEST(DeadlineTest, EdgeTimeouts) {
  EXPECT_TRUE(Deadline::TimeoutMs(0).started());
  EXPECT_TRUE(Deadline::TimeoutMs(0).Expired());
  EXPECT_TRUE(Deadline::TimeoutMs(-5).Expired());
  EXPECT_TRUE(Deadline::Timeout(absl::InfiniteDuration()).is_infinite());
  EXPECT_TRUE(Deadline::After(absl::InfiniteDuration()).is_infinite());
  // Longer than the clock can count: never expires, rather than wrapping into the past.
  const Deadline huge = Deadline::Timeout(absl::Hours(24 * 365 * 400'000'000LL)).Started();
  EXPECT_FALSE(huge.Expired());
  EXPECT_TRUE(Deadline::After(absl::Hours(24 * 365 * 400'000'000LL)).is_infinite());
  EXPECT_FALSE(Deadline::Timeout(absl::Nanoseconds(1)).started());
  // An absolute time before the clock's start is simply past, never mistaken for a Timeout.
  EXPECT_TRUE(Deadline::AtMonotonicNs(-7).started());
  EXPECT_TRUE(Deadline::AtMonotonicNs(-7).Expired());
  EXPECT_TRUE(Deadline::Past().Expired());
  EXPECT_FALSE(Deadline::Infinite().Expired());
}

TEST(DeadlineTest, CappedAfterNsTakesTheEarlierAndKeepsTheDeadline) {
  const Deadline deadline = Deadline::AfterMs(1000);
  const Deadline capped = deadline.CappedAfterNs(10'000'000);
  EXPECT_LT(capped.monotonic_ns(), deadline.monotonic_ns());
  EXPECT_EQ(deadline.CappedAfterNs(5'000'000'000).monotonic_ns(), deadline.monotonic_ns());
  EXPECT_FALSE(Deadline::Infinite().CappedAfterNs(1'000'000).is_infinite());
  // Caps beyond the clock's range, or not in the future, never wrap around into a Timeout or the past.
  EXPECT_TRUE(Deadline::Infinite().CappedAfterNs(std::numeric_limits<std::int64_t>::max()).is_infinite());
  EXPECT_TRUE(deadline.CappedAfterNs(-std::numeric_limits<std::int64_t>::max()).started());
  EXPECT_TRUE(deadline.CappedAfterNs(-5).Expired());
  EXPECT_TRUE(deadline.CappedAfterNs(0).Expired());
}

}  // namespace
}  // namespace eshm
