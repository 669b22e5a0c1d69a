// Reconnection: the peer of a running channel goes away (SIGKILL, or a clean close that removes the
// segment) and a new one takes its place under the same name, with no manual cleanup. Streams carry
// (incarnation, sequence number) pairs and verified filler, so the reader can tell lost, repeated,
// reordered or torn messages apart across the restart.
//
// All peers are children forked before the parent opens its Channel; the ones that start later wait on a
// pipe (see channel_test_util.h).
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::Bytes;
using eshm_test::Child;
using eshm_test::MakeSeqMessage;
using eshm_test::ParseSeqMessage;
using eshm_test::PeerStateBecomes;
using eshm_test::Pipe;
using eshm_test::SegmentFileExists;
using eshm_test::SegmentInode;
using eshm_test::SeqMessage;

constexpr absl::Duration kWatchdog = absl::Seconds(25);
constexpr absl::Duration kSettle = absl::Seconds(5);
Deadline Soon() { return Deadline::AfterMs(10'000); }

using ChannelPtr = std::unique_ptr<Channel>;

std::size_t SizeOf(std::uint64_t seq) { return 16 + (seq * 37) % 300; }

// Writes messages (incarnation, first..first+count-1), or forever when count is 0, through every write
// path in turn: Write, WriteBatch (deferred publication) and TryClaim/Commit. Child side: returns an exit
// code.
int WriteStream(Channel& c, std::uint32_t incarnation, std::uint64_t count) {
  std::uint64_t seq = 0;
  while (count == 0 || seq < count) {
    const int path = static_cast<int>((seq / 64) % 3);
    if (path == 1) {
      std::vector<std::vector<std::byte>> owned;
      std::vector<std::span<const std::byte>> batch;
      for (std::uint64_t i = 0; i < 8 && (count == 0 || seq + i < count); ++i) {
        owned.push_back(MakeSeqMessage(incarnation, seq + i, SizeOf(seq + i)));
      }
      for (const auto& m : owned) batch.emplace_back(m);
      absl::StatusOr<std::size_t> written = c.WriteBatch(batch, Soon());
      ESHM_CHILD_CHECK_OK(written);
      seq += *written;
      continue;
    }
    const std::vector<std::byte> message = MakeSeqMessage(incarnation, seq, SizeOf(seq));
    if (path == 2) {
      if (std::byte* claim = c.TryClaim(message.size() + 32); claim != nullptr) {
        std::memcpy(claim, message.data(), message.size());
        c.Commit(message.size());  // shorter than claimed
        ++seq;
        continue;
      }
    }
    ESHM_CHILD_CHECK_OK(c.Write(message, Soon()));
    ++seq;
  }
  return 0;
}

// Reads one stream message, checking it is well formed.
absl::StatusOr<SeqMessage> ReadSeq(Channel& c, std::vector<std::byte>& buffer, Deadline deadline = Soon()) {
  absl::StatusOr<std::size_t> n = c.Read(buffer, deadline);
  if (!n.ok()) return n.status();
  std::optional<SeqMessage> m = ParseSeqMessage(std::span(buffer.data(), *n));
  if (!m.has_value()) return absl::DataLossError(absl::StrCat("malformed or torn message of ", *n, " bytes"));
  if (*n != SizeOf(m->seq)) {
    return absl::DataLossError(absl::StrCat("message ", m->incarnation, "/", m->seq, " is ", *n, " bytes, expected ",
                                            SizeOf(m->seq)));
  }
  return *m;
}

class ReconnectTest : public eshm_test::ChannelTestBase {};

// The reconnect count once it has reached `at_least` (the monitor may see a restart a little after the
// reader has already read from the new master) and had time to move on if it were going to.
std::uint64_t SettledReconnectCount(const Channel& c, std::uint64_t at_least) {
  eshm_test::WaitUntil([&] { return c.stats().reconnect_count >= at_least; }, kSettle);
  eshm_test::SleepMs(100);
  return c.stats().reconnect_count;
}

// (a) The master is killed mid-stream and a new master takes the segment over: the slave gets everything
// the dead master published, in order and once, then the new master's stream from its first message.
TEST_F(ReconnectTest, KilledMasterIsReplacedAndTheStreamResumes) {
  const std::string name = NewName();
  const std::uint64_t before_kill = static_cast<std::uint64_t>(eshm_test::ScaledCount(100'000, 5'000));
  const std::uint64_t second_count = static_cast<std::uint64_t>(eshm_test::ScaledCount(20'000, 2'000));
  Pipe go, hold;
  Child first = StartChild([&]() -> int {
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    return WriteStream(**channel, 1, 0);  // until killed
  });
  Child second = StartChild([&]() -> int {
    ESHM_CHILD_CHECK(go.Receive(absl::Seconds(60)).has_value());
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK((*channel)->stats().epoch == 2);
    if (const int code = WriteStream(**channel, 2, second_count); code != 0) return code;
    ESHM_CHILD_CHECK(hold.Receive(kWatchdog).has_value());
    return 0;
  });

  absl::StatusOr<ChannelPtr> opened = Channel::Open(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(opened.ok()) << opened.status();
  Channel& slave = **opened;
  const ino_t inode = SegmentInode(name);
  std::vector<std::byte> buffer(4096);
  std::uint32_t incarnation = 1;
  std::uint64_t next = 0;
  std::uint64_t first_total = 0;
  bool killed = false;
  for (;;) {
    absl::StatusOr<SeqMessage> m = ReadSeq(slave, buffer);
    ASSERT_TRUE(m.ok()) << "after " << incarnation << "/" << next << (killed ? " (first master killed)" : "") << ": "
                        << m.status() << "; first master " << first.Describe() << ", second " << second.Describe();
    if (m->incarnation == incarnation) {
      ASSERT_EQ(m->seq, next) << "incarnation " << incarnation << ": lost, repeated or reordered message";
      ++next;
    } else {
      ASSERT_TRUE(killed && incarnation == 1 && m->incarnation == 2)
          << "message of incarnation " << m->incarnation << " while reading incarnation " << incarnation;
      first_total = next;
      ASSERT_EQ(m->seq, 0u) << "the new master's stream must start with its first message";
      incarnation = 2;
      next = 1;
    }
    if (!killed && next == before_kill) {
      first.Kill();  // SIGKILL mid-stream, and reaped: the role lock is free
      killed = true;
      ASSERT_TRUE(go.Send(1));
    }
    if (incarnation == 2 && next == second_count) break;
  }
  std::printf("[reconnect] %llu messages of the killed master delivered (%llu after the kill)\n",
              static_cast<unsigned long long>(first_total), static_cast<unsigned long long>(first_total - before_kill));
  EXPECT_GE(first_total, before_kill);
  EXPECT_EQ(SegmentInode(name), inode) << "the takeover must reuse the segment";
  // The reads can outrun the monitor's next look at the new master.
  EXPECT_TRUE(PeerStateBecomes(slave, PeerState::kAlive, kSettle));
  EXPECT_EQ(SettledReconnectCount(slave, 1), 1u) << "one master restart";
  const ChannelStats s = slave.stats();
  EXPECT_EQ(s.epoch, 2u);
  EXPECT_EQ(s.master_pid, static_cast<std::uint32_t>(second.pid()));
  std::size_t size = 0;
  EXPECT_EQ(slave.TryRead(buffer, &size), IoResult::kWouldBlock) << "messages after the end of the stream";
  ASSERT_TRUE(hold.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(second, kWatchdog));
}

// Messages the slave published survive a master kill and reach the next master, in order.
TEST_F(ReconnectTest, SlavesMessagesSurviveAMasterKillAndReachTheNextMaster) {
  const std::string name = NewName();
  constexpr int kCount = 50;
  Pipe ready, go;
  Child first = StartChild([&]() -> int {
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK(eshm_test::WaitUntil([&] { return (*channel)->IsRemoteAlive(); }, kWatchdog));
    ESHM_CHILD_CHECK(ready.Send(1));
    eshm_test::SleepMs(60'000);  // never reads; killed by the parent
    return 3;
  });
  Child second = StartChild([&]() -> int {
    ESHM_CHILD_CHECK(go.Receive(absl::Seconds(60)).has_value());
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    std::vector<std::byte> buffer(4096);
    for (int i = 0; i < kCount; ++i) {
      absl::StatusOr<SeqMessage> m = ReadSeq(**channel, buffer);
      ESHM_CHILD_CHECK_OK(m);
      ESHM_CHILD_CHECK(m->incarnation == 3 && m->seq == static_cast<std::uint64_t>(i));
    }
    std::size_t size = 0;
    ESHM_CHILD_CHECK((*channel)->TryRead(buffer, &size) == IoResult::kWouldBlock);
    return 0;
  });
  absl::StatusOr<ChannelPtr> slave = Channel::Open(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(slave.ok()) << slave.status();
  ASSERT_TRUE(ready.Receive(kWatchdog, &first).has_value()) << first.Describe();
  for (int i = 0; i < kCount; ++i) ASSERT_TRUE((*slave)->Write(MakeSeqMessage(3, i, SizeOf(i)), Soon()).ok());
  first.Kill();
  ASSERT_TRUE(PeerStateBecomes(**slave, PeerState::kDead, kSettle));
  ASSERT_TRUE(go.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(second, kWatchdog));
  EXPECT_TRUE(PeerStateBecomes(**slave, PeerState::kDead, kSettle));  // the second master closed cleanly
}

// (b) The master closes cleanly (auto_cleanup removes the name) and a new master creates a new segment:
// the slave drains the old one, re-attaches by itself and talks to the new master both ways.
TEST_F(ReconnectTest, CleanlyClosedMasterIsFollowedToItsNewSegment) {
  const std::string name = NewName();
  constexpr std::uint64_t kFirst = 1000;
  constexpr std::uint64_t kSecond = 1000;
  Pipe written, close_now, go, hold;
  Child first = StartChild([&]() -> int {
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK(eshm_test::WaitUntil([&] { return (*channel)->IsRemoteAlive(); }, kWatchdog));
    if (const int code = WriteStream(**channel, 1, kFirst); code != 0) return code;
    ESHM_CHILD_CHECK(written.Send(1));
    ESHM_CHILD_CHECK(close_now.Receive(kWatchdog).has_value());
    (*channel)->Close();
    ESHM_CHILD_CHECK(!SegmentFileExists(name));
    return 0;
  });
  Child second = StartChild([&]() -> int {
    ESHM_CHILD_CHECK(go.Receive(absl::Seconds(60)).has_value());
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK((*channel)->stats().epoch == 1);  // a new segment
    if (const int code = WriteStream(**channel, 2, kSecond); code != 0) return code;
    std::vector<std::byte> buffer(4096);
    absl::StatusOr<SeqMessage> m = ReadSeq(**channel, buffer);
    ESHM_CHILD_CHECK_OK(m);
    ESHM_CHILD_CHECK(m->incarnation == 9 && m->seq == 0);
    ESHM_CHILD_CHECK(hold.Receive(kWatchdog).has_value());
    return 0;
  });

  absl::StatusOr<ChannelPtr> opened = Channel::Open(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(opened.ok()) << opened.status();
  Channel& slave = **opened;
  const ino_t old_inode = SegmentInode(name);
  ASSERT_TRUE(written.Receive(kWatchdog, &first).has_value()) << first.Describe();
  std::vector<std::byte> buffer(4096);
  std::uint64_t next = 0;
  for (; next < kFirst / 2; ++next) {
    absl::StatusOr<SeqMessage> m = ReadSeq(slave, buffer);
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_TRUE(m->incarnation == 1 && m->seq == next) << m->incarnation << "/" << m->seq << " at " << next;
  }
  ASSERT_TRUE(close_now.Send(1));
  ASSERT_TRUE(eshm_test::WaitForChild(first, kWatchdog));
  EXPECT_FALSE(SegmentFileExists(name)) << "auto_cleanup did not remove the segment";
  EXPECT_TRUE(PeerStateBecomes(slave, PeerState::kDead, kSettle));
  // What was queued for us is still readable.
  for (; next < kFirst; ++next) {
    absl::StatusOr<SeqMessage> m = ReadSeq(slave, buffer);
    ASSERT_TRUE(m.ok()) << "queued message " << next << " of the closed master: " << m.status();
    ASSERT_TRUE(m->incarnation == 1 && m->seq == next) << m->incarnation << "/" << m->seq << " at " << next;
  }

  ASSERT_TRUE(go.Send(1));
  for (next = 0; next < kSecond; ++next) {
    absl::StatusOr<SeqMessage> m = ReadSeq(slave, buffer);
    ASSERT_TRUE(m.ok()) << "message " << next << " of the new master: " << m.status() << "; " << second.Describe();
    ASSERT_TRUE(m->incarnation == 2 && m->seq == next) << m->incarnation << "/" << m->seq << " at " << next;
  }
  ASSERT_TRUE(slave.Write(MakeSeqMessage(9, 0, SizeOf(0)), Soon()).ok());
  const ino_t new_inode = SegmentInode(name);
  EXPECT_NE(new_inode, 0u);
  EXPECT_NE(new_inode, old_inode);
  EXPECT_TRUE(PeerStateBecomes(slave, PeerState::kAlive, kSettle));
  EXPECT_EQ(SettledReconnectCount(slave, 1), 1u) << "one re-attachment";
  const ChannelStats s = slave.stats();
  EXPECT_EQ(s.epoch, 1u);
  EXPECT_EQ(s.master_pid, static_cast<std::uint32_t>(second.pid()));
  EXPECT_EQ(s.slave_pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_EQ(s.m2s_read_count, kSecond) << "stats must describe the new segment";
  ASSERT_TRUE(hold.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(second, kWatchdog));
}

// (b') As (b), but the new master is up (and the slave has had time to re-attach) before the slave reads
// anything: the messages queued in the old segment must still come first, none lost.
TEST_F(ReconnectTest, SlaveDrainsTheOldSegmentBeforeFollowingTheNewMaster) {
  const std::string name = NewName();
  constexpr std::uint64_t kFirst = 500;
  constexpr std::uint64_t kSecond = 100;
  Pipe written, close_now, go, second_written, hold;
  Child first = StartChild([&]() -> int {
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK(eshm_test::WaitUntil([&] { return (*channel)->IsRemoteAlive(); }, kWatchdog));
    if (const int code = WriteStream(**channel, 1, kFirst); code != 0) return code;
    ESHM_CHILD_CHECK(written.Send(1));
    ESHM_CHILD_CHECK(close_now.Receive(kWatchdog).has_value());
    return 0;  // closes on the way out
  });
  Child second = StartChild([&]() -> int {
    ESHM_CHILD_CHECK(go.Receive(absl::Seconds(60)).has_value());
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK(eshm_test::WaitUntil([&] { return (*channel)->IsRemoteAlive(); }, kWatchdog));
    if (const int code = WriteStream(**channel, 2, kSecond); code != 0) return code;
    ESHM_CHILD_CHECK(second_written.Send(1));
    ESHM_CHILD_CHECK(hold.Receive(kWatchdog).has_value());
    return 0;
  });

  absl::StatusOr<ChannelPtr> opened = Channel::Open(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(opened.ok()) << opened.status();
  Channel& slave = **opened;
  ASSERT_TRUE(written.Receive(kWatchdog, &first).has_value()) << first.Describe();
  ASSERT_TRUE(close_now.Send(1));
  ASSERT_TRUE(eshm_test::WaitForChild(first, kWatchdog));
  ASSERT_TRUE(go.Send(1));
  // The second master waits until it sees the slave, so this also proves the slave re-attached.
  ASSERT_TRUE(second_written.Receive(kWatchdog, &second).has_value()) << second.Describe();

  std::vector<std::byte> buffer(4096);
  std::uint32_t incarnation = 1;
  std::uint64_t next = 0;
  while (!(incarnation == 2 && next == kSecond)) {
    absl::StatusOr<SeqMessage> m = ReadSeq(slave, buffer);
    ASSERT_TRUE(m.ok()) << m.status();
    if (m->incarnation != incarnation) {
      ASSERT_EQ(incarnation, 1u);
      ASSERT_EQ(next, kFirst) << "the slave left its old segment with " << kFirst - next
                              << " messages of the closed master unread (lost)";
      incarnation = 2;
      next = 0;
    }
    ASSERT_EQ(m->seq, next) << "incarnation " << incarnation;
    ++next;
  }
  ASSERT_TRUE(hold.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(second, kWatchdog));
}

// A master killed and replaced by one that wants another ring shape: the new master replaces the segment
// (the old one is unusable for it) and the slave, after reading what the dead master published, follows
// it to the new one by itself.
TEST_F(ReconnectTest, SlaveFollowsATakeoverThatChangedTheRingShape) {
  const std::string name = NewName();
  constexpr std::uint64_t kFirst = 200;
  constexpr std::uint64_t kSecond = 200;
  Pipe written, go, hold;
  Child first = StartChild([&]() -> int {
    ChannelOptions options = Options(ChannelRole::kMaster);
    options.m2s_capacity = 1 << 16;
    auto channel = Channel::Open(name, options);
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK(eshm_test::WaitUntil([&] { return (*channel)->IsRemoteAlive(); }, kWatchdog));
    if (const int code = WriteStream(**channel, 1, kFirst); code != 0) return code;
    ESHM_CHILD_CHECK(written.Send(1));
    eshm_test::SleepMs(60'000);  // killed by the parent
    return 3;
  });
  Child second = StartChild([&]() -> int {
    ESHM_CHILD_CHECK(go.Receive(absl::Seconds(60)).has_value());
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));  // default shape: 1 MiB rings
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK((*channel)->stats().m2s_capacity == (1u << 20));
    if (const int code = WriteStream(**channel, 2, kSecond); code != 0) return code;
    ESHM_CHILD_CHECK(hold.Receive(kWatchdog).has_value());
    return 0;
  });

  absl::StatusOr<ChannelPtr> opened = Channel::Open(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(opened.ok()) << opened.status();
  Channel& slave = **opened;
  EXPECT_EQ(slave.stats().m2s_capacity, 1u << 16) << "the slave adopts the master's shape";
  const ino_t old_inode = SegmentInode(name);
  ASSERT_TRUE(written.Receive(kWatchdog, &first).has_value()) << first.Describe();
  first.Kill();
  ASSERT_TRUE(PeerStateBecomes(slave, PeerState::kDead, kSettle));
  std::vector<std::byte> buffer(4096);
  for (std::uint64_t next = 0; next < kFirst; ++next) {
    absl::StatusOr<SeqMessage> m = ReadSeq(slave, buffer);
    ASSERT_TRUE(m.ok()) << "message " << next << " of the killed master: " << m.status();
    ASSERT_TRUE(m->incarnation == 1 && m->seq == next) << m->incarnation << "/" << m->seq << " at " << next;
  }
  ASSERT_TRUE(go.Send(1));
  for (std::uint64_t next = 0; next < kSecond; ++next) {
    absl::StatusOr<SeqMessage> m = ReadSeq(slave, buffer);
    ASSERT_TRUE(m.ok()) << "message " << next << " of the new master: " << m.status() << "; " << second.Describe();
    ASSERT_TRUE(m->incarnation == 2 && m->seq == next) << m->incarnation << "/" << m->seq << " at " << next;
  }
  EXPECT_NE(SegmentInode(name), old_inode) << "the reshaping master should have replaced the segment";
  EXPECT_EQ(slave.stats().m2s_capacity, 1u << 20) << "stats must describe the new segment";
  ASSERT_TRUE(hold.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(second, kWatchdog));
}

// (c) The slave is killed after reading part of what was queued for it: the next slave gets the rest, in
// order, starting at most one release batch (at-least-once across a reader crash) before where the dead
// one stopped; the master counts one reconnect.
TEST_F(ReconnectTest, KilledSlaveIsReplacedAndGetsWhatWasQueuedForIt) {
  const std::string name = NewName();
  constexpr std::uint64_t kQueued = 3000;
  constexpr std::uint64_t kReadByFirst = 1000;
  constexpr std::uint64_t kMore = 100;
  constexpr std::size_t kSize = 64;
  Pipe first_done, go, result;
  Child first = StartChild([&]() -> int {
    auto channel = Channel::Open(name, Options(ChannelRole::kSlave));
    ESHM_CHILD_CHECK_OK(channel);
    std::vector<std::byte> buffer(4096);
    for (std::uint64_t i = 0; i < kReadByFirst; ++i) {
      absl::StatusOr<std::size_t> n = (*channel)->Read(buffer, Soon());
      ESHM_CHILD_CHECK_OK(n);
      auto m = ParseSeqMessage(std::span(buffer.data(), *n));
      ESHM_CHILD_CHECK(m.has_value() && m->seq == i);
    }
    ESHM_CHILD_CHECK(first_done.Send(kReadByFirst));
    eshm_test::SleepMs(60'000);  // killed by the parent
    return 3;
  });
  Child second = StartChild([&]() -> int {
    ESHM_CHILD_CHECK(go.Receive(absl::Seconds(60)).has_value());
    auto channel = Channel::Open(name, Options(ChannelRole::kSlave));
    ESHM_CHILD_CHECK_OK(channel);
    std::vector<std::byte> buffer(4096);
    std::optional<std::uint64_t> first_seq;
    std::uint64_t next = 0;
    while (next < kQueued + kMore) {
      absl::StatusOr<std::size_t> n = (*channel)->Read(buffer, Soon());
      ESHM_CHILD_CHECK_OK(n);
      auto m = ParseSeqMessage(std::span(buffer.data(), *n));
      ESHM_CHILD_CHECK(m.has_value() && *n == kSize);
      if (!first_seq.has_value()) {
        first_seq = m->seq;
        next = m->seq;
      }
      if (m->seq != next) {
        std::fprintf(stderr, "[second slave] got %llu, expected %llu\n", static_cast<unsigned long long>(m->seq),
                     static_cast<unsigned long long>(next));
        return 1;
      }
      ++next;
    }
    ESHM_CHILD_CHECK(result.Send(*first_seq));
    return 0;
  });

  absl::StatusOr<ChannelPtr> opened = Channel::Open(name, Options(ChannelRole::kMaster));
  ASSERT_TRUE(opened.ok()) << opened.status();
  Channel& master = **opened;
  ASSERT_TRUE(PeerStateBecomes(master, PeerState::kAlive, kSettle));
  for (std::uint64_t i = 0; i < kQueued; ++i) ASSERT_TRUE(master.Write(MakeSeqMessage(1, i, kSize), Soon()).ok());
  ASSERT_TRUE(first_done.Receive(kWatchdog, &first).has_value()) << first.Describe();
  EXPECT_EQ(master.stats().slave_pid, static_cast<std::uint32_t>(first.pid()));
  first.Kill();
  ASSERT_TRUE(PeerStateBecomes(master, PeerState::kDead, kSettle));
  EXPECT_EQ(master.stats().m2s_write_count, kQueued);

  ASSERT_TRUE(go.Send(1));
  ASSERT_TRUE(PeerStateBecomes(master, PeerState::kAlive, kSettle)) << second.Describe();
  for (std::uint64_t i = kQueued; i < kQueued + kMore; ++i) {
    ASSERT_TRUE(master.Write(MakeSeqMessage(1, i, kSize), Soon()).ok());
  }
  std::optional<std::uint64_t> first_seq = result.Receive(kWatchdog, &second);
  EXPECT_TRUE(eshm_test::WaitForChild(second, kWatchdog));
  ASSERT_TRUE(first_seq.has_value()) << second.Describe();
  // The dead slave handed back the space of every message it read, so at most the one it was reading
  // when killed comes again.
  const std::uint64_t max_redelivered = RingConsumer::kMaxRedeliveredMessages;
  std::printf("[reconnect] the second slave started at message %llu; the first had read %llu\n",
              static_cast<unsigned long long>(*first_seq), static_cast<unsigned long long>(kReadByFirst));
  EXPECT_LE(*first_seq, kReadByFirst) << "messages queued for the dead slave were lost";
  EXPECT_GE(*first_seq + max_redelivered, kReadByFirst) << "more messages delivered again than the at-least-once window allows";
  EXPECT_EQ(SettledReconnectCount(master, 1), 1u) << "one slave restart";
  const ChannelStats s = master.stats();
  EXPECT_EQ(s.slave_pid, 0u) << "the second slave closed cleanly";
  EXPECT_EQ(s.m2s_queued_messages, 0u);
}

}  // namespace
}  // namespace eshm
