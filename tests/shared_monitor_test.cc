// The process's one monitor thread (eshm/internal/monitor.h): every channel of a process shares it, it
// exists only while a channel is open, and what it does instead of polling (pidfds, inotify, beats paced by
// both sides' stale thresholds) never costs the protocol its meaning:
//  * a peer with a much smaller stale threshold than ours never sees us unresponsive;
//  * a peer that publishes a pid that is not its own (a hostile peer, or one in another pid namespace) is
//    still found dead when it dies, by the role lock;
//  * a master that closes cleanly, or a slave that follows a new master, is seen as promptly as before.
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/internal/monitor.h"
#include "eshm/layout.h"
#include "eshm/segment.h"
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::Child;
using eshm_test::MsSince;
using eshm_test::NowNs;
using eshm_test::PeerStateBecomes;
using eshm_test::Pipe;
using eshm_test::WaitUntil;

constexpr absl::Duration kWatchdog = absl::Seconds(20);

// Threads of this process named as the monitor names its thread (sanitizer runtimes add threads of their
// own, so the total says little).
int MonitorThreads() {
  int count = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + entry->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name == internal::kMonitorThreadName) ++count;
  }
  closedir(dir);
  return count;
}

class SharedMonitorTest : public eshm_test::ChannelTestBase {
 protected:
  static ChannelOptions Small(ChannelRole role) {
    ChannelOptions o = Options(role);
    o.m2s_capacity = o.s2m_capacity = 4096;
    return o;
  }

  // A master in a child process opens `name` with `master` options, waits for the slave, and closes its
  // channel (not exiting: no pidfd fires) when told. Returns how long the slave (`slave` options) took to
  // see it dead after the close was asked for, or -1 (the test has failed then).
  double MsUntilASlaveSeesItsMasterClose(const std::string& name, const ChannelOptions& master, ChannelOptions slave) {
    Pipe opened;
    Pipe close_now;
    Child child = StartChild([&] {
      absl::StatusOr<std::unique_ptr<Channel>> ch = Channel::Open(name, master);
      if (!ch.ok()) return 2;
      opened.Send(1);
      if (!close_now.Receive(kWatchdog).has_value()) return 3;
      (*ch)->Close();
      for (;;) pause();  // still running: only the channel closed
    });
    EXPECT_TRUE(opened.Receive(kWatchdog, &child).has_value()) << child.Describe();
    slave.max_reconnect_attempts = 0;
    absl::StatusOr<std::unique_ptr<Channel>> channel = Channel::Open(name, slave);
    EXPECT_TRUE(channel.ok()) << channel.status();
    if (!channel.ok() || !PeerStateBecomes(**channel, PeerState::kAlive, absl::Seconds(5))) return -1;
    eshm_test::SleepMs(150);  // past the arrival window, in which the slave looks every millisecond anyway
    const std::int64_t closed = NowNs();
    close_now.Send(1);
    EXPECT_TRUE(PeerStateBecomes(**channel, PeerState::kDead, absl::Seconds(5)));
    return MsSince(closed);
  }
};

TEST_F(SharedMonitorTest, EveryChannelOfAProcessSharesOneThreadThatEndsWithTheLast) {
  ASSERT_EQ(MonitorThreads(), 0);
  std::vector<std::unique_ptr<Channel>> channels;
  for (int i = 0; i < 64; ++i) {
    absl::StatusOr<std::unique_ptr<Channel>> ch = Channel::Open(NewName("many"), Small(ChannelRole::kMaster));
    ASSERT_TRUE(ch.ok()) << ch.status();
    channels.push_back(*std::move(ch));
  }
  EXPECT_EQ(MonitorThreads(), 1) << "64 open channels should share one monitor thread";
  // A slave in the same process shares it too.
  ChannelOptions slave = Small(ChannelRole::kSlave);
  absl::StatusOr<std::unique_ptr<Channel>> peer = Channel::Open(channels[0]->name(), slave);
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_TRUE(PeerStateBecomes(**peer, PeerState::kAlive, absl::Seconds(5)));
  EXPECT_TRUE(PeerStateBecomes(*channels[0], PeerState::kAlive, absl::Seconds(5)));
  EXPECT_EQ(MonitorThreads(), 1);
  peer->reset();
  channels.clear();
  EXPECT_EQ(MonitorThreads(), 0) << "the monitor thread outlived the last channel";
}

