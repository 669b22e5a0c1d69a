// Frozen peers: the peer is SIGSTOPped for less and for more than stale_threshold_ms, then SIGCONTed,
// under each disconnect behaviour. tests/channel_liveness_test.cc already covers the state transitions
// (kUnresponsive after the threshold, kAlive after SIGCONT) and kImmediately's TryRead/Read failures
// while stale; this suite covers the mode matrix for reads and writes across the freeze, and that no
// message is lost or duplicated by it.
//
// Never asserts timing: "longer than the threshold" means "until the survivor reports kUnresponsive",
// and SIGCONT while an operation waits is sent from a helper thread after the operation has started
// (or at least was about to); the operation must then complete, whenever that is.
//
// The peer is a slave child (forked before the parent opens its Channel) that reads every message and
// answers each "E<n>" with "R<n>:<count of messages received so far>".
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::Bytes;
using eshm_test::Child;
using eshm_test::PeerStateBecomes;
using eshm_test::Pipe;
using eshm_test::Text;

constexpr absl::Duration kWatchdog = absl::Seconds(60);
Deadline Long() { return Deadline::AfterMs(60'000); }

using ChannelPtr = std::unique_ptr<Channel>;

enum class Freeze { kShort, kLong };
struct FrozenParam {
  DisconnectBehavior behavior;
  Freeze freeze;
  bool wait_longer_than_freeze;  // kOnTimeout: reconnect_wait_ms longer than the freeze
};

std::string ParamName(const ::testing::TestParamInfo<FrozenParam>& info) {
  const char* b = info.param.behavior == DisconnectBehavior::kImmediately ? "Immediately"
                  : info.param.behavior == DisconnectBehavior::kOnTimeout ? "OnTimeout"
                                                                          : "Never";
  std::string name = absl::StrCat(b, info.param.freeze == Freeze::kShort ? "_ShortFreeze" : "_LongFreeze");
  if (info.param.behavior == DisconnectBehavior::kOnTimeout && info.param.freeze == Freeze::kLong) {
    absl::StrAppend(&name, info.param.wait_longer_than_freeze ? "_WaitLonger" : "_WaitShorter");
  }
  return name;
}

class FrozenPeerTest : public eshm_test::ChannelTestBase, public ::testing::WithParamInterface<FrozenParam> {
 protected:
  // The echo peer. Exits 0 on "Q".
  Child StartPeer(const std::string& name) {
    return StartChild([name]() -> int {
      ChannelOptions o = Options(ChannelRole::kSlave);
      o.disconnect_behavior = DisconnectBehavior::kNever;
      o.max_reconnect_attempts = 0;
      o.reconnect_retry_interval_ms = 10;
      o.m2s_capacity = kMinRingCapacity;
      o.s2m_capacity = kMinRingCapacity;
      auto channel = Channel::Open(name, o);
      ESHM_CHILD_CHECK_OK(channel);
      std::vector<std::byte> buffer(4096);
      std::uint64_t count = 0;
      for (;;) {
        absl::StatusOr<std::size_t> n = (*channel)->Read(buffer, Deadline::AfterMs(120'000));
        ESHM_CHILD_CHECK_OK(n);
        ++count;
        const std::string text = Text(std::span<const std::byte>(buffer.data(), *n));
        if (text == "Q") return 0;
        if (!text.empty() && text[0] == 'E') {
          const std::string reply = absl::StrCat("R", text.substr(1), ":", count);
          ESHM_CHILD_CHECK_OK((*channel)->Write(Bytes(reply), Deadline::AfterMs(120'000)));
        }
      }
    });
  }

  ChannelPtr OpenSurvivor(const std::string& name, int stale_threshold_ms, int reconnect_wait_ms) {
    ChannelOptions o = Options(ChannelRole::kMaster);
    o.disconnect_behavior = GetParam().behavior;
    o.stale_threshold_ms = stale_threshold_ms;
    o.reconnect_wait_ms = reconnect_wait_ms;
    o.m2s_capacity = kMinRingCapacity;  // small, so the survivor can fill its outgoing ring
    o.s2m_capacity = kMinRingCapacity;
    auto c = Channel::Open(name, o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // Reads one reply "R<n>:<count>"; checks n and returns count (or -1).
  static std::int64_t ReadReply(Channel& c, std::uint64_t n, Deadline deadline, absl::Status* status) {
    std::vector<std::byte> buffer(256);
    absl::StatusOr<std::size_t> got = c.Read(buffer, deadline);
    *status = got.status();
    if (!got.ok()) return -1;
    const std::string text = Text(std::span<const std::byte>(buffer.data(), *got));
    const std::string prefix = absl::StrCat("R", n, ":");
    EXPECT_EQ(text.rfind(prefix, 0), 0u) << "reply " << text << ", expected " << prefix << "...";
    std::int64_t count = -1;
    if (!absl::SimpleAtoi(text.substr(prefix.size()), &count)) return -1;
    return count;
  }
};

// SIGCONTs `pid` from another thread once `started` is set, after a pause that lets the operation begin
// waiting. The pause only makes the interesting interleaving likely; correctness does not depend on it.
class DelayedContinue {
 public:
  DelayedContinue(pid_t pid, std::atomic<bool>& started)
      : thread_([pid, &started] {
          while (!started.load()) eshm_test::SleepMs(1);
          eshm_test::SleepMs(100);
          kill(pid, SIGCONT);
        }) {}
  ~DelayedContinue() { thread_.join(); }

 private:
  std::thread thread_;
};

TEST_P(FrozenPeerTest, ReadsAndWritesAcrossAFreeze) {
  const FrozenParam p = GetParam();
  const bool long_freeze = p.freeze == Freeze::kLong;
  const std::string name = NewName();
  Child peer = StartPeer(name);
  // Short freeze: a threshold far above the freeze (the peer is frozen for a few milliseconds).
  const int threshold_ms = long_freeze ? 150 : 10'000;
  const int reconnect_wait_ms = p.wait_longer_than_freeze ? 60'000 : 100;
  ChannelPtr survivor = OpenSurvivor(name, threshold_ms, reconnect_wait_ms);
  ASSERT_NE(survivor, nullptr);
  Channel& c = *survivor;
  ASSERT_TRUE(PeerStateBecomes(c, PeerState::kAlive, kWatchdog)) << peer.Describe();

  std::uint64_t sent = 0;    // messages the peer must have received
  std::uint64_t request = 0; // E<n> numbering
  absl::Status status;
  // A round trip before the freeze.
  ASSERT_TRUE(c.Write(Bytes(absl::StrCat("E", ++request)), Long()).ok());
  ++sent;
  ASSERT_EQ(ReadReply(c, request, Long(), &status), static_cast<std::int64_t>(sent)) << status;

  ASSERT_EQ(kill(peer.pid(), SIGSTOP), 0);
  bool continued = false;
  if (long_freeze) {
    ASSERT_TRUE(PeerStateBecomes(c, PeerState::kUnresponsive, kWatchdog));
  } else {
    eshm_test::SleepMs(5);
  }
  const bool stale = long_freeze;

  if (stale && p.behavior == DisconnectBehavior::kImmediately) {
    // Everything that involves the peer fails at once, even with room; nothing is written.
    const std::uint64_t written = c.stats().m2s_write_count;
    EXPECT_EQ(c.TryWrite(Bytes("x")), IoResult::kPeerGone);
    EXPECT_EQ(c.TryClaim(8), nullptr);
    EXPECT_EQ(c.Write(Bytes("x"), Long()).code(), absl::StatusCode::kUnavailable);
    std::vector<std::byte> buffer(64);
    EXPECT_EQ(c.Read(buffer, Long()).status().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(c.stats().m2s_write_count, written) << "a failed write wrote";
    ASSERT_EQ(kill(peer.pid(), SIGCONT), 0);
    continued = true;
    ASSERT_TRUE(PeerStateBecomes(c, PeerState::kAlive, kWatchdog));
  } else if (stale && p.behavior == DisconnectBehavior::kOnTimeout && !p.wait_longer_than_freeze) {
    // A write with room queues; a read that must wait gives up after reconnect_wait_ms while the peer is
    // still stopped; after SIGCONT the queued request is answered, nothing lost.
    ASSERT_TRUE(c.Write(Bytes(absl::StrCat("E", ++request)), Long()).ok());
    ++sent;
    std::vector<std::byte> buffer(64);
    const absl::Status read = c.Read(buffer, Long()).status();
    EXPECT_EQ(read.code(), absl::StatusCode::kUnavailable) << read;
    EXPECT_EQ(c.peer_state(), PeerState::kUnresponsive);
    ASSERT_EQ(kill(peer.pid(), SIGCONT), 0);
    continued = true;
    EXPECT_EQ(ReadReply(c, request, Long(), &status), static_cast<std::int64_t>(sent)) << status;
  } else {
    // kNever, kOnTimeout with a long wait, or a freeze shorter than the threshold under any behaviour: a
    // read that waits for the stopped peer completes after SIGCONT.
    ASSERT_TRUE(c.Write(Bytes(absl::StrCat("E", ++request)), Long()).ok());
    ++sent;
    {
      std::atomic<bool> started{false};
      DelayedContinue cont(peer.pid(), started);
      started = true;
      const std::int64_t count = ReadReply(c, request, Long(), &status);
      EXPECT_TRUE(status.ok()) << status << " (peer " << PeerStateName(c.peer_state()) << ")";
      EXPECT_EQ(count, static_cast<std::int64_t>(sent));
    }
    continued = true;
    // And a write that waits for ring space while the peer is stopped completes after SIGCONT (the peer
    // drains the ring then). Fill the ring while it is stopped.
    ASSERT_EQ(kill(peer.pid(), SIGSTOP), 0);
    continued = false;
    if (long_freeze) {
      ASSERT_TRUE(PeerStateBecomes(c, PeerState::kUnresponsive, kWatchdog));
    }
    const std::string filler(200, 'f');
    int queued = 0;
    for (; queued < 1000; ++queued) {
      const IoResult r = c.TryWrite(Bytes(filler));
      if (r == IoResult::kWouldBlock) break;
      ASSERT_EQ(r, IoResult::kOk) << IoResultName(r);
    }
    ASSERT_LT(queued, 1000) << "the ring never filled";
    sent += static_cast<std::uint64_t>(queued);
    {
      std::atomic<bool> started{false};
      DelayedContinue cont(peer.pid(), started);
      started = true;
      const absl::Status w = c.Write(Bytes(absl::StrCat("E", ++request)), Long());
      EXPECT_TRUE(w.ok()) << w << " (peer " << PeerStateName(c.peer_state()) << ")";
      ++sent;
    }
    continued = true;
    EXPECT_EQ(ReadReply(c, request, Long(), &status), static_cast<std::int64_t>(sent)) << status;
  }
  if (!continued) kill(peer.pid(), SIGCONT);

  // The connection works afterwards, and the peer received every message exactly once.
  ASSERT_TRUE(PeerStateBecomes(c, PeerState::kAlive, kWatchdog));
  ASSERT_TRUE(c.Write(Bytes(absl::StrCat("E", ++request)), Long()).ok());
  ++sent;
  EXPECT_EQ(ReadReply(c, request, Long(), &status), static_cast<std::int64_t>(sent)) << status;
  ASSERT_TRUE(c.Write(Bytes("Q"), Long()).ok());
  EXPECT_TRUE(eshm_test::WaitForChild(peer, kWatchdog));
}

INSTANTIATE_TEST_SUITE_P(
    Matrix, FrozenPeerTest,
    ::testing::Values(FrozenParam{DisconnectBehavior::kImmediately, Freeze::kShort, false},
                      FrozenParam{DisconnectBehavior::kImmediately, Freeze::kLong, false},
                      FrozenParam{DisconnectBehavior::kOnTimeout, Freeze::kShort, true},
                      FrozenParam{DisconnectBehavior::kOnTimeout, Freeze::kLong, false},
                      FrozenParam{DisconnectBehavior::kOnTimeout, Freeze::kLong, true},
                      FrozenParam{DisconnectBehavior::kNever, Freeze::kShort, false},
                      FrozenParam{DisconnectBehavior::kNever, Freeze::kLong, false}),
    ParamName);

}  // namespace
}  // namespace eshm
