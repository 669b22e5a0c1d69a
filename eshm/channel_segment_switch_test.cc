// What a move to a new segment does to what the write side holds and has not published yet: messages
// staged with Publish::kDeferred (one by one, or by a WriteBatch in progress) and an open zero-copy claim.
// The move happens when the name is removed and the master re-creates it (the slave follows), or when the
// master is replaced by one in a new segment (the slave follows). Nothing the user wrote may vanish: it
// reaches the reader on the new segment, in order, or the writer is told (IoResult::kLost).
//
// Both endpoints live in this process (each Channel has its own open file description, so the role locks
// behave as between processes).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/segment.h"
#include "gtest/gtest.h"

namespace eshm {
namespace {

using ChannelPtr = std::unique_ptr<Channel>;

std::span<const std::byte> Bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

// Polls `condition` every millisecond for up to 10 s.
bool WaitFor(const std::function<bool()>& condition) {
  const Deadline watchdog = Deadline::AfterMs(10'000);
  while (!condition()) {
    if (watchdog.Expired()) return false;
    usleep(1000);
  }
  return true;
}

class SegmentSwitchTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const std::string& name : names_) (void)Segment::Unlink(name);
  }

  std::string NewName(const char* tag) {
    static int counter = 0;
    names_.push_back(absl::StrCat("switch_", tag, "_", getpid(), "_", counter++));
    return names_.back();
  }

  static ChannelOptions Options(ChannelRole role) {
    ChannelOptions options;
    options.role = role;
    options.m2s_capacity = options.s2m_capacity = 64 * 1024;
    options.reconnect_retry_interval_ms = 5;
    options.max_reconnect_attempts = 0;
    return options;
  }