TEST_F(SharedMonitorTest, UseThreadsFalseStartsNoThread) {
  ChannelOptions o = Small(ChannelRole::kMaster);
  o.use_threads = false;
  absl::StatusOr<std::unique_ptr<Channel>> ch = Channel::Open(NewName("nothreads"), o);
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_EQ(MonitorThreads(), 0);
}

#if !defined(__SANITIZE_THREAD__)  // ThreadSanitizer kills a child of a multi-threaded parent that starts a thread
// A child forked while the parent's monitor runs has no monitor thread and must not share the parent's epoll
// set: its channels get a monitor of their own, and the parent's keeps working.
TEST_F(SharedMonitorTest, AChildForkedWhileChannelsAreOpenGetsAMonitorOfItsOwn) {
  const std::string parents = NewName("parent");
  const std::string childs = NewName("child");
  absl::StatusOr<std::unique_ptr<Channel>> master = Channel::Open(parents, Small(ChannelRole::kMaster));
  ASSERT_TRUE(master.ok()) << master.status();
  absl::StatusOr<std::unique_ptr<Channel>> slave = Channel::Open(parents, Small(ChannelRole::kSlave));
  ASSERT_TRUE(slave.ok()) << slave.status();
  ASSERT_TRUE(PeerStateBecomes(**master, PeerState::kAlive, absl::Seconds(5)));
  Child child = Child::Start([&] {
    if (MonitorThreads() != 0) return 2;
    absl::StatusOr<std::unique_ptr<Channel>> m = Channel::Open(childs, Small(ChannelRole::kMaster));
    absl::StatusOr<std::unique_ptr<Channel>> s = Channel::Open(childs, Small(ChannelRole::kSlave));
    if (!m.ok() || !s.ok()) return 3;
    if (MonitorThreads() != 1) return 4;
    if (!WaitUntil([&] { return (*m)->peer_state() == PeerState::kAlive; }, absl::Seconds(5))) return 5;
    if (!WaitUntil([&] { return (*s)->peer_state() == PeerState::kAlive; }, absl::Seconds(5))) return 6;
    m->reset();
    if (!WaitUntil([&] { return (*s)->peer_state() == PeerState::kDead; }, absl::Seconds(5))) return 7;
    s->reset();
    return MonitorThreads() == 0 ? 0 : 8;
  });
  EXPECT_TRUE(eshm_test::WaitForChild(child, kWatchdog)) << child.Describe();
  // The parent's monitor still ticks its channels: closing the slave is seen.
  slave->reset();
  EXPECT_TRUE(PeerStateBecomes(**master, PeerState::kDead, absl::Seconds(5)));
}
#endif

// Our stale threshold is 2 s (so on our own we would beat every 500 ms); the peer calls a side unresponsive
// after 40 ms. It must see us alive throughout: we beat for the stricter of the two.
TEST_F(SharedMonitorTest, APeerWithASmallerStaleThresholdNeverSeesUsUnresponsive) {
  const std::string name = NewName("thresholds");
  Pipe verdict;
  Child child = StartChild([&] {
    ChannelOptions o = Small(ChannelRole::kSlave);
    o.stale_threshold_ms = 40;
    o.max_reconnect_attempts = 0;
    absl::StatusOr<std::unique_ptr<Channel>> ch = Channel::Open(name, o);
    if (!ch.ok()) return 2;
    if (!WaitUntil([&] { return (*ch)->peer_state() == PeerState::kAlive; }, absl::Seconds(10))) return 3;
    const std::int64_t start = NowNs();
    std::uint64_t not_alive = 0;
    while (MsSince(start) < 1500) {
      if ((*ch)->peer_state() != PeerState::kAlive) ++not_alive;
      eshm_test::SleepMs(1);
    }
    verdict.Send(not_alive);
    return 0;
  });
  ChannelOptions o = Small(ChannelRole::kMaster);
  o.stale_threshold_ms = 2000;
  absl::StatusOr<std::unique_ptr<Channel>> master = Channel::Open(name, o);
  ASSERT_TRUE(master.ok()) << master.status();
  const std::optional<std::uint64_t> not_alive = verdict.Receive(kWatchdog, &child);
  ASSERT_TRUE(not_alive.has_value()) << child.Describe();
  EXPECT_EQ(*not_alive, 0u) << "the slave (stale threshold 40 ms) saw the master not alive in " << *not_alive
                            << " of its samples over 1.5 s";
  EXPECT_TRUE(eshm_test::WaitForChild(child, kWatchdog));
}

