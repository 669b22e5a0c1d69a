// WaitSet: readiness of many channels, one sleep for all, fairness, peer changes, and every misuse a user
// can make (a closed member, one added twice, two waiting threads).
#include "eshm/wait_set.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/segment.h"
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::Child;
using eshm_test::NowNs;
using eshm_test::UniqueSegmentName;

using ChannelPtr = std::unique_ptr<Channel>;

std::span<const std::byte> Bytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

ChannelOptions Small(ChannelRole role) {
  ChannelOptions o;
  o.role = role;
  o.m2s_capacity = o.s2m_capacity = 4096;
  // Hundreds of channels in one loaded (or sanitized) process: a short threshold would make peers flap
  // between alive and unresponsive, and every flap ends a wait with kPeerChanged.
  o.stale_threshold_ms = 5000;
  return o;
}

// A master and its slave in this process.
struct Pair {
  std::string name;
  ChannelPtr master;
  ChannelPtr slave;
};

class WaitSetTest : public ::testing::Test {
 protected:
  void TearDown() override {
    pairs_.clear();
    for (const std::string& name : names_) unlink(Segment::PathFor(name).c_str());
  }

  Pair& NewPair() {
    Pair p;
    p.name = UniqueSegmentName("waitset");
    names_.push_back(p.name);
    absl::StatusOr<ChannelPtr> m = Channel::Open(p.name, Small(ChannelRole::kMaster));
    EXPECT_TRUE(m.ok()) << m.status();
    absl::StatusOr<ChannelPtr> s = Channel::Open(p.name, Small(ChannelRole::kSlave));
    EXPECT_TRUE(s.ok()) << s.status();
    p.master = *std::move(m);
    p.slave = *std::move(s);
    pairs_.push_back(std::move(p));
    return pairs_.back();
  }

  static std::uint64_t WaitSyscalls(const Channel& ch) { return ch.stats().wait_syscalls; }

  std::vector<std::string> names_;
  std::vector<Pair> pairs_;
};

bool Has(const std::vector<WaitSet::Ready>& ready, const Channel* ch, unsigned event) {
  for (const WaitSet::Ready& r : ready) {
    if (r.channel == ch && (r.events & event) != 0) return true;
  }
  return false;
}

TEST_F(WaitSetTest, SleepsOnAllMembersAndWakesForTheOneWrittenTo) {
  pairs_.reserve(3);
  Pair& a = NewPair();
  Pair& b = NewPair();
  Pair& c = NewPair();
  WaitSet set;
  for (Pair* p : {&a, &b, &c}) ASSERT_TRUE(set.Add(p->slave.get(), WaitSet::kReadable).ok());
  std::vector<WaitSet::Ready> ready;
  // Let the peer-state changes of attaching be reported and done with.
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &ready).ok());
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &ready).ok());
  const std::uint64_t sleeps_before = WaitSyscalls(*b.slave);
  // The set asleep raises every member ring's sleep flag, as a single sleeping reader does: that is what
  // makes the ring's writer wake it.
  std::vector<absl::StatusOr<Segment>> views;
  for (Pair* p : {&a, &b, &c}) {
    views.push_back(Segment::Open(p->name, Deadline::AfterMs(5000)));
    ASSERT_TRUE(views.back().ok()) << views.back().status();
  }
  std::thread waiter([&] { EXPECT_TRUE(set.Wait(Deadline::AfterMs(10'000), &ready).ok()); });
  EXPECT_TRUE(eshm_test::WaitUntil(
      [&] {
        for (const auto& view : views) {
          if (view->ring_control(Direction::kMasterToSlave)->wait.data_sleeping.load() == 0) return false;
        }
        return true;
      },
      absl::Seconds(5)))
      << "an idle set should arm every member and sleep, not poll";
  const std::int64_t written = NowNs();
  ASSERT_EQ(b.master->TryWrite(Bytes("to b")), IoResult::kOk);
  waiter.join();
  const double ms = static_cast<double>(NowNs() - written) / 1e6;
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].channel, b.slave.get());
  EXPECT_EQ(ready[0].events, WaitSet::kReadable);
  EXPECT_LT(ms, 2000);
  EXPECT_GT(WaitSyscalls(*b.slave), sleeps_before) << "an idle set should sleep on a futex, not poll";
  std::vector<std::byte> buffer(64);
  std::size_t size = 0;
  EXPECT_EQ(b.slave->TryRead(buffer, &size), IoResult::kOk);
}

TEST_F(WaitSetTest, MakesNoSystemCallWhileMessagesAreQueued) {
  Pair& a = NewPair();
  WaitSet set;
  ASSERT_TRUE(set.Add(a.slave.get(), WaitSet::kReadable).ok());
  std::vector<WaitSet::Ready> ready;
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a.master->TryWrite(Bytes("x")), IoResult::kOk);
  const std::uint64_t waits = WaitSyscalls(*a.slave);
  std::vector<std::byte> buffer(16);
  std::size_t size = 0;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(set.Wait(Deadline::AfterMs(1000), &ready).ok());
    ASSERT_TRUE(Has(ready, a.slave.get(), WaitSet::kReadable)) << i;
    ASSERT_EQ(a.slave->TryRead(buffer, &size), IoResult::kOk);
  }
  EXPECT_EQ(WaitSyscalls(*a.slave), waits);
}

