#include "eshm/internal/asymmetric_fence.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace eshm::internal {
namespace {

// The store-buffering litmus test. Without the barrier, x86 and Arm let both threads read 0 (each load
// passes its own earlier store); with it, at least one of them reads the other's 1.
TEST(AsymmetricFenceTest, OrdersTheLightThreadsStoreBeforeItsLoad) {
  if (!LightSideReady() || !HeavyFence()) {
    GTEST_SKIP() << "membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) is not available here";
  }
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int kRounds = 500;
#else
  constexpr int kRounds = 5'000;
#endif
  std::atomic<int> a{0}, b{0};
  std::atomic<int> round{-1};  // the round both threads are to run (none yet)
  std::atomic<int> done{0};    // rounds the hot thread has finished
  std::atomic<int> r1{0};
  int both_zero = 0;
  std::thread hot([&] {
    for (int r = 0; r < kRounds; ++r) {
      while (round.load(std::memory_order_acquire) != r) {
      }
      a.store(1, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      r1.store(b.load(std::memory_order_relaxed), std::memory_order_relaxed);
      done.store(r + 1, std::memory_order_release);
    }
  });
  for (int r = 0; r < kRounds; ++r) {
    a.store(0, std::memory_order_relaxed);
    b.store(0, std::memory_order_relaxed);
    round.store(r, std::memory_order_release);
    b.store(1, std::memory_order_relaxed);
    ASSERT_TRUE(HeavyFence());
    const int r2 = a.load(std::memory_order_relaxed);
    while (done.load(std::memory_order_acquire) != r + 1) {
    }
    if (r1.load(std::memory_order_relaxed) == 0 && r2 == 0) ++both_zero;
  }
  hot.join();
  EXPECT_EQ(both_zero, 0) << "rounds in which neither thread saw the other's store";
}

}  // namespace
}  // namespace eshm::internal
