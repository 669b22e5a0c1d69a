// What ends a blocking call early: Shutdown() from another thread, and the caller's wait_check. And the
// blocking Claim, which waits as Write does. Both endpoints in one process.
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "gtest/gtest.h"

namespace eshm {
namespace {

std::string UniqueName(const char* test) {
  static int counter = 0;
  return absl::StrCat("wait_", test, "_", getpid(), "_", counter++);
}

std::span<const std::byte> Bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

ChannelOptions WithRole(ChannelRole role) {
  ChannelOptions options;
  options.role = role;
  options.m2s_capacity = options.s2m_capacity = 4096;
  return options;
}

struct Pair {
  std::unique_ptr<Channel> master;
  std::unique_ptr<Channel> slave;
};

Pair OpenPair(const std::string& name, ChannelOptions master_options = WithRole(ChannelRole::kMaster),
              ChannelOptions slave_options = WithRole(ChannelRole::kSlave)) {
  Pair pair;
  auto master = Channel::Open(name, master_options);
  EXPECT_TRUE(master.ok()) << master.status();
  auto slave = Channel::Open(name, slave_options);
  EXPECT_TRUE(slave.ok()) << slave.status();
  if (master.ok()) pair.master = *std::move(master);
  if (slave.ok()) pair.slave = *std::move(slave);
  return pair;
}

// Fills the master's outgoing ring; returns how many messages it took.
int Fill(Channel& writer) {
  const std::string message(200, 'x');
  int n = 0;
  while (writer.TryWrite(Bytes(message)) == IoResult::kOk) ++n;
  return n;
}

// Runs `call` on another thread, Shutdown()s `channel` once the call is waiting, and returns the call's
// status and how long it took after the shutdown. The call's own deadline is far away.
template <typename Call>
std::pair<absl::Status, std::int64_t> StatusAfterShutdown(Channel& channel, Call call) {
  std::atomic<bool> started{false};
  absl::Status status;
  std::thread waiter([&] {
    started.store(true);
    status = call();
  });
  while (!started.load()) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // into its sleep
  const std::int64_t shutdown_ns = MonotonicNowNs();
  channel.Shutdown();
  waiter.join();
  return {status, MonotonicNowNs() - shutdown_ns};
}

constexpr int kFarMs = 30'000;

TEST(ChannelWaitTest, ShutdownEndsABlockedReadAndLosesNothing) {
  Pair pair = OpenPair(UniqueName("read"));
  ASSERT_NE(pair.slave, nullptr);
  std::string buffer(4096, '\0');
  auto [status, took_ns] = StatusAfterShutdown(*pair.slave, [&] {
    return pair.slave->Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(kFarMs)).status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_NE(status.message().find("shutting down"), std::string_view::npos) << status;
  // Woken, not found at a slice's end (10 ms): well under a second even on a loaded machine.
  EXPECT_LT(took_ns, 1'000'000'000);
  // A later wait ends at once; the non-blocking calls still work, and what arrives is still there.
  ASSERT_EQ(pair.master->TryWrite(Bytes("kept")), IoResult::kOk);
  std::size_t size = 0;
  ASSERT_EQ(pair.slave->TryRead(std::as_writable_bytes(std::span(buffer)), &size), IoResult::kOk);
  EXPECT_EQ(buffer.substr(0, size), "kept");
  auto later = pair.slave->Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(kFarMs));
  EXPECT_EQ(later.status().code(), absl::StatusCode::kCancelled) << later.status();
  pair.slave->Shutdown();  // idempotent
  pair.slave->Close();
  pair.master->Close();
}

TEST(ChannelWaitTest, ShutdownEndsABlockedWriteAndClaimOnAFullRing) {
  Pair pair = OpenPair(UniqueName("write"));
  ASSERT_NE(pair.master, nullptr);
  const int queued = Fill(*pair.master);
  ASSERT_GT(queued, 0);
  auto [status, took_ns] = StatusAfterShutdown(*pair.master, [&] {
    return pair.master->Write(Bytes(std::string(200, 'y')), Deadline::AfterMs(kFarMs));
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_LT(took_ns, 1'000'000'000);
  auto claim = pair.master->Claim(200, Deadline::AfterMs(kFarMs));
  EXPECT_EQ(claim.status().code(), absl::StatusCode::kCancelled) << claim.status();
  // Nothing was lost or half-written: the reader gets exactly the messages queued before.
  std::string buffer(4096, '\0');
  std::size_t size = 0;
  int read = 0;
  while (pair.slave->TryRead(std::as_writable_bytes(std::span(buffer)), &size) == IoResult::kOk) {
    EXPECT_EQ(buffer.substr(0, size), std::string(200, 'x'));
    ++read;
  }
  EXPECT_EQ(read, queued);
}

TEST(ChannelWaitTest, ShutdownEndsAWaitForAPeer) {
  // A master alone: a read waits for a slave to attach (as long as its deadline allows).
  auto master = Channel::Open(UniqueName("peer"), WithRole(ChannelRole::kMaster));
  ASSERT_TRUE(master.ok()) << master.status();
  std::string buffer(64, '\0');
  auto [status, took_ns] = StatusAfterShutdown(**master, [&] {
    return (*master)->Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(kFarMs)).status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_LT(took_ns, 1'000'000'000);
}

TEST(ChannelWaitTest, WaitCheckEndsEveryKindOfWaitWithItsStatus) {
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0};
  ChannelOptions options = WithRole(ChannelRole::kMaster);
  options.wait_check = [&] {
    calls.fetch_add(1);
    return stop.load() ? absl::AbortedError("stopped by the caller") : absl::OkStatus();
  };
  const std::string name = UniqueName("check");
  auto master = Channel::Open(name, options);
  ASSERT_TRUE(master.ok()) << master.status();
  Channel& ch = **master;
  std::string buffer(64, '\0');
  auto ends_with_check = [&](auto call, const char* what) {
    stop.store(false);
    calls.store(0);
    std::thread waiter([&] {
      const absl::Status status = call();
      EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << what << ": " << status;
      EXPECT_EQ(status.message(), "stopped by the caller") << what;
    });
    while (calls.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    stop.store(true);
    waiter.join();
  };
  // Waiting for a slave to attach.
  ends_with_check([&] { return ch.Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(kFarMs)).status(); },
                  "read without a peer");
  auto slave = Channel::Open(name, WithRole(ChannelRole::kSlave));
  ASSERT_TRUE(slave.ok()) << slave.status();
  // Waiting on the ring: empty, then full.
  ends_with_check([&] { return ch.Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(kFarMs)).status(); },
                  "read from an empty ring");
  Fill(ch);
  ends_with_check([&] { return ch.Write(Bytes(std::string(200, 'z')), Deadline::AfterMs(kFarMs)); },
                  "write to a full ring");
  ends_with_check([&] { return ch.Claim(200, Deadline::AfterMs(kFarMs)).status(); }, "claim on a full ring");
}

TEST(ChannelWaitTest, WaitCheckRunsEveryFewMillisecondsEvenWhileSpinning) {
  // The check is for slow things (a binding takes its interpreter's lock in it): a spinning wait, which
  // polls every few microseconds, must not call it at that rate, and a sleeping one must call it.
  for (const WaitStrategy wait : {WaitStrategy::Spin(), WaitStrategy::Sleep()}) {
    std::atomic<int> calls{0};
    ChannelOptions options = WithRole(ChannelRole::kMaster);
    options.wait = wait;
    options.wait_check = [&] {
      calls.fetch_add(1);
      return absl::OkStatus();
    };
    const std::string name = UniqueName("rate");
    auto master = Channel::Open(name, options);
    ASSERT_TRUE(master.ok()) << master.status();
    auto slave = Channel::Open(name, WithRole(ChannelRole::kSlave));
    ASSERT_TRUE(slave.ok()) << slave.status();
    std::string buffer(64, '\0');
    const std::int64_t start = MonotonicNowNs();
    auto got = (*master)->Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(300));
    const std::int64_t waited_ms = (MonotonicNowNs() - start) / 1'000'000;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded) << got.status();
    // kWaitCheckIntervalNs is 10 ms: about 30 calls; a starved thread makes fewer, never many more.
    EXPECT_GE(calls.load(), 3) << "spin=" << wait.allow_sleep;
    EXPECT_LE(calls.load(), waited_ms / 10 + 2) << "spin=" << wait.allow_sleep;
  }
}

TEST(ChannelWaitTest, ClaimWaitsForRoomAndForTheDeadline) {
  Pair pair = OpenPair(UniqueName("claim"));
  ASSERT_NE(pair.master, nullptr);
  Channel& writer = *pair.master;
  // Room now: a claim at once, and a second one while it is open is refused.
  auto first = writer.Claim(100, Deadline::AfterMs(kFarMs));
  ASSERT_TRUE(first.ok()) << first.status();
  std::memset(*first, 'a', 100);
  auto second = writer.Claim(100, Deadline::AfterMs(kFarMs));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  ASSERT_EQ(writer.Commit(100), IoResult::kOk);
  // Larger than any message: refused at once, not waited for.
  auto huge = writer.Claim(writer.max_message_bytes() + 1, Deadline::AfterMs(kFarMs));
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument) << huge.status();
  // A full ring: the deadline passes, then a reader frees room and a waiting claim gets it.
  const int queued = Fill(writer);
  auto late = writer.Claim(200, Deadline::AfterMs(50));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
  std::thread reader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string buffer(4096, '\0');
    std::size_t size = 0;
    // Two messages: the 100-byte one alone may not free room for 200 bytes.
    EXPECT_EQ(pair.slave->TryRead(std::as_writable_bytes(std::span(buffer)), &size), IoResult::kOk);
    EXPECT_EQ(buffer.substr(0, size), std::string(100, 'a'));
    EXPECT_EQ(pair.slave->TryRead(std::as_writable_bytes(std::span(buffer)), &size), IoResult::kOk);
    EXPECT_EQ(buffer.substr(0, size), std::string(200, 'x'));
  });
  auto waited = writer.Claim(200, Deadline::AfterMs(kFarMs));
  reader.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  std::memset(*waited, 'c', 200);
  ASSERT_EQ(writer.Commit(200), IoResult::kOk);
  // Everything in order: the rest of the queued ones, then the claimed one.
  std::string buffer(4096, '\0');
  for (int i = 1; i < queued; ++i) {
    auto size = pair.slave->Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(1000));
    ASSERT_TRUE(size.ok()) << size.status();
    EXPECT_EQ(buffer.substr(0, *size), std::string(200, 'x'));
  }
  auto size = pair.slave->Read(std::as_writable_bytes(std::span(buffer)), Deadline::AfterMs(1000));
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(buffer.substr(0, *size), std::string(200, 'c'));
}