TEST_F(WaitSetTest, ABusyMemberDoesNotHideTheOthers) {
  pairs_.reserve(2);
  Pair& busy = NewPair();
  Pair& quiet = NewPair();
  WaitSet set;
  ASSERT_TRUE(set.Add(busy.slave.get(), WaitSet::kReadable).ok());
  ASSERT_TRUE(set.Add(quiet.slave.get(), WaitSet::kReadable).ok());
  for (int i = 0; i < 50; ++i) ASSERT_EQ(busy.master->TryWrite(Bytes("busy")), IoResult::kOk);
  ASSERT_EQ(quiet.master->TryWrite(Bytes("quiet")), IoResult::kOk);
  std::vector<WaitSet::Ready> ready;
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(1000), &ready).ok());
  EXPECT_TRUE(Has(ready, busy.slave.get(), WaitSet::kReadable));
  EXPECT_TRUE(Has(ready, quiet.slave.get(), WaitSet::kReadable)) << "every ready member is reported at once";
  // The report starts at a different member each time.
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(1000), &ready).ok());
  ASSERT_EQ(ready.size(), 2u);
  const Channel* first = ready[0].channel;
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(1000), &ready).ok());
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_NE(ready[0].channel, first);
}

TEST_F(WaitSetTest, WritableWhenTheReaderMakesRoom) {
  Pair& a = NewPair();
  const std::string big(1000, 'b');
  while (a.master->TryWrite(Bytes(big)) == IoResult::kOk) {
  }
  WaitSet set;
  ASSERT_TRUE(set.Add(a.master.get(), WaitSet::kWritable, big.size()).ok());
  std::vector<WaitSet::Ready> ready;
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &ready).ok());
  for (const WaitSet::Ready& r : ready) EXPECT_EQ(r.events & WaitSet::kWritable, 0u) << "the ring is full";
  std::thread reader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::vector<std::byte> buffer(2000);
    std::size_t size = 0;
    while (a.slave->TryRead(buffer, &size) == IoResult::kOk) {
    }
  });
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(5000), &ready).ok());
  reader.join();
  ASSERT_TRUE(Has(ready, a.master.get(), WaitSet::kWritable));
  EXPECT_EQ(a.master->TryWrite(Bytes(big)), IoResult::kOk);
}

