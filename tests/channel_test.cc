// Channel basics: messages both ways (two Channels in one process, and master and slave in two
// processes), statistics after known traffic, argument and state errors, role arbitration (refusals that
// name the holder, the AUTO race, takeover of a crashed master's or slave's role) and auto_cleanup.
//
// Children are forked before the parent opens any Channel (see channel_test_util.h) and leave with
// _exit(code); the parent waits for them with a watchdog.
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
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
#include "eshm/segment.h"
#include "gmock/gmock.h"
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
using eshm_test::Text;
using ::testing::HasSubstr;

// A healthy peer answers in microseconds; these only turn a hang into a failure.
constexpr absl::Duration kWatchdog = absl::Seconds(20);
constexpr absl::Duration kSettle = absl::Seconds(5);
Deadline Soon() { return Deadline::AfterMs(10'000); }

using ChannelPtr = std::unique_ptr<Channel>;

class ChannelTest : public eshm_test::ChannelTestBase {
 protected:
  // Opens `name` in `role` or fails the test.
  ChannelPtr MustOpen(const std::string& name, ChannelOptions options) {
    absl::StatusOr<ChannelPtr> channel = Channel::Open(name, options);
    EXPECT_TRUE(channel.ok()) << "Open('" << name << "') failed: " << channel.status();
    return channel.ok() ? *std::move(channel) : nullptr;
  }
  ChannelPtr MustOpen(const std::string& name, ChannelRole role) { return MustOpen(name, Options(role)); }
};

absl::StatusOr<std::string> ReadText(Channel& channel, Deadline deadline = Soon()) {
  std::vector<std::byte> buffer(64 * 1024);
  absl::StatusOr<std::size_t> n = channel.Read(buffer, deadline);
  if (!n.ok()) return n.status();
  return std::string(reinterpret_cast<const char*>(buffer.data()), *n);
}

// Waits until the reaped child was killed by `signal` (it kills itself to simulate a crash).
::testing::AssertionResult DiesBySignal(Child& child, int signal) {
  if (!eshm_test::WaitUntil([&] { return child.Poll(); }, kWatchdog, absl::Milliseconds(1))) {
    child.Kill();
    return ::testing::AssertionFailure() << "child did not die within the watchdog";
  }
  const std::string want = absl::StrCat("killed by signal ", signal);
  if (child.Describe() == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "child " << child.Describe() << ", expected " << want;
}

// =========================================================================================================
// Basic exchange

TEST_F(ChannelTest, TwoChannelsInOneProcessExchangeBothWays) {
  const std::string name = NewName();
  ChannelPtr master = MustOpen(name, ChannelRole::kMaster);
  ASSERT_NE(master, nullptr);
  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);
  ASSERT_NE(slave, nullptr);
  EXPECT_EQ(master->role(), Role::kMaster);
  EXPECT_EQ(slave->role(), Role::kSlave);
  EXPECT_EQ(master->name(), name);
  EXPECT_EQ(slave->name(), name);
  ASSERT_TRUE(PeerStateBecomes(*master, PeerState::kAlive, kSettle));
  ASSERT_TRUE(PeerStateBecomes(*slave, PeerState::kAlive, kSettle));
  EXPECT_TRUE(master->IsRemoteAlive());
  EXPECT_TRUE(slave->IsRemoteAlive());

  // Ping-pong, then bursts both ways.
  for (int i = 0; i < 200; ++i) {
    const std::string ping = absl::StrCat("m2s ", i);
    ASSERT_TRUE(master->Write(Bytes(ping), Soon()).ok());
    absl::StatusOr<std::string> got = ReadText(*slave);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, ping);
    const std::string pong = absl::StrCat("s2m ", i, std::string(static_cast<std::size_t>(i), 'x'));
    ASSERT_TRUE(slave->Write(Bytes(pong), Soon()).ok());
    got = ReadText(*master);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, pong);
  }
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(master->Write(MakeSeqMessage(1, i, 16 + i), Soon()).ok());
    ASSERT_TRUE(slave->Write(MakeSeqMessage(2, i, 300 - i), Soon()).ok());
  }
  std::vector<std::byte> buffer(4096);
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<std::size_t> n = slave->Read(buffer, Soon());
    ASSERT_TRUE(n.ok()) << n.status();
    auto m = ParseSeqMessage(std::span(buffer.data(), *n));
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->incarnation, 1u);
    EXPECT_EQ(m->seq, static_cast<std::uint64_t>(i));
    EXPECT_EQ(*n, 16u + i);
    n = master->Read(buffer, Soon());
    ASSERT_TRUE(n.ok()) << n.status();
    m = ParseSeqMessage(std::span(buffer.data(), *n));
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->incarnation, 2u);
    EXPECT_EQ(m->seq, static_cast<std::uint64_t>(i));
  }
  // Nothing left either way.
  std::size_t size = 0;
  EXPECT_EQ(master->TryRead(buffer, &size), IoResult::kWouldBlock);
  EXPECT_EQ(slave->TryRead(buffer, &size), IoResult::kWouldBlock);
}

