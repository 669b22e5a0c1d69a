#include "eshm/internal/side_lock.h"

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "eshm/deadline.h"
#include "gtest/gtest.h"

namespace eshm::internal {
namespace {

constexpr std::int64_t kSliceNs = 5'000'000;

bool Never() { return false; }

TEST(SideLockTest, TryLockFailsWhileHeld) {
  SideLock lock;
  ASSERT_TRUE(lock.TryLock());
  EXPECT_FALSE(lock.TryLock());
  lock.Unlock();
  EXPECT_TRUE(lock.TryLock());
  lock.Unlock();
}

TEST(SideLockTest, LockUntilGivesUpAtTheDeadline) {
  SideLock lock;
  ASSERT_TRUE(lock.TryLock());
  std::thread other([&] { EXPECT_FALSE(lock.LockUntil(Deadline::AfterMs(30), kSliceNs, Never)); });
  other.join();
  lock.Unlock();
  // Giving up left no stale claim: the lock is free.
  EXPECT_TRUE(lock.TryLock());
  lock.Unlock();
}

TEST(SideLockTest, StopEndsTheWaitAndWakeWaitersMakesItPrompt) {
  SideLock lock;
  ASSERT_TRUE(lock.TryLock());
  std::atomic<bool> stop{false};
  std::atomic<bool> returned{false};
  std::thread other([&] {
    // An hour-long slice: only WakeWaiters can get it to look at `stop` before the test's watchdog fires.
    EXPECT_FALSE(lock.LockUntil(Deadline::Infinite(), 3'600'000'000'000, [&] { return stop.load(); }));
    returned.store(true);
  });
  // Let it reach its sleep (if it has not, it sees `stop` on its way there).
  for (int i = 0; i < 20 && !returned.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(returned.load()) << "LockUntil returned while the lock was held";
  stop.store(true);
  const Deadline watchdog = Deadline::AfterMs(10'000);
  while (!returned.load() && !watchdog.Expired()) {
    lock.WakeWaiters();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(returned.load()) << "WakeWaiters did not end the wait";
  other.join();
  lock.Unlock();
}

TEST(SideLockTest, UnlockWakesASleepingWaiter) {
  SideLock lock;
  ASSERT_TRUE(lock.TryLock());
  std::atomic<bool> got{false};
  std::thread other([&] {
    EXPECT_TRUE(lock.LockUntil(Deadline::AfterMs(10'000), 3'600'000'000'000, Never));
    got.store(true);
    lock.Unlock();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(got.load());
  lock.Unlock();
  other.join();
  EXPECT_TRUE(got.load());
}

// Mutual exclusion: a plain (non-atomic) counter incremented under the lock by several threads, half of them
// through TryLock. A lost increment, or (under ThreadSanitizer) a reported race, is a failure.
TEST(SideLockTest, SerializesManyThreads) {
  SideLock lock;
  std::uint64_t counter = 0;
  constexpr int kThreads = 4;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int kIterations = 20'000;
#else
  constexpr int kIterations = 200'000;
#endif
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        if (t % 2 == 0) {
          while (!lock.TryLock()) std::this_thread::yield();
        } else {
          ASSERT_TRUE(lock.LockUntil(Deadline::AfterMs(10'000), kSliceNs, Never));
        }
        counter = counter + 1;
        lock.Unlock();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(counter, std::uint64_t{kThreads} * kIterations);
}

}  // namespace
}  // namespace eshm::internal