TEST_F(WaitSetTest, ReturnsEmptyAtTheDeadlineAndOnWake) {
  Pair& a = NewPair();
  WaitSet set;
  ASSERT_TRUE(set.Add(a.slave.get(), WaitSet::kReadable).ok());
  std::vector<WaitSet::Ready> ready;
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &ready).ok());  // the attach report
  std::int64_t start = NowNs();
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(100), &ready).ok());
  EXPECT_TRUE(ready.empty());
  EXPECT_GE(NowNs() - start, 95'000'000);
  // A Timeout counts from the wait, however long ago it was made, and ends it.
  const Deadline per_call = Deadline::TimeoutMs(100);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  start = NowNs();
  ASSERT_TRUE(set.Wait(per_call, &ready).ok());
  EXPECT_TRUE(ready.empty());
  EXPECT_GE(NowNs() - start, 100'000'000);
  EXPECT_LT(NowNs() - start, 5'000'000'000);
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    set.Wake();
  });
  start = NowNs();
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(10'000), &ready).ok());
  waker.join();
  EXPECT_TRUE(ready.empty());
  EXPECT_LT(NowNs() - start, 5'000'000'000);
  // A Wake before the Wait ends the next one at once.
  set.Wake();
  start = NowNs();
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(10'000), &ready).ok());
  EXPECT_LT(NowNs() - start, 1'000'000'000);
}

TEST_F(WaitSetTest, TheCheckEndsAWaitAsCtrlCEndsARead) {
  Pair& a = NewPair();
  WaitSet set;
  ASSERT_TRUE(set.Add(a.slave.get(), WaitSet::kReadable).ok());
  std::vector<WaitSet::Ready> ready;
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &ready).ok());
  std::atomic<bool> interrupted{false};
  std::thread ctrl_c([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    interrupted = true;
  });
  const absl::Status status = set.Wait(Deadline::AfterMs(10'000), &ready, [&]() -> absl::Status {
    return interrupted ? absl::CancelledError("KeyboardInterrupt") : absl::OkStatus();
  });
  ctrl_c.join();
  EXPECT_TRUE(absl::IsCancelled(status)) << status;
}

TEST_F(WaitSetTest, BadUseGetsAClearErrorAndChangesNothing) {
  pairs_.reserve(2);
  Pair& a = NewPair();
  Pair& b = NewPair();
  WaitSet set;
  ASSERT_TRUE(set.Add(a.slave.get(), WaitSet::kReadable).ok());
  absl::Status twice = set.Add(a.slave.get(), WaitSet::kWritable);
  EXPECT_TRUE(absl::IsAlreadyExists(twice)) << twice;
  EXPECT_NE(twice.message().find(a.name), std::string::npos) << twice;
  EXPECT_TRUE(absl::IsInvalidArgument(set.Add(b.slave.get(), 0)));
  EXPECT_TRUE(absl::IsInvalidArgument(set.Add(b.slave.get(), WaitSet::kWritable, 1 << 20)))
      << "a message size the channel never takes can never be writable";
  EXPECT_TRUE(absl::IsNotFound(set.Remove(b.slave.get())));
  EXPECT_EQ(set.size(), 1u);
  b.slave->Close();
  absl::Status closed = set.Add(b.slave.get(), WaitSet::kReadable);
  EXPECT_TRUE(absl::IsFailedPrecondition(closed)) << closed;
  EXPECT_EQ(set.size(), 1u);
}

TEST_F(WaitSetTest, AMemberClosedWhileAwaitedEndsTheWaitAndIsReportedClosed) {
  pairs_.reserve(2);
  Pair& a = NewPair();
  Pair& b = NewPair();
  WaitSet set;
  ASSERT_TRUE(set.Add(a.slave.get(), WaitSet::kReadable).ok());
  ASSERT_TRUE(set.Add(b.slave.get(), WaitSet::kReadable).ok());
  std::vector<WaitSet::Ready> ready;
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &ready).ok());
  const Channel* closed = b.slave.get();
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    b.slave.reset();  // closed and destroyed while the set sleeps on it
  });
  const std::int64_t start = NowNs();
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(10'000), &ready).ok());
  closer.join();
  EXPECT_LT(NowNs() - start, 5'000'000'000);
  ASSERT_TRUE(Has(ready, closed, WaitSet::kClosed));
  // Reported until removed; the set never touches it again, and the others still work.
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &ready).ok());
  EXPECT_TRUE(Has(ready, closed, WaitSet::kClosed));
  EXPECT_TRUE(set.Remove(closed).ok());
  ASSERT_EQ(a.master->TryWrite(Bytes("still here")), IoResult::kOk);
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(5000), &ready).ok());
  EXPECT_TRUE(Has(ready, a.slave.get(), WaitSet::kReadable));
}

TEST_F(WaitSetTest, AMemberShutDownWhileAwaitedIsReportedClosed) {
  // Shutdown (a binding's close() on another thread, before it can Close) wakes the set and says closed,
  // not a change of the peer.
  Pair& a = NewPair();
  WaitSet set;
  ASSERT_TRUE(set.Add(a.slave.get(), WaitSet::kReadable).ok());
  std::vector<WaitSet::Ready> ready;
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &ready).ok());
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    a.slave->Shutdown();
  });
  const std::int64_t start = NowNs();
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(10'000), &ready).ok());
  closer.join();
  EXPECT_LT(NowNs() - start, 5'000'000'000);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].events, WaitSet::kClosed);
  EXPECT_TRUE(set.Remove(a.slave.get()).ok());
}

TEST_F(WaitSetTest, TwoThreadsWaitingOnOneSetIsRefused) {
  Pair& a = NewPair();
  WaitSet set;
  ASSERT_TRUE(set.Add(a.slave.get(), WaitSet::kReadable).ok());
  std::vector<WaitSet::Ready> first_ready;
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &first_ready).ok());
  std::thread first([&] { EXPECT_TRUE(set.Wait(Deadline::AfterMs(10'000), &first_ready).ok()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::vector<WaitSet::Ready> ready;
  const absl::Status second = set.Wait(Deadline::AfterMs(10), &ready);
  EXPECT_TRUE(absl::IsFailedPrecondition(second)) << second;
  set.Wake();
  first.join();
}

TEST_F(WaitSetTest, AddAndRemoveWhileWaitingAreSeen) {
  pairs_.reserve(2);
  Pair& a = NewPair();
  Pair& b = NewPair();
  WaitSet set;
  ASSERT_TRUE(set.Add(a.slave.get(), WaitSet::kReadable).ok());
  std::vector<WaitSet::Ready> ready;
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &ready).ok());
  ASSERT_EQ(b.master->TryWrite(Bytes("already queued")), IoResult::kOk);
  std::thread adder([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(set.Add(b.slave.get(), WaitSet::kReadable).ok());
  });
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(5000), &ready).ok());
  adder.join();
  EXPECT_TRUE(Has(ready, b.slave.get(), WaitSet::kReadable));
}