// A sender controls message content, not framing: a payload that carries, at a future record boundary of
// the 4 KiB ring, that boundary's commit word, a plausible length and the data kind is delivered as the
// bytes it is, and the reader later finds nothing there but the real messages.
TEST_F(ChannelTest, MessageContentThatLooksLikeARecordIsNeverDelivered) {
  const std::string name = NewName();
  ChannelOptions options = Options(ChannelRole::kMaster);
  options.m2s_capacity = options.s2m_capacity = 4096;
  ChannelPtr master = MustOpen(name, options);
  ASSERT_NE(master, nullptr);
  options.role = ChannelRole::kSlave;
  ChannelPtr slave = MustOpen(name, options);
  ASSERT_NE(slave, nullptr);
  // The first record sits at stream position 0; its payload offset 1008 is ring offset 1024, i.e.
  // position 5120 on the next lap, where the third message below ends.
  std::vector<std::byte> bait(2032, std::byte{0x5a});
  const std::uint64_t forged_commit = 5120 + 1;
  const std::uint32_t forged_length = 40;
  const std::uint32_t forged_kind = static_cast<std::uint32_t>(RecordKind::kData);
  std::memcpy(bait.data() + 1008, &forged_commit, 8);
  std::memcpy(bait.data() + 1016, &forged_length, 4);
  std::memcpy(bait.data() + 1020, &forged_kind, 4);
  const std::vector<std::vector<std::byte>> sent = {bait, MakeSeqMessage(1, 1, 2032), MakeSeqMessage(1, 2, 1008)};
  std::vector<std::byte> buffer(4096);
  for (const std::vector<std::byte>& message : sent) {
    ASSERT_TRUE(master->Write(message, Soon()).ok());
    absl::StatusOr<std::size_t> n = slave->Read(buffer, Soon());
    ASSERT_TRUE(n.ok()) << n.status();
    ASSERT_EQ(std::vector<std::byte>(buffer.begin(), buffer.begin() + *n), message);
  }
  std::size_t size = 0;
  EXPECT_EQ(slave->TryRead(buffer, &size), IoResult::kWouldBlock) << "read a " << size << "-byte message nobody sent";
  for (std::uint64_t i = 3; i < 100; ++i) {
    ASSERT_TRUE(master->Write(MakeSeqMessage(1, i, 16 + i * 13 % 1500), Soon()).ok());
    absl::StatusOr<std::size_t> n = slave->Read(buffer, Soon());
    ASSERT_TRUE(n.ok()) << n.status();
    auto m = ParseSeqMessage(std::span(buffer.data(), *n));
    ASSERT_TRUE(m.has_value()) << "message " << i << " damaged";
    ASSERT_EQ(m->seq, i);
  }
}

TEST_F(ChannelTest, ZeroCopyBatchAndPeekPathsDeliverInOrder) {
  const std::string name = NewName();
  ChannelPtr master = MustOpen(name, ChannelRole::kMaster);
  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);
  ASSERT_TRUE(master && slave);

  // Claim/Commit, Claim/Abort (nothing becomes visible), then a batch.
  std::byte* claim = master->TryClaim(64);
  ASSERT_NE(claim, nullptr);
  std::memcpy(claim, "claimed", 7);
  master->Commit(7);
  claim = master->TryClaim(64);
  ASSERT_NE(claim, nullptr);
  std::memcpy(claim, "aborted", 7);
  master->Abort();
  const std::string batch[] = {"b0", "b1", "", "b3"};
  std::vector<std::span<const std::byte>> spans;
  for (const std::string& s : batch) spans.push_back(Bytes(s));
  absl::StatusOr<std::size_t> written = master->WriteBatch(spans, Soon());
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, 4u);

  absl::StatusOr<std::span<const std::byte>> peeked = slave->Peek(Soon());
  ASSERT_TRUE(peeked.ok()) << peeked.status();
  EXPECT_EQ(Text(*peeked), "claimed");
  slave->Release();
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<std::span<const std::byte>> next = slave->Peek(Soon());
    ASSERT_TRUE(next.ok()) << next.status();
    EXPECT_EQ(Text(*next), batch[i]);
    slave->Release();
  }
  EXPECT_EQ(slave->stats().m2s_read_count, 5u);
  EXPECT_EQ(slave->stats().m2s_write_count, 5u);
}