// A peer can write anything into its role control. One that names another process (here: pid 1, and then
// this process) must still be found dead when it dies: the role lock is the evidence, the pid only a hint.
TEST_F(SharedMonitorTest, APeerThatPublishesAFalsePidIsStillFoundDead) {
  // A live process that has nothing to do with the channel: a watch on it never fires.
  Child decoy = StartChild([] {
    for (;;) pause();
    return 0;
  });
  const pid_t survivor = getpid();
  for (const pid_t published : {pid_t{1}, survivor, decoy.pid()}) {
    SCOPED_TRACE(published == 1 ? "publishes pid 1" : published == survivor ? "publishes the survivor's pid"
                                                                          : "publishes an unrelated live process's pid");
    const std::string name = NewName("falsepid");
    Pipe attached;
    Child child = StartChild([&] {
      ChannelOptions o = Small(ChannelRole::kSlave);
      o.max_reconnect_attempts = 0;
      absl::StatusOr<std::unique_ptr<Channel>> ch = Channel::Open(name, o);
      if (!ch.ok()) return 2;
      if (!WaitUntil([&] { return (*ch)->peer_state() == PeerState::kAlive; }, absl::Seconds(10))) return 3;
      // Lie about who we are, through the segment as any process that maps it could.
      absl::StatusOr<Segment> view = Segment::Open(name, Deadline::AfterMs(5000));
      if (!view.ok()) return 4;
      view->header()->roles[static_cast<int>(Role::kSlave)].pid.store(
          static_cast<std::uint32_t>(published), std::memory_order_release);
      attached.Send(1);
      for (;;) pause();
    });
    absl::StatusOr<std::unique_ptr<Channel>> master = Channel::Open(name, Small(ChannelRole::kMaster));
    ASSERT_TRUE(master.ok()) << master.status();
    ASSERT_TRUE(attached.Receive(kWatchdog, &child).has_value()) << child.Describe();
    ASSERT_TRUE(PeerStateBecomes(**master, PeerState::kAlive, absl::Seconds(5)));
    // Let the monitor act on the false pid before the peer dies.
    eshm_test::SleepMs(100);
    ASSERT_EQ((*master)->peer_state(), PeerState::kAlive);
    const std::int64_t killed = NowNs();
    child.Kill();
    EXPECT_TRUE(PeerStateBecomes(**master, PeerState::kDead, absl::Seconds(10)));
    // The lock backstop runs every second.
    const double ms = MsSince(killed);
    std::printf("[latency] kill -9 of a peer that published pid %d -> kDead: %.3f ms\n", published, ms);
    EXPECT_LT(ms, 3000) << "a lying peer's death took too long to see";
    master->reset();
  }
}

// The words a segment's two holders publish about watching each other's monitor thread (layout.h,
// RoleControl::kernel_watch), read through a view of the segment as any process could.
struct KernelWatchView {
  absl::StatusOr<Segment> segment;
  explicit KernelWatchView(const std::string& name) : segment(Segment::Open(name, Deadline::AfterMs(5000))) {}
  const RoleControl& role(Role r) const { return segment->header()->roles[static_cast<int>(r)]; }
  // Each holder says it watches the other's current attachment.
  bool BothWatch() const {
    const std::uint64_t master_epoch = role(Role::kMaster).attach_epoch.load();
    const std::uint64_t slave_epoch = role(Role::kSlave).attach_epoch.load();
    return role(Role::kMaster).kernel_watch.load() == EncodeKernelWatch(master_epoch, slave_epoch) &&
           role(Role::kSlave).kernel_watch.load() == EncodeKernelWatch(slave_epoch, master_epoch);
  }
  std::uint64_t Beats() const { return role(Role::kMaster).heartbeat.load() + role(Role::kSlave).heartbeat.load(); }
};