TEST(ChannelWaitTest, ClaimUnderImmediatelyFailsAtOnceWithoutAPeer) {
  ChannelOptions options = WithRole(ChannelRole::kMaster);
  options.disconnect_behavior = DisconnectBehavior::kImmediately;
  auto master = Channel::Open(UniqueName("immediately"), options);
  ASSERT_TRUE(master.ok()) << master.status();
  auto claim = (*master)->Claim(10, Deadline::AfterMs(kFarMs));
  EXPECT_EQ(claim.status().code(), absl::StatusCode::kUnavailable) << claim.status();
}

// A Timeout (Deadline::TimeoutMs) is a per-call timeout: made once, given to every call, counted by each
// from its first wait. Every kind of wait honours it: not before its length (a Timeout made long ago is not
// already spent), and not much after (a wait that restarted it at each slice or retry would never end).
TEST(ChannelWaitTest, ATimeoutGivenToEveryCallEndsEachWaitAfterItsLength) {
  constexpr std::int64_t kTimeoutMs = 60;
  const Deadline per_call = Deadline::TimeoutMs(kTimeoutMs);
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kTimeoutMs));
  auto expect_one_timeout = [&](const char* what, auto&& call) {
    SCOPED_TRACE(what);
    const std::int64_t start = MonotonicNowNs();
    const absl::Status status = call();
    const std::int64_t waited_ms = (MonotonicNowNs() - start) / 1'000'000;
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
    EXPECT_GE(waited_ms, kTimeoutMs);
    EXPECT_LT(waited_ms, kTimeoutMs + 3000);
  };
  std::string buffer(4096, '\0');
  const auto into = std::as_writable_bytes(std::span(buffer));
  {
    // No slave yet: the master's read waits for one to attach.
    ChannelOptions options = WithRole(ChannelRole::kMaster);
    auto alone = Channel::Open(UniqueName("timeout_alone"), options);
    ASSERT_TRUE(alone.ok()) << alone.status();
    expect_one_timeout("Read, no peer", [&] { return (*alone)->Read(into, per_call).status(); });
  }
  Pair pair = OpenPair(UniqueName("timeout"));
  ASSERT_NE(pair.master, nullptr);
  ASSERT_NE(pair.slave, nullptr);
  expect_one_timeout("Read", [&] { return pair.slave->Read(into, per_call).status(); });
  expect_one_timeout("Peek", [&] { return pair.slave->Peek(per_call).status(); });
  const int queued = Fill(*pair.master);
  const std::string message(200, 'y');
  expect_one_timeout("Write", [&] { return pair.master->Write(Bytes(message), per_call); });
  expect_one_timeout("Claim", [&] { return pair.master->Claim(200, per_call).status(); });
  const std::span<const std::byte> batch[] = {Bytes(message), Bytes(message)};
  expect_one_timeout("WriteBatch", [&] { return pair.master->WriteBatch(batch, per_call).status(); });
  // A call that need not wait completes with the same Timeout, and nothing was lost on the way.
  for (int i = 0; i < queued; ++i) {
    auto size = pair.slave->Read(into, per_call);
    ASSERT_TRUE(size.ok()) << size.status();
    EXPECT_EQ(buffer.substr(0, *size), std::string(200, 'x'));
  }
  EXPECT_EQ(pair.master->Write(Bytes(message), per_call), absl::OkStatus());
  auto size = pair.slave->Read(into, per_call);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(buffer.substr(0, *size), message);
}

}  // namespace
}  // namespace eshm
