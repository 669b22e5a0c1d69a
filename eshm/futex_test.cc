#include "eshm/futex.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/deadline.h"
#include "gtest/gtest.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::BlockedState;
using eshm_test::Child;
using eshm_test::WaitUntilBlockedIn;

std::uintptr_t AddressOf(const std::atomic<std::uint32_t>* word) { return reinterpret_cast<std::uintptr_t>(word); }

std::string ThreadSyscallPath(pid_t tid) { return absl::StrCat("/proc/self/task/", tid, "/syscall"); }

extern "C" void IgnoreSignal(int) {}

// Installs IgnoreSignal for SIGUSR1 without SA_RESTART, so the signal ends a blocking system call with EINTR.
struct sigaction InstallInterruptingHandler() {
  struct sigaction action = {};
  action.sa_handler = IgnoreSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  struct sigaction previous = {};
  sigaction(SIGUSR1, &action, &previous);
  return previous;
}

// Waits until thread `tid` sleeps in FUTEX_WAIT on `word`, so that a wake is what ends the wait rather than
// the value check. Falls back to a short sleep where /proc does not say.
BlockedState WaitUntilThreadSleepsOn(pid_t tid, const std::atomic<std::uint32_t>* word) {
  const BlockedState state = WaitUntilBlockedIn(ThreadSyscallPath(tid), SYS_futex, AddressOf(word), absl::Seconds(10));
  if (state == BlockedState::kUnsupported) eshm_test::SleepMs(100);
  return state;
}