// Two processes with many channels between them: each watches the other's monitor thread through the kernel
// (one /proc read per interval for all the channels) instead of both beating in every segment every
// quarter threshold, which is what idle channels cost. The protocol keeps its meaning: a stopped peer is
// unresponsive on every channel a threshold after it stopped, alive again when it resumes, dead when killed.
TEST_F(SharedMonitorTest, ProcessesWatchEachOthersMonitorThreadInsteadOfBeatingInEveryChannel) {
  constexpr int kChannels = 16;
  constexpr int kThresholdMs = 200;
  std::vector<std::string> names;
  for (int i = 0; i < kChannels; ++i) names.push_back(NewName("kernelbeat"));
  Pipe opened;
  Child child = StartChild([&] {
    std::vector<std::unique_ptr<Channel>> slaves;
    for (const std::string& name : names) {
      ChannelOptions o = Small(ChannelRole::kSlave);
      o.stale_threshold_ms = kThresholdMs;
      o.max_reconnect_attempts = 0;
      absl::StatusOr<std::unique_ptr<Channel>> ch = Channel::Open(name, o);
      if (!ch.ok()) return 2;
      slaves.push_back(*std::move(ch));
    }
    opened.Send(1);
    for (;;) pause();
  });
  std::vector<std::unique_ptr<Channel>> masters;
  for (const std::string& name : names) {
    ChannelOptions o = Small(ChannelRole::kMaster);
    o.stale_threshold_ms = kThresholdMs;
    absl::StatusOr<std::unique_ptr<Channel>> ch = Channel::Open(name, o);
    ASSERT_TRUE(ch.ok()) << ch.status();
    masters.push_back(*std::move(ch));
  }
  ASSERT_TRUE(opened.Receive(kWatchdog, &child).has_value()) << child.Describe();
  std::vector<std::unique_ptr<KernelWatchView>> views;
  for (const std::string& name : names) {
    views.push_back(std::make_unique<KernelWatchView>(name));
    ASSERT_TRUE(views.back()->segment.ok()) << views.back()->segment.status();
  }
  for (int i = 0; i < kChannels; ++i) {
    ASSERT_TRUE(PeerStateBecomes(*masters[i], PeerState::kAlive, absl::Seconds(10)));
    EXPECT_TRUE(WaitUntil([&] { return views[i]->BothWatch(); }, absl::Seconds(5)))
        << names[i] << ": the two processes do not say they watch each other's monitor thread";
  }
  // Beats, once the arrivals have settled (a side looks every millisecond for a while after someone opens its
  // file): once a second per side and channel (at most 2 each in a second, 4 with an event) instead of every
  // 50 ms (40 per channel and second for both sides).
  eshm_test::SleepMs(300);
  std::uint64_t before = 0;
  for (const auto& view : views) before += view->Beats();
  eshm_test::SleepMs(1000);
  std::uint64_t after = 0;
  for (const auto& view : views) after += view->Beats();
  std::printf("[idle] %d channel pairs across two processes: %llu beats in 1 s (both sides)\n", kChannels,
              static_cast<unsigned long long>(after - before));
  EXPECT_LE(after - before, std::uint64_t{kChannels} * 4) << "the channels still beat at the full pace";
  for (const auto& master : masters) EXPECT_EQ(master->peer_state(), PeerState::kAlive);

  // Stopped: unresponsive everywhere, not before a threshold has passed (less a read interval: the last move
  // may have been seen that much before the stop) and well within a second after it.
  ASSERT_EQ(kill(child.pid(), SIGSTOP), 0);
  const std::int64_t stopped = NowNs();
  double first_ms = 1e9, last_ms = 0;
  for (const auto& master : masters) {
    EXPECT_TRUE(PeerStateBecomes(*master, PeerState::kUnresponsive, absl::Seconds(5)));
    const double ms = MsSince(stopped);
    first_ms = std::min(first_ms, ms);
    last_ms = std::max(last_ms, ms);
  }
  std::printf("[latency] SIGSTOP of the peer process -> kUnresponsive on all %d channels: %.1f - %.1f ms "
              "(threshold %d ms)\n", kChannels, first_ms, last_ms, kThresholdMs);
  // (A beat every quarter threshold was judged the same way: the last one may come a quarter before the stop.)
  EXPECT_GE(first_ms, kThresholdMs / 2) << "called unresponsive long before its threshold had passed";
  EXPECT_LT(last_ms, 2000);
  ASSERT_EQ(kill(child.pid(), SIGCONT), 0);
  const std::int64_t resumed = NowNs();
  for (const auto& master : masters) EXPECT_TRUE(PeerStateBecomes(*master, PeerState::kAlive, absl::Seconds(5)));
  std::printf("[latency] SIGCONT -> kAlive on all %d channels: %.1f ms\n", kChannels, MsSince(resumed));

  const std::int64_t killed = NowNs();
  child.Kill();
  for (const auto& master : masters) EXPECT_TRUE(PeerStateBecomes(*master, PeerState::kDead, absl::Seconds(5)));
  std::printf("[latency] kill -9 of the peer process -> kDead on all %d channels: %.1f ms\n", kChannels,
              MsSince(killed));
}