TEST_F(ChannelTest, StatsReflectKnownTraffic) {
  const std::string name = NewName();
  ChannelOptions master_options = Options(ChannelRole::kMaster);
  master_options.m2s_capacity = 1 << 16;
  master_options.s2m_capacity = 1 << 17;
  ChannelPtr master = MustOpen(name, master_options);
  ASSERT_NE(master, nullptr);
  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);  // default shape: adopts the master's
  ASSERT_NE(slave, nullptr);
  ASSERT_TRUE(PeerStateBecomes(*master, PeerState::kAlive, kSettle));
  ASSERT_TRUE(PeerStateBecomes(*slave, PeerState::kAlive, kSettle));

  const std::uint64_t expected_max = std::min(MaxPayloadForCapacity(1 << 16), MaxPayloadForCapacity(1 << 17));
  for (Channel* c : {master.get(), slave.get()}) {
    SCOPED_TRACE(c == master.get() ? "master's view" : "slave's view");
    const ChannelStats s = c->stats();
    EXPECT_EQ(s.m2s_capacity, 1u << 16);
    EXPECT_EQ(s.s2m_capacity, 1u << 17);
    EXPECT_EQ(s.max_message_bytes, expected_max);
    EXPECT_EQ(c->max_message_bytes(), expected_max);
    EXPECT_EQ(s.master_pid, static_cast<std::uint32_t>(getpid()));
    EXPECT_EQ(s.slave_pid, static_cast<std::uint32_t>(getpid()));
    EXPECT_TRUE(s.master_alive);
    EXPECT_TRUE(s.slave_alive);
    EXPECT_EQ(s.epoch, 1u);
    EXPECT_EQ(s.reconnect_count, 0u);
    EXPECT_EQ(s.m2s_write_count, 0u);
    EXPECT_EQ(s.m2s_queued_messages, 0u);
    EXPECT_EQ(s.m2s_queued_bytes, 0u);
    const std::int64_t now_ns = absl::ToUnixNanos(absl::Now());
    EXPECT_LT(std::llabs(static_cast<long long>(s.segment_epoch_ns) - now_ns), 60'000'000'000LL)
        << "segment_epoch_ns is not a recent CLOCK_REALTIME time";
  }

  // Five unread messages of 100 bytes.
  const std::string hundred(100, 'h');
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(master->Write(Bytes(hundred), Soon()).ok());
  for (Channel* c : {master.get(), slave.get()}) {
    const ChannelStats s = c->stats();
    EXPECT_EQ(s.m2s_write_count, 5u);
    EXPECT_EQ(s.m2s_read_count, 0u);
    EXPECT_EQ(s.m2s_queued_messages, 5u);
    EXPECT_GE(s.m2s_queued_bytes, 5u * 100);
    EXPECT_LE(s.m2s_queued_bytes, 5u * RecordBytes(100));
    EXPECT_EQ(s.s2m_queued_messages, 0u);
  }
  std::vector<std::byte> buffer(1024);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(slave->Read(buffer, Soon()).ok());
  EXPECT_EQ(slave->stats().m2s_read_count, 2u);
  EXPECT_EQ(master->stats().m2s_queued_messages, 3u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(slave->Read(buffer, Soon()).ok());
  for (Channel* c : {master.get(), slave.get()}) {
    const ChannelStats s = c->stats();
    EXPECT_EQ(s.m2s_write_count, 5u);
    EXPECT_EQ(s.m2s_read_count, 5u);
    EXPECT_EQ(s.m2s_queued_messages, 0u);
    EXPECT_EQ(s.m2s_queued_bytes, 0u);
  }

  // Three the other way, then drained.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(slave->Write(Bytes("s2m"), Soon()).ok());
  EXPECT_EQ(master->stats().s2m_write_count, 3u);
  EXPECT_EQ(master->stats().s2m_queued_messages, 3u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(master->Read(buffer, Soon()).ok());
  for (Channel* c : {master.get(), slave.get()}) {
    const ChannelStats s = c->stats();
    EXPECT_EQ(s.s2m_write_count, 3u);
    EXPECT_EQ(s.s2m_read_count, 3u);
    EXPECT_EQ(s.s2m_queued_messages, 0u);
    EXPECT_EQ(s.s2m_queued_bytes, 0u);
    EXPECT_EQ(s.m2s_write_count, 5u);
  }

  // Heartbeats advance by themselves (monitor threads), both roles.
  const ChannelStats before = master->stats();
  eshm_test::SleepMs(50);
  const ChannelStats after = slave->stats();
  EXPECT_GT(after.master_heartbeat, before.master_heartbeat);
  EXPECT_GT(after.slave_heartbeat, before.slave_heartbeat);
}

// The master is a child process; the parent is the slave.
TEST_F(ChannelTest, ForkedMasterAndSlaveExchangeAndReportStats) {
  const std::string name = NewName();
  constexpr int kCount = 500;
  Pipe to_parent, to_child;
  const pid_t parent_pid = getpid();
  Child master = StartChild([&]() -> int {
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    Channel& c = **channel;
    ESHM_CHILD_CHECK(c.role() == Role::kMaster);
    ESHM_CHILD_CHECK(eshm_test::WaitUntil([&] { return c.IsRemoteAlive(); }, kWatchdog));
    for (int i = 0; i < kCount; ++i) ESHM_CHILD_CHECK_OK(c.Write(MakeSeqMessage(1, i, 16 + i % 200), Soon()));
    std::vector<std::byte> buffer(1024);
    for (int i = 0; i < kCount; ++i) {
      absl::StatusOr<std::size_t> n = c.Read(buffer, Soon());
      ESHM_CHILD_CHECK_OK(n);
      auto m = ParseSeqMessage(std::span(buffer.data(), *n));
      ESHM_CHILD_CHECK(m.has_value() && m->incarnation == 2 && m->seq == static_cast<std::uint64_t>(i));
    }
    const ChannelStats s = c.stats();
    ESHM_CHILD_CHECK(s.master_pid == static_cast<std::uint32_t>(getpid()));
    ESHM_CHILD_CHECK(s.slave_pid == static_cast<std::uint32_t>(parent_pid));
    ESHM_CHILD_CHECK(s.master_alive && s.slave_alive);
    ESHM_CHILD_CHECK(s.s2m_write_count == kCount && s.s2m_read_count == kCount && s.s2m_queued_messages == 0);
    ESHM_CHILD_CHECK(to_parent.Send(1));
    ESHM_CHILD_CHECK(to_child.Receive(kWatchdog).has_value());  // the parent has checked its stats
    return 0;
  });

  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);  // waits for the child to create the segment
  ASSERT_NE(slave, nullptr);
  EXPECT_EQ(slave->role(), Role::kSlave);
  std::vector<std::byte> buffer(1024);
  for (int i = 0; i < kCount; ++i) {
    absl::StatusOr<std::size_t> n = slave->Read(buffer, Soon());
    ASSERT_TRUE(n.ok()) << n.status();
    auto m = ParseSeqMessage(std::span(buffer.data(), *n));
    ASSERT_TRUE(m.has_value());
    ASSERT_EQ(m->incarnation, 1u);
    ASSERT_EQ(m->seq, static_cast<std::uint64_t>(i));
    ASSERT_TRUE(slave->Write(MakeSeqMessage(2, i, 16 + (i * 7) % 300), Soon()).ok());
  }
  ASSERT_TRUE(to_parent.Receive(kWatchdog, &master).has_value()) << "master: " << master.Describe();

  const ChannelStats s = slave->stats();
  EXPECT_EQ(s.master_pid, static_cast<std::uint32_t>(master.pid()));
  EXPECT_EQ(s.slave_pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_TRUE(s.master_alive);
  EXPECT_TRUE(s.slave_alive);
  EXPECT_EQ(s.m2s_write_count, static_cast<std::uint64_t>(kCount));
  EXPECT_EQ(s.m2s_read_count, static_cast<std::uint64_t>(kCount));
  EXPECT_EQ(s.s2m_write_count, static_cast<std::uint64_t>(kCount));
  EXPECT_EQ(s.s2m_read_count, static_cast<std::uint64_t>(kCount));
  EXPECT_EQ(s.m2s_queued_messages, 0u);
  EXPECT_EQ(s.s2m_queued_messages, 0u);
  EXPECT_EQ(s.m2s_capacity, 1u << 20);
  EXPECT_EQ(s.s2m_capacity, 1u << 20);
  EXPECT_EQ(s.epoch, 1u);
  // Both counters advance: every beat interval, or once a second once the two processes watch each
  // other's monitor thread through the kernel.
  ChannelStats later;
  EXPECT_TRUE(eshm_test::WaitUntil(
      [&] {
        later = slave->stats();
        return later.master_heartbeat > s.master_heartbeat && later.slave_heartbeat > s.slave_heartbeat;
      },
      absl::Seconds(5)))
      << "heartbeats master " << s.master_heartbeat << " -> " << later.master_heartbeat << ", slave "
      << s.slave_heartbeat << " -> " << later.slave_heartbeat;
  EXPECT_EQ(slave->peer_state(), PeerState::kAlive);

  ASSERT_TRUE(to_child.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(master, kWatchdog));
}

TEST(ChannelNames, EnumNames) {
  EXPECT_STREQ(PeerStateName(PeerState::kAbsent), "absent");
  EXPECT_STREQ(PeerStateName(PeerState::kAlive), "alive");
  EXPECT_STREQ(PeerStateName(PeerState::kUnresponsive), "unresponsive");
  EXPECT_STREQ(PeerStateName(PeerState::kDead), "dead");
  EXPECT_STREQ(IoResultName(IoResult::kOk), "ok");
  EXPECT_STREQ(IoResultName(IoResult::kPeerGone), "peer gone");
  EXPECT_STREQ(IoResultName(IoResult::kClosed), "closed");
}

// =========================================================================================================
// Errors

TEST_F(ChannelTest, BadNamesAreInvalidArgument) {
  const std::string bad[] = {
      "",
      std::string(kMaxSegmentNameLength + 1, 'a'),
      "a/b",
      "/leading",
      "caf\xc3\xa9",
      "with space",
      std::string("nul\0byte", 8),
      "..\\x",
  };
  for (const std::string& name : bad) {
    for (ChannelRole role : {ChannelRole::kMaster, ChannelRole::kSlave, ChannelRole::kAuto}) {
      const std::int64_t start = eshm_test::NowNs();
      absl::StatusOr<ChannelPtr> channel = Channel::Open(name, Options(role));
      EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument)
          << "name '" << name << "' role " << static_cast<int>(role) << ": " << channel.status();
      EXPECT_LT(eshm_test::MsSince(start), 1000.0) << "a bad name must fail at once, not after retries";
    }
  }
  // The longest legal name works.
  std::string longest = absl::StrCat("eshmtest_", getpid(), "_longest_");
  longest.resize(kMaxSegmentNameLength, 'x');
  names_.push_back(longest);
  absl::StatusOr<ChannelPtr> channel = Channel::Open(longest, Options(ChannelRole::kMaster));
  EXPECT_TRUE(channel.ok()) << channel.status();
}

TEST_F(ChannelTest, InvalidOptionsAreInvalidArgumentAndCreateNothing) {
  struct Case {
    const char* what;
    std::function<void(ChannelOptions&)> mutate;
  };
  const Case cases[] = {
      {"stale_threshold_ms 0", [](ChannelOptions& o) { o.stale_threshold_ms = 0; }},
      {"stale_threshold_ms -1", [](ChannelOptions& o) { o.stale_threshold_ms = -1; }},
      {"heartbeat_interval_ms -1", [](ChannelOptions& o) { o.heartbeat_interval_ms = -1; }},
      {"heartbeat == stale threshold",
       [](ChannelOptions& o) {
         o.heartbeat_interval_ms = 100;
         o.stale_threshold_ms = 100;
       }},
      {"heartbeat > stale threshold",
       [](ChannelOptions& o) {
         o.heartbeat_interval_ms = 200;
         o.stale_threshold_ms = 100;
       }},
      {"reconnect_wait_ms -1", [](ChannelOptions& o) { o.reconnect_wait_ms = -1; }},
      {"reconnect_retry_interval_ms 0", [](ChannelOptions& o) { o.reconnect_retry_interval_ms = 0; }},
      {"reconnect_retry_interval_ms -5", [](ChannelOptions& o) { o.reconnect_retry_interval_ms = -5; }},
      {"max_reconnect_attempts -1", [](ChannelOptions& o) { o.max_reconnect_attempts = -1; }},
      {"role 7", [](ChannelOptions& o) { o.role = static_cast<ChannelRole>(7); }},
      {"role -1", [](ChannelOptions& o) { o.role = static_cast<ChannelRole>(-1); }},
      {"disconnect_behavior 3", [](ChannelOptions& o) { o.disconnect_behavior = static_cast<DisconnectBehavior>(3); }},
      {"m2s_capacity not a power of two", [](ChannelOptions& o) { o.m2s_capacity = 100'000; }},
      {"s2m_capacity 0", [](ChannelOptions& o) { o.s2m_capacity = 0; }},
      {"max_message_bytes above what the ring holds",
       [](ChannelOptions& o) {
         o.m2s_capacity = 1 << 16;
         o.max_message_bytes = 1 << 16;
       }},
  };
  for (const Case& c : cases) {
    const std::string name = NewName();
    ChannelOptions options = Options(ChannelRole::kMaster);
    c.mutate(options);
    absl::StatusOr<ChannelPtr> channel = Channel::Open(name, options);
    EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument) << c.what << ": " << channel.status();
    EXPECT_FALSE(SegmentFileExists(name)) << c.what << ": a rejected Open left " << Segment::PathFor(name);
  }
  // Boundary values that are legal.
  ChannelOptions legal = Options(ChannelRole::kMaster);
  legal.reconnect_wait_ms = 0;
  legal.max_reconnect_attempts = 0;
  legal.stale_threshold_ms = 2;
  legal.heartbeat_interval_ms = 1;
  absl::StatusOr<ChannelPtr> channel = Channel::Open(NewName(), legal);
  EXPECT_TRUE(channel.ok()) << channel.status();
}

TEST_F(ChannelTest, SlaveWithoutMasterGivesUpAfterItsAttempts) {
  const std::string name = NewName();
  ChannelOptions options = Options(ChannelRole::kSlave);
  options.max_reconnect_attempts = 3;
  options.reconnect_retry_interval_ms = 10;
  absl::StatusOr<ChannelPtr> channel = Channel::Open(name, options);
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kNotFound) << channel.status();
  EXPECT_FALSE(SegmentFileExists(name)) << "a slave must never create the segment";
}

TEST_F(ChannelTest, TooLargeMessageIsInvalidArgumentAndWritesNothing) {
  const std::string name = NewName();
  ChannelOptions options = Options(ChannelRole::kMaster);
  options.max_message_bytes = 1024;
  ChannelPtr master = MustOpen(name, options);
  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);
  ASSERT_TRUE(master && slave);
  EXPECT_EQ(master->max_message_bytes(), 1024u);
  EXPECT_EQ(slave->max_message_bytes(), 1024u);

  const std::string too_large(1025, 'L');
  EXPECT_EQ(master->TryWrite(Bytes(too_large)), IoResult::kTooLarge);
  EXPECT_EQ(master->StatusOf(IoResult::kTooLarge).code(), absl::StatusCode::kInvalidArgument);
  // Must fail at once even with no deadline.
  EXPECT_EQ(master->Write(Bytes(too_large), Deadline::Infinite()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slave->Write(Bytes(too_large), Deadline::Infinite()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slave->TryWrite(Bytes(too_large)), IoResult::kTooLarge);
  const std::span<const std::byte> batch[] = {Bytes(too_large), Bytes("after")};
  EXPECT_EQ(master->WriteBatch(batch, Soon()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(master->TryClaim(1025), nullptr);

  for (Channel* c : {master.get(), slave.get()}) {
    const ChannelStats s = c->stats();
    EXPECT_EQ(s.m2s_write_count, 0u);
    EXPECT_EQ(s.m2s_queued_bytes, 0u);
    EXPECT_EQ(s.s2m_write_count, 0u);
    EXPECT_EQ(s.s2m_queued_bytes, 0u);
  }
  std::vector<std::byte> buffer(4096);
  std::size_t size = 0;
  EXPECT_EQ(slave->TryRead(buffer, &size), IoResult::kWouldBlock);
  EXPECT_EQ(master->TryRead(buffer, &size), IoResult::kWouldBlock);

  // Exactly the maximum fits, and is what arrives first.
  const std::string largest(1024, 'M');
  ASSERT_TRUE(master->Write(Bytes(largest), Soon()).ok());
  absl::StatusOr<std::size_t> n = slave->Read(buffer, Soon());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(Text(std::span(buffer.data(), *n)), largest);
}

TEST_F(ChannelTest, TooSmallReadBufferIsOutOfRangeAndKeepsTheMessage) {
  const std::string name = NewName();
  ChannelPtr master = MustOpen(name, ChannelRole::kMaster);
  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);
  ASSERT_TRUE(master && slave);
  std::string message(100, '\0');
  for (int i = 0; i < 100; ++i) message[i] = static_cast<char>('a' + i % 26);
  ASSERT_TRUE(master->Write(Bytes(message), Soon()).ok());
  ASSERT_TRUE(master->Write(Bytes("second"), Soon()).ok());

  std::vector<std::byte> small(10);
  absl::StatusOr<std::size_t> n = slave->Read(small, Soon());
  EXPECT_EQ(n.status().code(), absl::StatusCode::kOutOfRange) << n.status();
  std::size_t size = 0;
  EXPECT_EQ(slave->TryRead(small, &size), IoResult::kBufferTooSmall);
  EXPECT_EQ(size, 100u);
  EXPECT_EQ(slave->StatusOf(IoResult::kBufferTooSmall).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(slave->NextMessageSize(), std::optional<std::size_t>(100));
  EXPECT_EQ(slave->stats().m2s_queued_messages, 2u);
  EXPECT_EQ(slave->stats().m2s_read_count, 0u);

  std::vector<std::byte> exact(100);
  n = slave->Read(exact, Soon());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(Text(std::span(exact.data(), *n)), message);
  n = slave->Read(small, Soon());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(Text(std::span(small.data(), *n)), "second");

  // An empty message fits an empty buffer.
  ASSERT_TRUE(master->Write({}, Soon()).ok());
  n = slave->Read({}, Soon());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 0u);
}

TEST_F(ChannelTest, OperationsAfterCloseFailWithFailedPrecondition) {
  const std::string name = NewName();
  ChannelPtr master = MustOpen(name, ChannelRole::kMaster);
  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);
  ASSERT_TRUE(master && slave);
  ASSERT_TRUE(master->Write(Bytes("queued"), Soon()).ok());
  slave->Close();
  slave->Close();  // twice is fine

  std::vector<std::byte> buffer(64);
  std::size_t size = 0;
  std::span<const std::byte> peeked;
  EXPECT_EQ(slave->TryRead(buffer, &size), IoResult::kClosed);
  EXPECT_EQ(slave->TryPeek(&peeked), IoResult::kClosed);
  EXPECT_EQ(slave->TryWrite(Bytes("x")), IoResult::kClosed);
  EXPECT_EQ(slave->Read(buffer, Soon()).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(slave->Peek(Soon()).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(slave->Write(Bytes("x"), Soon()).code(), absl::StatusCode::kFailedPrecondition);
  const std::span<const std::byte> batch[] = {Bytes("x")};
  EXPECT_EQ(slave->WriteBatch(batch, Soon()).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(slave->TryClaim(8), nullptr);
  EXPECT_EQ(slave->NextMessageSize(), std::nullopt);
  EXPECT_EQ(slave->StatusOf(IoResult::kClosed).code(), absl::StatusCode::kFailedPrecondition);
  slave->Commit(0);  // harmless no-ops
  slave->Abort();
  slave->Flush();
  slave->Release();
  (void)slave->stats();
  (void)slave->peer_state();

  // The closed slave's role is free again, and what was queued for it is still there.
  ChannelPtr next = MustOpen(name, ChannelRole::kSlave);
  ASSERT_NE(next, nullptr);
  absl::StatusOr<std::string> got = ReadText(*next);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "queued");

  master->Close();
  master->Close();
  EXPECT_EQ(master->TryWrite(Bytes("x")), IoResult::kClosed);
  EXPECT_EQ(master->Write(Bytes("x"), Soon()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(master->Read(buffer, Soon()).status().code(), absl::StatusCode::kFailedPrecondition);
}

// =========================================================================================================
// Roles

TEST_F(ChannelTest, SecondMasterOrSlaveIsRefusedNamingTheHolder) {
  const std::string name = NewName();
  Pipe ready, go_master, go_slave;
  Child master = StartChild([&]() -> int {
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK(eshm_test::WaitUntil([&] { return (*channel)->IsRemoteAlive(); }, kWatchdog));
    ESHM_CHILD_CHECK(ready.Send(1));
    ESHM_CHILD_CHECK(go_master.Receive(kWatchdog).has_value());
    // The refused openers disturbed nothing: the slave is still our peer.
    if (!(*channel)->IsRemoteAlive()) {
      std::fprintf(stderr, "[master child] peer state %s after the refusals\n", PeerStateName((*channel)->peer_state()));
      return 1;
    }
    ESHM_CHILD_CHECK_OK((*channel)->Write(Bytes("still master"), Soon()));
    ESHM_CHILD_CHECK(go_master.Receive(kWatchdog).has_value());
    return 0;
  });
  Child slave = StartChild([&]() -> int {
    auto channel = Channel::Open(name, Options(ChannelRole::kSlave));
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK(eshm_test::WaitUntil([&] { return (*channel)->IsRemoteAlive(); }, kWatchdog));
    ESHM_CHILD_CHECK(ready.Send(2));
    ESHM_CHILD_CHECK(go_slave.Receive(kWatchdog).has_value());
    absl::StatusOr<std::string> got = ReadText(**channel);
    ESHM_CHILD_CHECK_OK(got);
    ESHM_CHILD_CHECK(*got == "still master");
    return 0;
  });
  ASSERT_TRUE(ready.Receive(kWatchdog).has_value()) << master.Describe() << " / " << slave.Describe();
  ASSERT_TRUE(ready.Receive(kWatchdog).has_value()) << master.Describe() << " / " << slave.Describe();

  const std::string master_pid = absl::StrCat("pid ", master.pid());
  const std::string slave_pid = absl::StrCat("pid ", slave.pid());
  absl::StatusOr<ChannelPtr> second = Channel::Open(name, Options(ChannelRole::kMaster));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(master_pid));
  second = Channel::Open(name, Options(ChannelRole::kSlave));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(slave_pid));
  second = Channel::Open(name, Options(ChannelRole::kAuto));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists) << second.status();
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(master_pid));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(slave_pid));

  ASSERT_TRUE(go_master.Send(1));
  ASSERT_TRUE(go_slave.Send(1));
  ASSERT_TRUE(eshm_test::WaitForChild(slave, kWatchdog));
  ASSERT_TRUE(go_master.Send(1));
  EXPECT_TRUE(eshm_test::WaitForChild(master, kWatchdog));
}

// Two AUTO openers started at the same instant: every time exactly one becomes master and one slave, and
// they talk to each other (so they attached to the same segment).
void RaceTwoAutoOpeners(ChannelTest* test, const std::string& name, int iteration) {
  Pipe results;
  eshm_test::Barrier start, done;
  auto body = [&]() -> int {
    if (!start.Wait(kWatchdog)) return 10;
    absl::StatusOr<ChannelPtr> channel = Channel::Open(name, eshm_test::ChannelTestBase::Options(ChannelRole::kAuto));
    if (!channel.ok()) {
      std::fprintf(stderr, "[child %d] AUTO open failed: %s\n", getpid(), channel.status().ToString().c_str());
      results.Send(100);
      return 11;
    }
    Channel& c = **channel;
    const Role role = c.role();
    // Prove the two ended up on one segment: ping from the master, pong from the slave.
    if (role == Role::kMaster) {
      if (!c.Write(Bytes("ping"), Soon()).ok()) return 12;
      absl::StatusOr<std::string> got = ReadText(c);
      if (!got.ok() || *got != "pong") return 13;
    } else {
      absl::StatusOr<std::string> got = ReadText(c);
      if (!got.ok() || *got != "ping") {
        std::fprintf(stderr, "[child %d] slave read: %s\n", getpid(), got.status().ToString().c_str());
        return 14;
      }
      if (!c.Write(Bytes("pong"), Soon()).ok()) return 15;
    }
    results.Send(static_cast<std::uint64_t>(role));
    if (!done.Wait(kWatchdog)) return 16;  // hold the role until both have reported
    return 0;
  };
  Child a = test->StartChild(body);
  Child b = test->StartChild(body);
  eshm_test::SleepMs(1);  // let both reach the barrier
  start.Open();
  std::optional<std::uint64_t> r1 = results.Receive(kWatchdog);
  std::optional<std::uint64_t> r2 = results.Receive(kWatchdog);
  done.Open();
  const bool children_ok = eshm_test::WaitForChildren({&a, &b}, kWatchdog);
  ASSERT_TRUE(r1.has_value() && r2.has_value())
      << "iteration " << iteration << ": " << a.Describe() << " / " << b.Describe();
  const std::uint64_t master = static_cast<std::uint64_t>(Role::kMaster);
  const std::uint64_t slave = static_cast<std::uint64_t>(Role::kSlave);
  EXPECT_TRUE((*r1 == master && *r2 == slave) || (*r1 == slave && *r2 == master))
      << "iteration " << iteration << ": roles " << *r1 << " and " << *r2 << " (0 master, 1 slave, 100 failed)";
  EXPECT_TRUE(children_ok) << "iteration " << iteration << ": " << a.Describe() << " / " << b.Describe();
}

TEST_F(ChannelTest, AutoRaceOnFreshNameYieldsOneMasterAndOneSlave) {
  const int iterations = eshm_test::ScaledCount(100, 50);
  for (int i = 0; i < iterations; ++i) {
    RaceTwoAutoOpeners(this, NewName(absl::StrCat(i)), i);
    if (HasFatalFailure() || HasNonfatalFailure()) break;
  }
}

// The same race over a segment a crashed master left behind (half the time with another ring shape, which
// the winner replaces).
TEST_F(ChannelTest, AutoRaceOverCrashedMastersSegmentYieldsOneMasterAndOneSlave) {
  const int iterations = eshm_test::ScaledCount(40, 20);
  for (int i = 0; i < iterations; ++i) {
    const std::string name = NewName(absl::StrCat(i));
    Child crasher = StartChild([&]() -> int {
      ChannelOptions options = Options(ChannelRole::kMaster);
      if (i % 2 == 1) options.m2s_capacity = 1 << 16;
      auto channel = Channel::Open(name, options);
      ESHM_CHILD_CHECK_OK(channel);
      kill(getpid(), SIGKILL);
      return 2;
    });
    ASSERT_TRUE(DiesBySignal(crasher, SIGKILL));
    ASSERT_TRUE(SegmentFileExists(name));
    RaceTwoAutoOpeners(this, name, i);
    if (HasFatalFailure() || HasNonfatalFailure()) break;
  }
}

class CrashedMasterTakeover : public ChannelTest, public ::testing::WithParamInterface<ChannelRole> {};

TEST_P(CrashedMasterTakeover, NextOpenerTakesTheSegmentOverWithoutRemovingIt) {
  const std::string name = NewName();
  Child crasher = StartChild([&]() -> int {
    auto channel = Channel::Open(name, Options(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(channel);
    for (int i = 0; i < 3; ++i) ESHM_CHILD_CHECK_OK((*channel)->Write(MakeSeqMessage(1, i, 40), Soon()));
    kill(getpid(), SIGKILL);
    return 2;
  });
  ASSERT_TRUE(DiesBySignal(crasher, SIGKILL));
  const ino_t inode = SegmentInode(name);
  ASSERT_NE(inode, 0u) << "the crashed master's segment is gone";

  ChannelPtr master = MustOpen(name, GetParam());
  ASSERT_NE(master, nullptr);
  EXPECT_EQ(master->role(), Role::kMaster);
  EXPECT_EQ(SegmentInode(name), inode) << "the takeover replaced the segment instead of reusing it";
  ChannelStats s = master->stats();
  EXPECT_EQ(s.epoch, 2u) << "second master attachment to this segment";
  EXPECT_EQ(s.master_pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_EQ(s.m2s_queued_messages, 3u) << "what the dead master published survives";

  // A slave gets the dead master's messages, in order, then the new master's.
  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);
  ASSERT_NE(slave, nullptr);
  ASSERT_TRUE(master->Write(MakeSeqMessage(2, 0, 40), Soon()).ok());
  std::vector<std::byte> buffer(256);
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<std::size_t> n = slave->Read(buffer, Soon());
    ASSERT_TRUE(n.ok()) << n.status();
    auto m = ParseSeqMessage(std::span(buffer.data(), *n));
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->incarnation, i < 3 ? 1u : 2u);
    EXPECT_EQ(m->seq, i < 3 ? static_cast<std::uint64_t>(i) : 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Roles, CrashedMasterTakeover, ::testing::Values(ChannelRole::kMaster, ChannelRole::kAuto),
                         [](const ::testing::TestParamInfo<ChannelRole>& param_info) {
                           return param_info.param == ChannelRole::kMaster ? std::string("Master") : std::string("Auto");
                         });

TEST_F(ChannelTest, CrashedSlaveIsReplacedBySlaveAndAuto) {
  const std::string name = NewName();
  Pipe ready;
  Child crasher = StartChild([&]() -> int {
    auto channel = Channel::Open(name, Options(ChannelRole::kSlave));
    ESHM_CHILD_CHECK_OK(channel);
    ESHM_CHILD_CHECK(ready.Send(1));
    eshm_test::SleepMs(20'000);  // killed by the parent
    return 3;
  });
  ChannelPtr master = MustOpen(name, ChannelRole::kMaster);
  ASSERT_NE(master, nullptr);
  ASSERT_TRUE(ready.Receive(kWatchdog, &crasher).has_value()) << crasher.Describe();
  ASSERT_TRUE(PeerStateBecomes(*master, PeerState::kAlive, kSettle));
  EXPECT_EQ(master->stats().slave_pid, static_cast<std::uint32_t>(crasher.pid()));
  crasher.Kill();
  ASSERT_TRUE(PeerStateBecomes(*master, PeerState::kDead, kSettle));
  EXPECT_FALSE(master->stats().slave_alive);

  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);
  ASSERT_NE(slave, nullptr);
  EXPECT_EQ(slave->role(), Role::kSlave);
  ASSERT_TRUE(PeerStateBecomes(*master, PeerState::kAlive, kSettle));
  EXPECT_EQ(master->stats().slave_pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_TRUE(master->stats().slave_alive);
  slave->Close();
  ASSERT_TRUE(PeerStateBecomes(*master, PeerState::kDead, kSettle));

  ChannelPtr automatic = MustOpen(name, ChannelRole::kAuto);
  ASSERT_NE(automatic, nullptr);
  EXPECT_EQ(automatic->role(), Role::kSlave);
  ASSERT_TRUE(master->Write(Bytes("to the third slave"), Soon()).ok());
  absl::StatusOr<std::string> got = ReadText(*automatic);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "to the third slave");
}

// =========================================================================================================
// auto_cleanup

TEST_F(ChannelTest, MasterCloseRemovesTheSegmentWithAutoCleanup) {
  const std::string name = NewName();
  ChannelPtr master = MustOpen(name, ChannelRole::kMaster);
  ASSERT_NE(master, nullptr);
  EXPECT_TRUE(SegmentFileExists(name));
  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);
  ASSERT_NE(slave, nullptr);
  slave->Close();
  EXPECT_TRUE(SegmentFileExists(name)) << "a slave never removes the segment";
  master->Close();
  EXPECT_FALSE(SegmentFileExists(name)) << Segment::PathFor(name) << " survived a clean master Close()";

  // The destructor closes too.
  master = MustOpen(name, ChannelRole::kMaster);
  ASSERT_NE(master, nullptr);
  EXPECT_TRUE(SegmentFileExists(name));
  master.reset();
  EXPECT_FALSE(SegmentFileExists(name));
}

TEST_F(ChannelTest, MasterCloseKeepsTheSegmentWithoutAutoCleanup) {
  const std::string name = NewName();
  ChannelOptions options = Options(ChannelRole::kMaster);
  options.auto_cleanup = false;
  ChannelPtr master = MustOpen(name, options);
  ASSERT_NE(master, nullptr);
  ASSERT_TRUE(master->Write(Bytes("kept"), Soon()).ok());
  const ino_t inode = SegmentInode(name);
  master->Close();
  EXPECT_TRUE(SegmentFileExists(name));
  EXPECT_EQ(SegmentInode(name), inode);

  // The next master reuses it (a vacated role, not a new segment), message included.
  master = MustOpen(name, options);
  ASSERT_NE(master, nullptr);
  EXPECT_EQ(SegmentInode(name), inode);
  EXPECT_EQ(master->stats().epoch, 2u);
  ChannelPtr slave = MustOpen(name, ChannelRole::kSlave);
  ASSERT_NE(slave, nullptr);
  absl::StatusOr<std::string> got = ReadText(*slave);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "kept");
}

TEST_F(ChannelTest, AutoCleanupNeverRemovesASuccessorsSegment) {
  const std::string name = NewName();
  // Without a monitor thread the old master does not re-create the removed name by itself: otherwise it
  // and the new master would race for it, and whichever named its segment first would be the master.
  ChannelOptions old_options = Options(ChannelRole::kMaster);
  old_options.use_threads = false;
  ChannelPtr old_master = MustOpen(name, old_options);
  ASSERT_NE(old_master, nullptr);
  // Someone removes the name; a new master creates a new segment under it.
  ASSERT_TRUE(Segment::Unlink(name).ok());
  ChannelPtr new_master = MustOpen(name, ChannelRole::kMaster);
  ASSERT_NE(new_master, nullptr);
  const ino_t inode = SegmentInode(name);
  ASSERT_NE(inode, 0u);
  old_master->Close();
  EXPECT_EQ(SegmentInode(name), inode) << "the old master's auto_cleanup removed its successor's segment";
}

}  // namespace
}  // namespace eshm