  static ChannelPtr OpenOrDie(const std::string& name, const ChannelOptions& options) {
    auto channel = Channel::Open(name, options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return channel.ok() ? *std::move(channel) : nullptr;
  }

  // Removes the name (as `rm /dev/shm/eshm_<name>` would) and waits until the master has moved to the segment
  // it re-creates, the slave has followed, and the slave's read side (after draining the old segment) reads
  // the new one. From then on, anything the master publishes in the old segment is lost.
  static void MoveToARecreatedSegment(const std::string& name, Channel& master, Channel& slave) {
    const std::uint64_t master_moves = master.stats().reconnect_count;
    const std::uint64_t slave_moves = slave.stats().reconnect_count;
    ASSERT_TRUE(Segment::Unlink(name).ok());
    ASSERT_TRUE(WaitFor([&] { return master.stats().reconnect_count > master_moves; })) << "the master did not move";
    ASSERT_TRUE(WaitFor([&] { return slave.stats().reconnect_count > slave_moves; })) << "the slave did not follow";
  }

  static std::string Read(Channel& channel) {
    std::vector<std::byte> buffer(8192);
    absl::StatusOr<std::size_t> size = channel.Read(buffer, Deadline::AfterMs(5000));
    if (!size.ok()) return absl::StrCat("<", size.status().ToString(), ">");
    return std::string(reinterpret_cast<const char*>(buffer.data()), *size);
  }

  // Drains what the slave can read now (the old segment's messages), so that its read side moves on.
  static std::vector<std::string> DrainNow(Channel& slave) {
    std::vector<std::string> got;
    std::vector<std::byte> buffer(8192);
    std::size_t size = 0;
    while (slave.TryRead(buffer, &size) == IoResult::kOk) {
      got.emplace_back(reinterpret_cast<const char*>(buffer.data()), size);
    }
    return got;
  }

  std::vector<std::string> names_;
};

TEST_F(SegmentSwitchTest, DeferredWritesReachTheRecreatedSegmentAtTheNextFlush) {
  const std::string name = NewName("flush");
  ChannelPtr master = OpenOrDie(name, Options(ChannelRole::kMaster));
  ChannelPtr slave = OpenOrDie(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(master && slave);
  ASSERT_TRUE(master->Write(Bytes("published"), Deadline::AfterMs(1000)).ok());
  ASSERT_EQ(master->TryWrite(Bytes("deferred 1"), Publish::kDeferred), IoResult::kOk);
  ASSERT_TRUE(master->Write(Bytes("deferred 2"), Deadline::AfterMs(1000), Publish::kDeferred).ok());

  MoveToARecreatedSegment(name, *master, *slave);
  EXPECT_EQ(DrainNow(*slave), std::vector<std::string>{"published"}) << "the old segment's message, once";
  EXPECT_EQ(master->Flush(), IoResult::kOk);
  EXPECT_EQ(Read(*slave), "deferred 1");
  EXPECT_EQ(Read(*slave), "deferred 2");
  ASSERT_TRUE(master->Write(Bytes("after"), Deadline::AfterMs(1000)).ok());
  EXPECT_EQ(Read(*slave), "after");
}

TEST_F(SegmentSwitchTest, DeferredWritesGoBeforeTheNextWriteAfterTheMove) {
  const std::string name = NewName("next_write");
  ChannelPtr master = OpenOrDie(name, Options(ChannelRole::kMaster));
  ChannelPtr slave = OpenOrDie(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(master && slave);
  ASSERT_EQ(master->TryWrite(Bytes("deferred 1"), Publish::kDeferred), IoResult::kOk);
  ASSERT_EQ(master->TryWrite(Bytes("deferred 2"), Publish::kDeferred), IoResult::kOk);

  MoveToARecreatedSegment(name, *master, *slave);
  EXPECT_EQ(DrainNow(*slave), std::vector<std::string>{});
  ASSERT_EQ(master->TryWrite(Bytes("now")), IoResult::kOk);
  EXPECT_EQ(Read(*slave), "deferred 1");
  EXPECT_EQ(Read(*slave), "deferred 2");
  EXPECT_EQ(Read(*slave), "now");
}

TEST_F(SegmentSwitchTest, ClaimOpenAcrossTheMoveIsSentToTheNewSegment) {
  const std::string name = NewName("claim");
  ChannelPtr master = OpenOrDie(name, Options(ChannelRole::kMaster));
  ChannelPtr slave = OpenOrDie(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(master && slave);
  ASSERT_EQ(master->TryWrite(Bytes("deferred"), Publish::kDeferred), IoResult::kOk);
  const std::string text = "written in place before the move";
  std::byte* claim = master->TryClaim(100);
  ASSERT_NE(claim, nullptr);
  std::memcpy(claim, text.data(), text.size());

  MoveToARecreatedSegment(name, *master, *slave);
  EXPECT_EQ(DrainNow(*slave), std::vector<std::string>{});
  EXPECT_EQ(master->Commit(text.size()), IoResult::kOk);
  EXPECT_EQ(Read(*slave), "deferred");
  EXPECT_EQ(Read(*slave), text);
  // The write side carries on in the new segment, claims included.
  std::byte* next = master->TryClaim(10);
  ASSERT_NE(next, nullptr);
  std::memcpy(next, "next", 4);
  EXPECT_EQ(master->Commit(4), IoResult::kOk);
  EXPECT_EQ(Read(*slave), "next");
}

TEST_F(SegmentSwitchTest, AbortedClaimAcrossTheMoveSendsNothingButWhatWasStaged) {
  const std::string name = NewName("abort");
  ChannelPtr master = OpenOrDie(name, Options(ChannelRole::kMaster));
  ChannelPtr slave = OpenOrDie(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(master && slave);
  ASSERT_EQ(master->TryWrite(Bytes("deferred"), Publish::kDeferred), IoResult::kOk);
  std::byte* claim = master->TryClaim(100);
  ASSERT_NE(claim, nullptr);
  std::memcpy(claim, "aborted", 7);

  MoveToARecreatedSegment(name, *master, *slave);
  EXPECT_EQ(DrainNow(*slave), std::vector<std::string>{});
  master->Abort();
  ASSERT_TRUE(master->Write(Bytes("now"), Deadline::AfterMs(1000)).ok());
  EXPECT_EQ(Read(*slave), "deferred");
  EXPECT_EQ(Read(*slave), "now");
}

// The slave's staged messages follow it to a new master's segment (the old master closed and removed the
// name; nobody will read the old segment again).
TEST_F(SegmentSwitchTest, SlavesDeferredWritesReachTheNewMaster) {
  const std::string name = NewName("slave");
  ChannelPtr first = OpenOrDie(name, Options(ChannelRole::kMaster));
  ChannelPtr slave = OpenOrDie(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(first && slave);
  ASSERT_EQ(slave->TryWrite(Bytes("to whichever master"), Publish::kDeferred), IoResult::kOk);
  first->Close();  // auto_cleanup removes the name
  const std::uint64_t moves = slave->stats().reconnect_count;
  ChannelPtr second = OpenOrDie(name, Options(ChannelRole::kMaster));
  ASSERT_TRUE(second);
  ASSERT_TRUE(WaitFor([&] { return slave->stats().reconnect_count > moves; })) << "the slave did not follow";
  EXPECT_EQ(slave->Flush(), IoResult::kOk);
  EXPECT_EQ(Read(*second), "to whichever master");
}

// A writer streaming (every path: Write, TryWrite, claims, deferred writes with Flush) while the master
// moves three times under it, with the monitor thread moving it between any two instructions of a write:
// every message arrives once and in order. A write in progress when the master moves publishes into the old
// segment, and the slave must still find it there: the master holds its old role until the write side has
// moved on or is between calls.
TEST_F(SegmentSwitchTest, StreamingThroughMovesLosesAndRepeatsNothing) {
  const std::string name = NewName("stream");
  ChannelPtr master = OpenOrDie(name, Options(ChannelRole::kMaster));
  ChannelPtr slave = OpenOrDie(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(master && slave);
  constexpr std::uint64_t kEnd = ~std::uint64_t{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::string writer_error;
  std::string reader_error;
  std::uint64_t sent = 0;
  std::thread writer([&] {
    auto seq_message = [](std::uint64_t seq) {
      std::vector<std::byte> m(24);
      std::memcpy(m.data(), &seq, sizeof seq);
      return m;
    };
    auto fail = [&](const std::string& what) {
      writer_error = absl::StrCat("message ", sent, ": ", what);
      failed.store(true);
    };
    while (!stop.load() && !failed.load()) {
      const std::vector<std::byte> m = seq_message(sent);
      switch (sent % 4) {
        case 0:
          if (absl::Status s = master->Write(m, Deadline::AfterMs(10'000)); !s.ok()) return fail(s.ToString());
          break;
        case 1: {
          IoResult r;
          const Deadline watchdog = Deadline::AfterMs(10'000);
          while ((r = master->TryWrite(m)) == IoResult::kWouldBlock && !watchdog.Expired() && !failed.load()) {
            std::this_thread::yield();
          }
          if (r != IoResult::kOk) return fail(IoResultName(r));
          break;
        }
        case 2: {
          std::byte* claim = nullptr;
          const Deadline watchdog = Deadline::AfterMs(10'000);
          while ((claim = master->TryClaim(m.size())) == nullptr && !watchdog.Expired() && !failed.load()) {
            std::this_thread::yield();
          }
          if (claim == nullptr) return fail("no room for a claim");
          std::memcpy(claim, m.data(), m.size());
          if (IoResult r = master->Commit(m.size()); r != IoResult::kOk) return fail(IoResultName(r));
          break;
        }
        case 3: {
          if (absl::Status s = master->Write(m, Deadline::AfterMs(10'000), Publish::kDeferred); !s.ok()) {
            return fail(s.ToString());
          }
          if (IoResult r = master->Flush(); r != IoResult::kOk) return fail(IoResultName(r));
          break;
        }
      }
      ++sent;
    }
    std::vector<std::byte> end(24);
    std::memcpy(end.data(), &kEnd, sizeof kEnd);
    if (absl::Status s = master->Write(end, Deadline::AfterMs(10'000)); !s.ok()) fail(s.ToString());
  });
  std::uint64_t received = 0;
  std::thread reader([&] {
    std::vector<std::byte> buffer(64);
    for (;;) {
      absl::StatusOr<std::size_t> size = slave->Read(buffer, Deadline::AfterMs(10'000));
      std::uint64_t seq = 0;
      if (!size.ok() || *size != 24) {
        reader_error = absl::StrCat("after ", received, ": ", size.status().ToString());
        failed.store(true);
        return;
      }
      std::memcpy(&seq, buffer.data(), sizeof seq);
      if (seq == kEnd) return;
      if (seq != received) {
        reader_error = absl::StrCat("message ", seq, " where ", received, " was due (",
                                    seq > received ? "lost" : "repeated", ")");
        failed.store(true);
        return;
      }
      ++received;
    }
  });
  for (int move = 0; move < 3 && !failed.load(); ++move) {
    usleep(20'000);
    MoveToARecreatedSegment(name, *master, *slave);
    if (HasFatalFailure()) break;
  }
  usleep(20'000);
  stop.store(true);
  writer.join();
  reader.join();
  EXPECT_FALSE(failed.load()) << "writer: " << writer_error << "; reader: " << reader_error;
  EXPECT_EQ(received, sent);
}

// A new master with smaller messages: what the slave staged before following cannot all be carried. The
// first message that does not fit and those after it are dropped, and the slave is told; what fit arrives.
TEST_F(SegmentSwitchTest, MessagesTheNewSegmentCannotTakeAreReported) {
  const std::string name = NewName("smaller");
  ChannelPtr first = OpenOrDie(name, Options(ChannelRole::kMaster));
  ChannelPtr slave = OpenOrDie(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(first && slave);
  const std::string big(3000, 'b');
  ASSERT_EQ(slave->TryWrite(Bytes("fits"), Publish::kDeferred), IoResult::kOk);
  ASSERT_EQ(slave->TryWrite(Bytes(big), Publish::kDeferred), IoResult::kOk);
  ASSERT_EQ(slave->TryWrite(Bytes("after the big one"), Publish::kDeferred), IoResult::kOk);
  first->Close();
  const std::uint64_t moves = slave->stats().reconnect_count;
  ChannelOptions smaller = Options(ChannelRole::kMaster);
  smaller.s2m_capacity = 4096;  // messages of at most 2032 bytes
  ChannelPtr second = OpenOrDie(name, smaller);
  ASSERT_TRUE(second);
  ASSERT_TRUE(WaitFor([&] { return slave->stats().reconnect_count > moves; })) << "the slave did not follow";

  EXPECT_EQ(slave->TryWrite(Bytes("next")), IoResult::kLost) << "the loss is reported, and `next` not sent";
  const absl::Status lost = slave->StatusOf(IoResult::kLost);
  EXPECT_EQ(lost.code(), absl::StatusCode::kDataLoss) << lost;
  EXPECT_NE(lost.message().find("2 message(s)"), std::string_view::npos) << lost;
  EXPECT_EQ(slave->TryWrite(Bytes("next")), IoResult::kOk) << "reported once";
  EXPECT_EQ(Read(*second), "fits");
  EXPECT_EQ(Read(*second), "next");
}

TEST_F(SegmentSwitchTest, ClaimTheNewSegmentCannotTakeIsReportedByCommit) {
  const std::string name = NewName("smaller_claim");
  ChannelPtr first = OpenOrDie(name, Options(ChannelRole::kMaster));
  ChannelPtr slave = OpenOrDie(name, Options(ChannelRole::kSlave));
  ASSERT_TRUE(first && slave);
  std::byte* claim = slave->TryClaim(3000);
  ASSERT_NE(claim, nullptr);
  std::memset(claim, 'c', 3000);
  first->Close();
  const std::uint64_t moves = slave->stats().reconnect_count;
  ChannelOptions smaller = Options(ChannelRole::kMaster);
  smaller.s2m_capacity = 4096;
  ChannelPtr second = OpenOrDie(name, smaller);
  ASSERT_TRUE(second);
  ASSERT_TRUE(WaitFor([&] { return slave->stats().reconnect_count > moves; })) << "the slave did not follow";
  std::size_t size = 0;
  std::byte buffer[8];
  ASSERT_EQ(second->TryRead(buffer, &size), IoResult::kWouldBlock);  // (the slave's write side moves at its next call)

  EXPECT_EQ(slave->Commit(3000), IoResult::kLost);
  EXPECT_NE(slave->StatusOf(IoResult::kLost).message().find("1 message(s)"), std::string_view::npos);
  EXPECT_EQ(second->TryRead(buffer, &size), IoResult::kWouldBlock) << "nothing of the claim arrives";
  std::byte* next = slave->TryClaim(100);
  ASSERT_NE(next, nullptr);
  std::memcpy(next, "next", 4);
  EXPECT_EQ(slave->Commit(4), IoResult::kOk);
  EXPECT_EQ(Read(*second), "next");
}

// A WriteBatch running while the master moves (twice): every message arrives, once and in order. The
// master has no monitor thread, so it moves inside one of its own writes, at whichever message of a batch
// crosses the retry interval: in the middle of a batch, with messages staged. Its ring is large enough never
// to fill meanwhile (a full ring publishes what is staged before it waits, which would hide the loss).
TEST_F(SegmentSwitchTest, WriteBatchesSpanningMovesLoseNothing) {
  const std::string name = NewName("batch");
  ChannelOptions master_options = Options(ChannelRole::kMaster);
  master_options.use_threads = false;
  master_options.reconnect_retry_interval_ms = 1;
  master_options.m2s_capacity = 16 << 20;
  ChannelOptions slave_options = Options(ChannelRole::kSlave);
  slave_options.reconnect_retry_interval_ms = 1;
  ChannelPtr master = OpenOrDie(name, master_options);
  ChannelPtr slave = OpenOrDie(name, slave_options);
  ASSERT_TRUE(master && slave);
  constexpr std::size_t kBatch = 256;
  constexpr std::uint64_t kEnd = ~std::uint64_t{0};
  std::atomic<bool> reader_failed{false};
  std::atomic<std::uint64_t> received{0};
  std::string reader_error;
  std::thread reader([&] {
    std::vector<std::byte> buffer(64);
    for (;;) {
      absl::StatusOr<std::size_t> size = slave->Read(buffer, Deadline::AfterMs(10'000));
      std::uint64_t seq = 0;
      if (!size.ok() || *size != 40) {
        reader_error = absl::StrCat("after ", received.load(), " messages: ", size.status().ToString(), " size ",
                                    size.ok() ? *size : 0);
        reader_failed.store(true);
        return;
      }
      std::memcpy(&seq, buffer.data(), sizeof seq);
      if (seq == kEnd) return;
      if (seq != received.load()) {
        reader_error = absl::StrCat("message ", seq, " where ", received.load(), " was due (",
                                    seq > received.load() ? "lost" : "repeated", ")");
        reader_failed.store(true);
        return;
      }
      received.fetch_add(1);
    }
  });

  std::uint64_t sent = 0;
  std::vector<std::vector<std::byte>> owned(kBatch, std::vector<std::byte>(40));
  std::vector<std::span<const std::byte>> batch(owned.begin(), owned.end());
  auto write_batch = [&] {
    for (std::vector<std::byte>& m : owned) {
      std::memcpy(m.data(), &sent, sizeof sent);
      ++sent;
    }
    absl::StatusOr<std::size_t> written = master->WriteBatch(batch, Deadline::AfterMs(10'000));
    ASSERT_TRUE(written.ok()) << written.status();
    ASSERT_EQ(*written, kBatch);
  };
  for (int move = 0; move < 2 && !reader_failed.load(); ++move) {
    const std::uint64_t master_moves = master->stats().reconnect_count;
    const std::uint64_t slave_moves = slave->stats().reconnect_count;
    for (int i = 0; i < 20; ++i) write_batch();
    // Caught up, so that the ring has room for everything written until the master moves.
    ASSERT_TRUE(WaitFor([&] { return received.load() == sent || reader_failed.load(); }));
    // Let the master look at its name now (a read-side call runs its inline monitor), so that its next look,
    // the one that finds the name gone, comes a retry interval into the batches below, not at their start.
    usleep(2000);
    std::byte none[8];
    std::size_t size = 0;
    ASSERT_EQ(master->TryRead(none, &size), IoResult::kWouldBlock);
    ASSERT_TRUE(Segment::Unlink(name).ok());
    const Deadline watchdog = Deadline::AfterMs(10'000);
    while (master->stats().reconnect_count == master_moves && !reader_failed.load()) {
      ASSERT_FALSE(watchdog.Expired()) << "the master did not move";
      write_batch();
    }
    while (slave->stats().reconnect_count == slave_moves && !reader_failed.load()) {
      ASSERT_FALSE(watchdog.Expired()) << "the slave did not follow";
      write_batch();
      usleep(100);
    }
    for (int i = 0; i < 20; ++i) write_batch();
  }
  std::vector<std::byte> end(40);
  std::memcpy(end.data(), &kEnd, sizeof kEnd);
  ASSERT_TRUE(master->Write(end, Deadline::AfterMs(10'000)).ok());
  reader.join();
  EXPECT_FALSE(reader_failed.load()) << reader_error;
  EXPECT_EQ(received.load(), sent);
}

}  // namespace
}  // namespace eshm
