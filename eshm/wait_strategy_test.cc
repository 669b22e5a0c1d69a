// Backoff: the walk from spinning to yielding to sleeping that every blocking wait takes.
#include "eshm/wait_strategy.h"

#include "eshm/deadline.h"
#include "gtest/gtest.h"

namespace eshm {
namespace {

TEST(BackoffTest, SpinNeverSleeps) {
  Backoff backoff(WaitStrategy::Spin());
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(backoff.Pause()) << "step " << i;
}

// Sleep() polls not at all: not before its first sleep, and not between its sleeps (a wait whose sleep
// ends without what it waits for, at a slice's end, sleeps again at once).
TEST(BackoffTest, SleepSleepsAtOnceAndAtEveryLaterStep) {
  Backoff backoff(WaitStrategy::Sleep());
  for (int i = 0; i < 1000; ++i) ASSERT_FALSE(backoff.Pause()) << "step " << i;
}

// A strategy polls for its budgets, then says sleep, and says so from then on.
TEST(BackoffTest, PollsForItsBudgetsThenSleepsFromThenOn) {
  Backoff backoff(WaitStrategy{/*spin_ns=*/2'000'000, /*yield_ns=*/1'000'000, /*allow_sleep=*/true});
  const std::int64_t start = MonotonicNowNs();
  std::int64_t steps = 0;
  while (backoff.Pause()) ++steps;
  EXPECT_GE(MonotonicNowNs() - start, 3'000'000);
  EXPECT_GT(steps, 0);
  for (int i = 0; i < 1000; ++i) ASSERT_FALSE(backoff.Pause()) << "step " << i << " after the budgets";
}

}  // namespace
}  // namespace eshm