// A peer that stops watching our monitor thread (here: the thread it was told is not one of ours, so its
// watch fails) takes back its word and, until we beat at full pace again, gives us a whole threshold: we are
// never seen unresponsive on the way, and it still finds us unresponsive by our beats when we stop.
TEST_F(SharedMonitorTest, APeerThatStopsWatchingOurThreadGetsOurBeatsInTime) {
  constexpr int kThresholdMs = 200;
  const std::string name = NewName("unwatch");
  Pipe watched;
  Pipe lie_now;
  Child child = StartChild([&] {
    ChannelOptions o = Small(ChannelRole::kSlave);
    o.stale_threshold_ms = kThresholdMs;
    o.max_reconnect_attempts = 0;
    absl::StatusOr<std::unique_ptr<Channel>> ch = Channel::Open(name, o);
    if (!ch.ok()) return 2;
    KernelWatchView view(name);
    if (!view.segment.ok()) return 3;
    if (!WaitUntil([&] { return view.BothWatch(); }, absl::Seconds(10))) return 4;
    watched.Send(1);
    if (!lie_now.Receive(kWatchdog).has_value()) return 5;
    // Name a thread that is not ours (pid 1's, which no task directory of ours holds).
    view.segment->header()->roles[static_cast<int>(Role::kSlave)].monitor_tid.store(1);
    for (;;) pause();
  });
  ChannelOptions o = Small(ChannelRole::kMaster);
  o.stale_threshold_ms = kThresholdMs;
  absl::StatusOr<std::unique_ptr<Channel>> master = Channel::Open(name, o);
  ASSERT_TRUE(master.ok()) << master.status();
  ASSERT_TRUE(watched.Receive(kWatchdog, &child).has_value()) << child.Describe();
  KernelWatchView view(name);
  ASSERT_TRUE(view.segment.ok()) << view.segment.status();
  ASSERT_EQ((*master)->peer_state(), PeerState::kAlive);
  lie_now.Send(1);
  const std::int64_t start = NowNs();
  std::uint64_t not_alive = 0;
  while (MsSince(start) < 1500) {
    if ((*master)->peer_state() != PeerState::kAlive) ++not_alive;
    eshm_test::SleepMs(1);
  }
  EXPECT_EQ(not_alive, 0u) << "seen not alive in " << not_alive << " samples after it stopped watching";
  const RoleControl& master_role = view.role(Role::kMaster);
  EXPECT_EQ(master_role.kernel_watch.load(), 0u) << "the master still says it watches the slave's thread";
  const std::uint64_t slave_beats = view.role(Role::kSlave).heartbeat.load();
  eshm_test::SleepMs(500);
  EXPECT_GE(view.role(Role::kSlave).heartbeat.load() - slave_beats, 5u) << "the slave did not return to full beats";
  ASSERT_EQ(kill(child.pid(), SIGSTOP), 0);
  const std::int64_t stopped = NowNs();
  EXPECT_TRUE(PeerStateBecomes(**master, PeerState::kUnresponsive, absl::Seconds(5)));
  std::printf("[latency] SIGSTOP of a peer we watch by its beats -> kUnresponsive: %.1f ms\n", MsSince(stopped));
  ASSERT_EQ(kill(child.pid(), SIGCONT), 0);
  child.Kill();
}

// A side given heartbeat_interval_ms keeps beating at that pace even where its peer watches its monitor
// thread (someone asked for its counter to move so); a side left at the default beats once a second there.
TEST_F(SharedMonitorTest, AnExplicitHeartbeatIntervalIsKeptWhereThePeerWatchesTheThread) {
  const std::string name = NewName("beatpace");
  Pipe opened;
  Child child = StartChild([&] {
    ChannelOptions o = Small(ChannelRole::kSlave);
    o.max_reconnect_attempts = 0;
    absl::StatusOr<std::unique_ptr<Channel>> ch = Channel::Open(name, o);
    if (!ch.ok()) return 2;
    opened.Send(1);
    for (;;) pause();
  });
  ChannelOptions o = Small(ChannelRole::kMaster);
  o.heartbeat_interval_ms = 20;
  absl::StatusOr<std::unique_ptr<Channel>> master = Channel::Open(name, o);
  ASSERT_TRUE(master.ok()) << master.status();
  ASSERT_TRUE(opened.Receive(kWatchdog, &child).has_value()) << child.Describe();
  KernelWatchView view(name);
  ASSERT_TRUE(view.segment.ok()) << view.segment.status();
  ASSERT_TRUE(WaitUntil([&] { return view.BothWatch(); }, absl::Seconds(10)));
  eshm_test::SleepMs(300);  // past the arrival's millisecond looks
  const std::uint64_t master_before = view.role(Role::kMaster).heartbeat.load();
  const std::uint64_t slave_before = view.role(Role::kSlave).heartbeat.load();
  eshm_test::SleepMs(1000);
  const std::uint64_t master_beats = view.role(Role::kMaster).heartbeat.load() - master_before;
  const std::uint64_t slave_beats = view.role(Role::kSlave).heartbeat.load() - slave_before;
  std::printf("[idle] beats in 1 s: master (heartbeat_interval_ms 20) %llu, slave (default) %llu\n",
              static_cast<unsigned long long>(master_beats), static_cast<unsigned long long>(slave_beats));
  EXPECT_GE(master_beats, 20u);
  EXPECT_LE(slave_beats, 4u);
  child.Kill();
}