// Ends a wait that should have ended by itself: after `after`, bumps the word and wakes it, so that a
// wait that ignores its deadline fails the test instead of hanging it.
class Rescuer {
 public:
  Rescuer(std::atomic<std::uint32_t>* word, absl::Duration after)
      : thread_([this, word, after] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, absl::ToChronoMilliseconds(after), [this] { return cancelled_; })) {
            rescued_ = true;
            word->fetch_add(1);
            FutexWakeAll(word);
          }
        }) {}
  ~Rescuer() {
    Cancel();
    thread_.join();
  }
  void Cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }
  bool rescued() {
    std::lock_guard<std::mutex> lock(mu_);
    return rescued_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool cancelled_ = false;
  bool rescued_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

// First in the file: it forks, and the process has no other thread yet (sanitizers dislike forking threads).
TEST(FutexTest, WakeReachesWaiterInAnotherProcess) {
  // An anonymous shared mapping is shmem: a shared futex on it is keyed by page, not by address space, so
  // it only works across fork if FutexWait/FutexWake do not use FUTEX_PRIVATE_FLAG.
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  auto* word = new (page) std::atomic<std::uint32_t>(0);

  Child child = Child::Start([word] {
    // Infinite: only the parent's wake can end this wait; the parent's watchdog kills us otherwise.
    const FutexResult result = FutexWait(word, 0, Deadline::Infinite());
    if (word->load() != 1) return 3;
    if (result == FutexResult::kAwoken) return 0;
    if (result == FutexResult::kValueChanged) return 1;
    return 10 + static_cast<int>(result);
  });
  ASSERT_GT(child.pid(), 0);

  const BlockedState state = WaitUntilBlockedIn(absl::StrCat("/proc/", child.pid(), "/syscall"), SYS_futex,
                                                AddressOf(word), absl::Seconds(10));
  ASSERT_NE(state, BlockedState::kTimedOut) << "the child never went to sleep on the futex";
  if (state == BlockedState::kUnsupported) eshm_test::SleepMs(200);
  word->store(1);
  const int woken = FutexWake(word, 1);

  // The child exits 0 only if the wake (not the value check) ended its wait, 1 if the value check did.
  const bool child_ok = eshm_test::WaitForChild(child, absl::Seconds(10));
  if (state == BlockedState::kBlocked) {
    EXPECT_EQ(woken, 1);
    EXPECT_TRUE(child_ok) << child.Describe();
  } else {
    EXPECT_TRUE(child_ok || child.Describe() == "exited with code 1") << child.Describe();
  }
  munmap(page, 4096);
}

TEST(FutexTest, WakeReachesSleepingThread) {
  std::atomic<std::uint32_t> word{0};
  std::atomic<pid_t> waiter_tid{0};
  std::atomic<FutexResult> result{FutexResult::kTimedOut};
  std::thread waiter([&] {
    waiter_tid.store(gettid());
    // Bounded, so that a lost wake fails the test instead of hanging it.
    result.store(FutexWait(&word, 0, Deadline::AfterMs(20'000)));
  });
  while (waiter_tid.load() == 0) std::this_thread::yield();
  const BlockedState state = WaitUntilThreadSleepsOn(waiter_tid.load(), &word);
  EXPECT_NE(state, BlockedState::kTimedOut) << "the waiter never went to sleep on the futex";

  word.store(1);
  const int woken = FutexWake(&word, 1);
  waiter.join();

  if (state == BlockedState::kBlocked) {
    EXPECT_EQ(woken, 1);
    EXPECT_EQ(result.load(), FutexResult::kAwoken) << FutexResultName(result.load());
  } else {
    EXPECT_TRUE(result.load() == FutexResult::kAwoken || result.load() == FutexResult::kValueChanged)
        << FutexResultName(result.load());
  }
}

TEST(FutexTest, InfiniteDeadlineSleepsUntilWoken) {
  std::atomic<std::uint32_t> word{0};
  std::atomic<pid_t> waiter_tid{0};
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    waiter_tid.store(gettid());
    // Loop like a real caller: spurious wakeups are allowed, returning early with the word unchanged is not
    // (checked below).
    while (word.load() == 0) {
      const FutexResult r = FutexWait(&word, 0, Deadline::Infinite());
      if (r == FutexResult::kTimedOut) break;  // an infinite wait must never time out
    }
    returned.store(true);
  });
  while (waiter_tid.load() == 0) std::this_thread::yield();
  const BlockedState state = WaitUntilThreadSleepsOn(waiter_tid.load(), &word);
  EXPECT_NE(state, BlockedState::kTimedOut) << "the waiter never went to sleep on the futex";
  // The waiter keeps sleeping while nobody wakes it.
  eshm_test::SleepMs(50);
  EXPECT_FALSE(returned.load());
  if (state == BlockedState::kBlocked) {
    EXPECT_EQ(WaitUntilBlockedIn(ThreadSyscallPath(waiter_tid.load()), SYS_futex, AddressOf(&word),
                                 absl::Seconds(10)),
              BlockedState::kBlocked);
  }
  word.store(1);
  // Keep waking until it returns: a wake may land just before it goes back to sleep after a spurious
  // wakeup.
  const std::int64_t give_up = MonotonicNowNs() + 20'000'000'000;
  while (!returned.load() && MonotonicNowNs() < give_up) {
    FutexWakeAll(&word);
    eshm_test::SleepMs(1);
  }
  EXPECT_TRUE(returned.load()) << "FutexWake did not end an infinite wait";
  if (!returned.load()) {
    // Break the wait with a signal so the test can end.
    const struct sigaction previous = InstallInterruptingHandler();
    while (!returned.load()) {
      pthread_kill(waiter.native_handle(), SIGUSR1);
      eshm_test::SleepMs(5);
    }
    sigaction(SIGUSR1, &previous, nullptr);
  }
  waiter.join();
}

TEST(FutexTest, WakeCountLimitsHowManyWaitersWake) {
  constexpr int kWaiters = 3;
  std::atomic<std::uint32_t> word{0};
  std::atomic<int> returned{0};
  std::vector<std::atomic<pid_t>> tids(kWaiters);
  std::vector<std::thread> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    tids[i].store(0);
    waiters.emplace_back([&, i] {
      tids[i].store(gettid());
      // Unchanged word: each waiter returns only when woken (or at the bounded deadline).
      FutexWait(&word, 0, Deadline::AfterMs(20'000));
      returned.fetch_add(1);
    });
  }
  bool all_blocked = true;
  for (int i = 0; i < kWaiters; ++i) {
    while (tids[i].load() == 0) std::this_thread::yield();
    all_blocked = WaitUntilThreadSleepsOn(tids[i].load(), &word) == BlockedState::kBlocked && all_blocked;
  }
  if (!all_blocked) {
    // Without /proc we cannot tell that all three sleep; just release them.
    FutexWakeAll(&word);
    for (std::thread& t : waiters) t.join();
    GTEST_SKIP() << "cannot observe futex sleepers through /proc";
  }

  EXPECT_EQ(FutexWake(&word, 1), 1);
  const std::int64_t give_up = MonotonicNowNs() + 10'000'000'000;
  while (returned.load() < 1 && MonotonicNowNs() < give_up) eshm_test::SleepMs(1);
  EXPECT_EQ(returned.load(), 1);
  EXPECT_EQ(FutexWakeAll(&word), kWaiters - 1);
  for (std::thread& t : waiters) t.join();
  EXPECT_EQ(returned.load(), kWaiters);
}

TEST(FutexTest, WakeWithoutWaitersWakesNobody) {
  std::atomic<std::uint32_t> word{0};
  EXPECT_EQ(FutexWake(&word, 1), 0);
  EXPECT_EQ(FutexWakeAll(&word), 0);
}

TEST(FutexTest, WaitTimesOutNoEarlierThanItsDeadline) {
  std::atomic<std::uint32_t> word{0};
  Rescuer rescuer(&word, absl::Seconds(10));
  const std::int64_t start = MonotonicNowNs();
  const Deadline deadline = Deadline::AfterMs(20);
  const FutexResult result = FutexWait(&word, 0, deadline);
  const std::int64_t end = MonotonicNowNs();
  rescuer.Cancel();
  EXPECT_FALSE(rescuer.rescued()) << "the wait ignored its deadline";
  EXPECT_EQ(result, FutexResult::kTimedOut) << FutexResultName(result);
  // Only lower bounds: a loaded machine may oversleep by any amount.
  EXPECT_GE(end, deadline.monotonic_ns());
  EXPECT_GE(end - start, 20'000'000);
}

TEST(FutexTest, WaitReturnsValueChangedWhenWordDiffers) {
  std::atomic<std::uint32_t> word{7};
  // A long deadline: a wait that wrongly sleeps shows up as kTimedOut rather than a hang.
  const FutexResult result = FutexWait(&word, 6, Deadline::AfterMs(10'000));
  EXPECT_EQ(result, FutexResult::kValueChanged) << FutexResultName(result);
}

TEST(FutexTest, ExpiredDeadlineTimesOutAtOnce) {
  std::atomic<std::uint32_t> word{0};
  EXPECT_EQ(FutexWait(&word, 0, Deadline::Past()), FutexResult::kTimedOut);
  EXPECT_EQ(FutexWait(&word, 0, Deadline::AtMonotonicNs(MonotonicNowNs() - 1)), FutexResult::kTimedOut);
  EXPECT_EQ(FutexWait(&word, 0, Deadline::After(absl::ZeroDuration())), FutexResult::kTimedOut);
  EXPECT_EQ(FutexWait(&word, 0, Deadline::After(-absl::Seconds(1))), FutexResult::kTimedOut);
}

TEST(FutexTest, SignalInterruptsWait) {
  // A handler without SA_RESTART: the kernel ends the wait with EINTR when the handler runs.
  const struct sigaction previous = InstallInterruptingHandler();

  std::atomic<std::uint32_t> word{0};
  std::atomic<pid_t> waiter_tid{0};
  std::atomic<bool> done{false};
  std::atomic<FutexResult> result{FutexResult::kAwoken};
  std::thread waiter([&] {
    waiter_tid.store(gettid());
    result.store(FutexWait(&word, 0, Deadline::AfterMs(15'000)));
    done.store(true);
  });
  while (waiter_tid.load() == 0) std::this_thread::yield();
  WaitUntilThreadSleepsOn(waiter_tid.load(), &word);
  // A signal that lands before the waiter enters the kernel interrupts nothing, so repeat until it returns.
  const std::int64_t give_up = MonotonicNowNs() + 10'000'000'000;
  while (!done.load() && MonotonicNowNs() < give_up) {
    pthread_kill(waiter.native_handle(), SIGUSR1);
    eshm_test::SleepMs(5);
  }
  waiter.join();
  sigaction(SIGUSR1, &previous, nullptr);
  EXPECT_EQ(result.load(), FutexResult::kInterrupted) << FutexResultName(result.load());
}

TEST(FutexTest, ResultsHaveNames) {
  EXPECT_STREQ(FutexResultName(FutexResult::kAwoken), "awoken");
  EXPECT_STREQ(FutexResultName(FutexResult::kValueChanged), "value changed");
  EXPECT_STREQ(FutexResultName(FutexResult::kTimedOut), "timed out");
  EXPECT_STREQ(FutexResultName(FutexResult::kInterrupted), "interrupted");
}


// FUTEX_WAITV: one sleep on several words, woken by a wake on any of them.
TEST(FutexWaitAnyTest, AWakeOnAnyWordEndsTheSleep) {
  std::atomic<std::uint32_t> words[3] = {0, 0, 0};
  const FutexWaiter waiters[3] = {{&words[0], 0}, {&words[1], 0}, {&words[2], 0}};
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    words[2].store(1, std::memory_order_release);
    FutexWakeAll(&words[2]);
  });
  FutexResult result = FutexResult::kTimedOut;
  while (words[2].load() == 0) {
    result = FutexWaitAny(waiters, Deadline::AfterMs(10'000));
    if (result == FutexResult::kNotSupported) break;
  }
  waker.join();
  if (result == FutexResult::kNotSupported) GTEST_SKIP() << "this kernel has no FUTEX_WAITV";
  EXPECT_TRUE(result == FutexResult::kAwoken || result == FutexResult::kValueChanged) << FutexResultName(result);
}

TEST(FutexWaitAnyTest, AWordThatChangedReturnsAtOnceAndTimeoutsAndLimitsHold) {
  std::atomic<std::uint32_t> a{0}, b{5};
  const FutexWaiter changed[2] = {{&a, 0}, {&b, 4}};
  const FutexResult r = FutexWaitAny(changed, Deadline::AfterMs(10'000));
  if (r == FutexResult::kNotSupported) GTEST_SKIP() << "this kernel has no FUTEX_WAITV";
  EXPECT_EQ(r, FutexResult::kValueChanged);
  const FutexWaiter same[2] = {{&a, 0}, {&b, 5}};
  EXPECT_EQ(FutexWaitAny(same, Deadline::AfterMs(20)), FutexResult::kTimedOut);
  std::vector<FutexWaiter> too_many(kMaxFutexWaiters + 1, FutexWaiter{&a, 0});
  EXPECT_EQ(FutexWaitAny(too_many, Deadline::AfterMs(10'000)), FutexResult::kNotSupported);
}

}  // namespace
}  // namespace eshm