// More members than one FUTEX_WAITV takes: the ones past the limit are still seen.
TEST_F(WaitSetTest, MoreMembersThanOneKernelSleepTakes) {
  constexpr int kMembers = 200;
  pairs_.reserve(kMembers);
  WaitSet set;
  for (int i = 0; i < kMembers; ++i) ASSERT_TRUE(set.Add(NewPair().slave.get(), WaitSet::kReadable).ok());
  std::vector<WaitSet::Ready> ready;
  while (set.Wait(Deadline::AfterMs(100), &ready).ok() && !ready.empty()) {
  }
  Pair& last = pairs_.back();
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_EQ(last.master->TryWrite(Bytes("to the last")), IoResult::kOk);
  });
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(5000), &ready).ok());
  writer.join();
  EXPECT_TRUE(Has(ready, last.slave.get(), WaitSet::kReadable));
  std::vector<std::byte> buffer(64);
  std::size_t size = 0;
  ASSERT_EQ(last.slave->TryRead(buffer, &size), IoResult::kOk);
  // Now among the most recently ready: the set arms its ring when it sleeps (raises the ring's sleep flag,
  // so its writer wakes the set), although it is past the first 127 members.
  absl::StatusOr<Segment> view = Segment::Open(last.name, Deadline::AfterMs(5000));
  ASSERT_TRUE(view.ok()) << view.status();
  const auto& sleeping = view->ring_control(Direction::kMasterToSlave)->wait.data_sleeping;
  std::vector<WaitSet::Ready> second_ready;
  std::thread waiter([&] {
    const Deadline deadline = Deadline::AfterMs(10'000);
    while (!deadline.Expired() && !Has(second_ready, last.slave.get(), WaitSet::kReadable)) {
      EXPECT_TRUE(set.Wait(deadline, &second_ready).ok());
    }
  });
  EXPECT_TRUE(eshm_test::WaitUntil([&] { return sleeping.load() != 0; }, absl::Seconds(5)))
      << "the set never armed the most recently ready member's ring";
  ASSERT_EQ(last.master->TryWrite(Bytes("again")), IoResult::kOk);
  waiter.join();
  EXPECT_TRUE(Has(second_ready, last.slave.get(), WaitSet::kReadable));
}

// The peer of a member dies (a process killed with SIGKILL): the wait ends with kPeerChanged.
TEST_F(WaitSetTest, APeersDeathEndsTheWait) {
  const std::string name = UniqueSegmentName("waitset_death");
  names_.push_back(name);
  eshm_test::Pipe attached;  // (forked while this process has no channel open)
  Child child = Child::Start([&] {
    absl::StatusOr<ChannelPtr> slave = Channel::Open(name, Small(ChannelRole::kSlave));
    if (!slave.ok()) return 2;
    attached.Send(1);
    for (;;) pause();
  });
  absl::StatusOr<ChannelPtr> master = Channel::Open(name, Small(ChannelRole::kMaster));
  ASSERT_TRUE(master.ok()) << master.status();
  ASSERT_TRUE(attached.Receive(absl::Seconds(20), &child).has_value()) << child.Describe();
  WaitSet set;
  ASSERT_TRUE(set.Add(master->get(), WaitSet::kReadable).ok());
  std::vector<WaitSet::Ready> ready;
  const std::int64_t until_alive = NowNs() + 5'000'000'000;
  while ((*master)->peer_state() != PeerState::kAlive && NowNs() < until_alive) {
    ASSERT_TRUE(set.Wait(Deadline::AfterMs(100), &ready).ok());
  }
  ASSERT_EQ((*master)->peer_state(), PeerState::kAlive);
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(50), &ready).ok());  // anything left from the attach
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    child.Kill();
  });
  const std::int64_t start = NowNs();
  ASSERT_TRUE(set.Wait(Deadline::AfterMs(10'000), &ready).ok());
  killer.join();
  EXPECT_TRUE(Has(ready, master->get(), WaitSet::kPeerChanged));
  EXPECT_LT(NowNs() - start, 5'000'000'000);
  EXPECT_EQ((*master)->peer_state(), PeerState::kDead);
}

}  // namespace
}  // namespace eshm