// A master that closes cleanly does not exit: no pidfd fires. The slave must still see it gone promptly (it
// marks its role vacant; the file's close and the name's removal are events).
TEST_F(SharedMonitorTest, AMasterThatClosesIsSeenGoneWithoutWaitingForTheBackstop) {
  const double ms =
      MsUntilASlaveSeesItsMasterClose(NewName("close"), Small(ChannelRole::kMaster), Small(ChannelRole::kSlave));
  std::printf("[latency] master Close() -> slave sees kDead: %.3f ms\n", ms);
  EXPECT_GE(ms, 0);
  EXPECT_LT(ms, 500) << "seen only by the one-second backstop";
}

// The master created the segment as an unnamed file and then gave it its name (O_TMPFILE, linkat). inotify
// reports what is done through that first descriptor under the unnamed file's own name ("#<inode>"), which
// no monitor watches: its announcements must go through the name. With auto_cleanup off the name stays, so
// nothing else says that the master left; with slow beats only the one-second backstop would.
TEST_F(SharedMonitorTest, TheCreatorsAnnouncementsReachThePeerThroughTheName) {
  const std::string name = NewName("creator");
  ChannelOptions master = Small(ChannelRole::kMaster);
  master.auto_cleanup = false;
  master.stale_threshold_ms = 5000;
  ChannelOptions slave = Small(ChannelRole::kSlave);
  slave.stale_threshold_ms = 5000;
  const double ms = MsUntilASlaveSeesItsMasterClose(name, master, slave);
  std::printf("[latency] creator master Close() (name kept) -> slave sees kDead: %.3f ms\n", ms);
  EXPECT_GE(ms, 0);
  EXPECT_LT(ms, 300) << "the creator's announcement did not reach the slave's monitor";
  (void)Segment::Unlink(name);
}

// The same in one process, with a long stale threshold (slow beats): no pidfd to watch (the peer is us), the
// name is gone before the lock is released, and nothing announces that release. Repeated, because the
// slave's monitor looks between the two on some runs only (from Python, 2 runs in 5 took the backstop's
// 1.1-1.2 s before the fix; here the race is rarer).
TEST_F(SharedMonitorTest, AMasterClosedInThisProcessIsSeenGoneWithoutWaitingForTheBackstop) {
  for (int run = 0; run < 5; ++run) {
    const std::string name = NewName("close_here");
    ChannelOptions mo = Small(ChannelRole::kMaster);
    mo.stale_threshold_ms = 5000;
    absl::StatusOr<std::unique_ptr<Channel>> master = Channel::Open(name, mo);
    ASSERT_TRUE(master.ok()) << master.status();
    ChannelOptions so = Small(ChannelRole::kSlave);
    so.stale_threshold_ms = 5000;
    so.max_reconnect_attempts = 0;
    absl::StatusOr<std::unique_ptr<Channel>> slave = Channel::Open(name, so);
    ASSERT_TRUE(slave.ok()) << slave.status();
    ASSERT_TRUE(PeerStateBecomes(**slave, PeerState::kAlive, absl::Seconds(5)));
    const std::int64_t closed = NowNs();
    (*master)->Close();
    EXPECT_TRUE(PeerStateBecomes(**slave, PeerState::kDead, absl::Seconds(5)));
    const double ms = MsSince(closed);
    std::printf("[latency] in-process master Close() -> slave sees kDead: %.3f ms\n", ms);
    EXPECT_LT(ms, 500) << "seen only by the one-second backstop";
  }
}

}  // namespace
}  // namespace eshm
