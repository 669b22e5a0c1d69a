// The shared monitor with stand-in clients: ticks come when asked, clients due at the same time tick in one
// batch, and Remove keeps its promise (no tick runs after it returns) even for a client whose batch is still
// running another client's tick.
#include "eshm/internal/monitor.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "eshm/deadline.h"
#include "eshm/segment_name.h"
#include "gtest/gtest.h"

namespace eshm::internal {
namespace {

constexpr std::int64_t kMs = 1'000'000;

class CountingClient final : public MonitorClient {
 public:
  explicit CountingClient(std::int64_t interval_ns) : interval_ns_(interval_ns) {}
  virtual ~CountingClient() = default;
  std::int64_t OnTick(std::int64_t now_ns, unsigned, TickHints&) override {
    if (removed.load(std::memory_order_acquire)) ticked_after_remove.store(true, std::memory_order_release);
    const int n = ticks.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (n == block_at.load(std::memory_order_acquire)) {
      blocked.store(true, std::memory_order_release);
      while (!release.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return now_ns + interval_ns_;
  }

  std::atomic<int> ticks{0};
  std::atomic<bool> removed{false};
  std::atomic<bool> ticked_after_remove{false};
  std::atomic<int> block_at{0};  // the tick that blocks until `release` (0: none); set by the test's thread
  std::atomic<bool> blocked{false};
  std::atomic<bool> release{false};

 private:
  std::int64_t interval_ns_;
};

std::string UniqueFileName(int i) {
  return "eshm_monitor_test_" + std::to_string(getpid()) + "_" + std::to_string(i);
}

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(MonitorTest, EveryClientTicksAboutAsOftenAsItAsks) {
  Monitor& monitor = Monitor::Process();
  std::vector<std::unique_ptr<CountingClient>> clients;
  for (int i = 0; i < 200; ++i) {
    clients.push_back(std::make_unique<CountingClient>(10 * kMs));
    monitor.Add(clients.back().get(), UniqueFileName(i));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (auto& client : clients) monitor.Remove(client.get());
  for (auto& client : clients) {
    // Asked every 10 ms for 300 ms: about 30 ticks (never later than asked; a loaded machine may starve the
    // thread for a while, hence the wide lower bound). More than one per millisecond would be a busy loop.
    EXPECT_GE(client->ticks.load(), 5);
    EXPECT_LE(client->ticks.load(), 300);
  }
}

TEST(MonitorTest, RemoveWaitsForTheWholeBatchItsClientIsIn) {
  Monitor& monitor = Monitor::Process();
  // Many clients on one short interval: their ticks share grid points, so a batch holds several of them.
  std::vector<std::unique_ptr<CountingClient>> clients;
  for (int i = 0; i < 64; ++i) {
    clients.push_back(std::make_unique<CountingClient>(4 * kMs));
    monitor.Add(clients.back().get(), UniqueFileName(1000 + i));
  }
  CountingClient& blocker = *clients[0];
  blocker.block_at.store(blocker.ticks.load() + 3, std::memory_order_release);
  ASSERT_TRUE(WaitFor([&] { return blocker.blocked.load(); }));
  // The thread is stuck inside one batch. Remove every other client: whichever are in that batch must not
  // be ticked once their Remove has returned (their batch resumes after the blocker is released).
  std::atomic<int> removed{0};
  std::thread remover([&] {
    for (std::size_t i = 1; i < clients.size(); ++i) {
      monitor.Remove(clients[i].get());
      clients[i]->removed.store(true, std::memory_order_release);
      removed.fetch_add(1);
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  blocker.release.store(true, std::memory_order_release);
  remover.join();
  EXPECT_EQ(removed.load(), 63);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // a tick after a Remove would land by now
  monitor.Remove(&blocker);
  for (std::size_t i = 1; i < clients.size(); ++i) {
    EXPECT_FALSE(clients[i]->ticked_after_remove.load()) << "client " << i << " ticked after Remove returned";
  }
}

TEST(MonitorTest, AnEventOnItsNameTicksAClientThatAskedForAMinute) {
  Monitor& monitor = Monitor::Process();
  if (!monitor.names_watched()) GTEST_SKIP() << "no inotify here";
  const std::string name = UniqueFileName(5000);
  const std::string path = std::string(kSegmentDirectory) + "/" + name;
  const int fd = open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  auto slow = std::make_unique<CountingClient>(60'000 * kMs);
  monitor.Add(slow.get(), name);
  ASSERT_TRUE(WaitFor([&] { return slow->ticks.load() >= 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const int before = slow->ticks.load();
  TouchForMonitors(fd);  // what a peer arriving or leaving does
  EXPECT_TRUE(WaitFor([&] { return slow->ticks.load() > before; }, std::chrono::seconds(10)));
  monitor.Remove(slow.get());
  close(fd);
  unlink(path.c_str());
}

// A client that runs `on_tick` inside its ticks (WatchThread and KeepMoving are for OnTick only), asks for a
// tick a minute later, and records the ticks that came with kThreadChanged.
class ThreadWatchingClient final : public MonitorClient {
 public:
  std::int64_t OnTick(std::int64_t now_ns, unsigned events, TickHints&) override {
    monitor_tid.store(CurrentThreadId(), std::memory_order_release);
    std::function<void()> work;
    {
      std::lock_guard<std::mutex> lock(mu);
      work = std::exchange(on_tick, nullptr);
    }
    if (work) work();
    if ((events & kThreadChanged) != 0) changes.fetch_add(1, std::memory_order_acq_rel);
    return now_ns + 60'000 * kMs;
  }
  // Runs `work` in the next tick, which it asks for through an event on the client's name.
  void RunInTick(std::function<void()> work, int fd) {
    {
      std::lock_guard<std::mutex> lock(mu);
      on_tick = std::move(work);
    }
    TouchForMonitors(fd);
  }
  std::mutex mu;
  std::function<void()> on_tick;
  std::atomic<int> changes{0};
  std::atomic<pid_t> monitor_tid{0};
};

std::uint64_t VoluntarySwitchesOf(pid_t tid) {
  std::ifstream status("/proc/self/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("voluntary_ctxt_switches:", 0) == 0) return std::stoull(line.substr(24));
  }
  return 0;
}

// A watched thread that keeps sleeping and waking is moving; one blocked for good goes still after the time
// given (its client ticked then), moves again when it resumes (ticked again), and once it has exited it is
// unreadable (ticked a third time).
TEST(MonitorTest, AWatchedThreadIsStillWhenItStopsSleepingAndWaking) {
  Monitor& monitor = Monitor::Process();
  if (!monitor.names_watched()) GTEST_SKIP() << "no inotify here";
  const std::string name = UniqueFileName(6000);
  const std::string path = std::string(kSegmentDirectory) + "/" + name;
  const int fd = open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  std::mutex gate;
  std::atomic<bool> quit{false};
  std::atomic<pid_t> worker_tid{0};
  std::unique_lock<std::mutex> blocked(gate, std::defer_lock);
  std::thread worker([&] {
    worker_tid.store(CurrentThreadId());
    while (!quit.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      std::lock_guard<std::mutex> pass(gate);  // blocks while the test holds the gate
    }
  });
  ASSERT_TRUE(WaitFor([&] { return worker_tid.load() != 0; }));
  auto client = std::make_unique<ThreadWatchingClient>();
  monitor.Add(client.get(), name);
  std::atomic<int> watched{-1};
  // Still after 250 ms: a loaded machine (sanitizers, tests beside this one) may leave the worker unscheduled
  // for tens of milliseconds, never for that long.
  client->RunInTick([&] { watched = monitor.WatchThread(client.get(), getpid(), worker_tid.load(), 250 * kMs); }, fd);
  ASSERT_TRUE(WaitFor([&] { return watched.load() != -1; }));
  ASSERT_EQ(watched.load(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ThreadProgress progress = monitor.ThreadProgressOf(client.get());
  EXPECT_TRUE(progress.readable);
  EXPECT_FALSE(progress.still) << "a thread that sleeps every 5 ms was called still";
  EXPECT_EQ(client->changes.load(), 0);

  blocked.lock();  // the worker blocks on the gate: one more switch, then none
  const auto stopped = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([&] { return client->changes.load() >= 1; }, std::chrono::seconds(10)));
  const auto still_after = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - stopped);
  EXPECT_TRUE(monitor.ThreadProgressOf(client.get()).still);
  // (Its last move may have been seen up to a read interval, a quarter of the time, before it blocked.)
  EXPECT_GE(still_after.count(), 150) << "still before the time given had passed";
  blocked.unlock();
  ASSERT_TRUE(WaitFor([&] { return client->changes.load() >= 2; }, std::chrono::seconds(10)));
  EXPECT_FALSE(monitor.ThreadProgressOf(client.get()).still);

  quit.store(true);
  worker.join();
  ASSERT_TRUE(WaitFor([&] { return client->changes.load() >= 3; }, std::chrono::seconds(10)));
  EXPECT_FALSE(monitor.ThreadProgressOf(client.get()).readable);
  // A thread that is not this process's (pid 1's task directory is not under ours) cannot be watched.
  client->RunInTick([&] { watched = monitor.WatchThread(client.get(), getpid(), 1, 250 * kMs); }, fd);
  ASSERT_TRUE(WaitFor([&] { return watched.load() == 0; }));
  monitor.Remove(client.get());
  close(fd);
  unlink(path.c_str());
}

// KeepMoving: while a client asks, the monitor thread sleeps and wakes at that pace even with nothing due
// (what a peer watching it through the kernel relies on); without, it sleeps until its next tick.
TEST(MonitorTest, KeepMovingMakesTheThreadSleepAndWakeAtThePaceAsked) {
  Monitor& monitor = Monitor::Process();
  if (!monitor.names_watched()) GTEST_SKIP() << "no inotify here";
  const std::string name = UniqueFileName(7000);
  const std::string path = std::string(kSegmentDirectory) + "/" + name;
  const int fd = open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  auto client = std::make_unique<ThreadWatchingClient>();
  monitor.Add(client.get(), name);
  ASSERT_TRUE(WaitFor([&] { return client->monitor_tid.load() != 0; }));
  const pid_t tid = client->monitor_tid.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::uint64_t before = VoluntarySwitchesOf(tid);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::uint64_t idle = VoluntarySwitchesOf(tid) - before;
  std::atomic<bool> asked{false};
  client->RunInTick([&] { monitor.KeepMoving(client.get(), 10 * kMs); asked = true; }, fd);
  ASSERT_TRUE(WaitFor([&] { return asked.load(); }));
  before = VoluntarySwitchesOf(tid);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::uint64_t moving = VoluntarySwitchesOf(tid) - before;
  // (Without the request the thread wakes only for inotify events of /dev/shm, which other processes cause:
  // dozens a second while other tests run beside this one, none on a quiet machine. So only the request's
  // pace is asserted.)
  std::printf("[wakes] monitor thread in 0.5 s: %llu with nothing due, %llu asked to move every 10 ms\n",
              static_cast<unsigned long long>(idle), static_cast<unsigned long long>(moving));
  EXPECT_GE(moving, 20u) << "asked to move every 10 ms, the thread woke " << moving << " times in 0.5 s";
  monitor.Remove(client.get());
  close(fd);
  unlink(path.c_str());
}

}  // namespace
}  // namespace eshm::internal
