// Hostile peers: a process maps the segment and scribbles over it (random bytes at random offsets, and
// targeted corruption: huge lengths, bad kinds, commit words set to plausible positions, hostile heads and
// tails, segment-header and role-control garbage) while the other side reads and writes, through a raw
// RingProducer/RingConsumer and through a Channel. The victim must report corruption (kCorrupt /
// DataLoss) or disconnect cleanly; never crash (ASan catches out-of-bounds accesses), never hang
// (watchdogs, deadlines on every blocking call), never write outside its own ring. A scribbler that
// ftruncates the file mid-traffic must turn into DataLoss via the SIGBUS guard, not a crash.
//
// Everything forks before any Channel is opened (see channel_test_util.h).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/segment.h"
#include "gtest/gtest.h"
#include "tests/channel_test_util.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::Child;
using eshm_test::NowNs;
using eshm_test::SleepMs;

constexpr absl::Duration kWatchdog = absl::Seconds(120);
constexpr std::uint64_t kRing = 16 * 1024;

struct Flags {
  std::atomic<int> stop;
  std::atomic<std::uint64_t> scribbles;
};

Flags* MakeFlags() {
  void* p = mmap(nullptr, sizeof(Flags), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return new (p) Flags();
}

// Maps the segment file read-write, as any process that can open it can.
std::byte* MapRaw(const std::string& name, std::size_t* size) {
  const int fd = open(Segment::PathFor(name).c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return nullptr;
  }
  void* p = mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return nullptr;
  *size = static_cast<std::size_t>(st.st_size);
  return static_cast<std::byte*>(p);
}

enum class Target { kM2sOnly, kEverything };

// The scribbler's loop: until flags->stop, corrupts the segment. With kM2sOnly it only touches the
// master->slave ring (control and data), so the caller can check that nothing else changed.
int Scribble(const std::string& name, Flags* flags, Target target, std::uint64_t seed) {
  std::size_t size = 0;
  std::byte* base = MapRaw(name, &size);
  if (base == nullptr) return 2;
  std::mt19937_64 rng(seed);
  const std::uint64_t m2s = kSegmentHeaderBytes;                        // RingControl of m2s
  const std::uint64_t m2s_data = m2s + kRingControlBytes;
  auto* control = reinterpret_cast<RingControl*>(base + m2s);
  auto rand_below = [&](std::uint64_t n) { return n == 0 ? 0 : rng() % n; };
  const std::uint32_t kinds[] = {static_cast<std::uint32_t>(RecordKind::kData),
                                 static_cast<std::uint32_t>(RecordKind::kPadding), 0, 0xFFFFFFFFu, 0x12345678u};
  const std::uint32_t lengths[] = {0xFFFFFFFFu, 0x80000000u, static_cast<std::uint32_t>(kRing),
                                   static_cast<std::uint32_t>(kRing / 2), static_cast<std::uint32_t>(kRing - 16), 1, 0};
  while (flags->stop.load(std::memory_order_relaxed) == 0) {
    const int what = static_cast<int>(rand_below(100));
    if (what < 35) {
      // Random bytes in the ring data.
      const std::uint64_t len = 1 + rand_below(64);
      const std::uint64_t off = m2s_data + rand_below(kRing - len);
      for (std::uint64_t i = 0; i < len; ++i) base[off + i] = static_cast<std::byte>(rng());
    } else if (what < 65) {
      // A plausible record header where the consumer will look next (or near it): committed-looking,
      // with a huge length, a bad kind, or a padding that runs off the end.
      const std::uint64_t head = control->consumer.head.load(std::memory_order_relaxed) +
                                 16 * rand_below(8);
      auto* header = reinterpret_cast<RecordHeader*>(base + m2s_data + (head & (kRing - 1) & ~std::uint64_t{15}));
      header->length = lengths[rand_below(std::size(lengths))];
      header->kind = kinds[rand_below(std::size(kinds))];
      header->commit.store(rand_below(4) == 0 ? rng() : head + 1, std::memory_order_release);
    } else if (what < 80) {
      // The ring control: hostile heads and tails, futex words and sleeper flags.
      auto* words = reinterpret_cast<std::atomic<std::uint64_t>*>(base + m2s);
      const std::uint64_t index = rand_below(kRingControlBytes / 8);
      const std::uint64_t values[] = {0, ~std::uint64_t{0}, rng(), control->producer.tail.load() + kRing,
                                      control->consumer.head.load() + 16 * rand_below(1024)};
      // Unaligned values too: the consumer reports an unaligned head as corruption and the producer treats
      // it as a full ring (ring_unaligned_head_test).
      const std::uint64_t value = values[rand_below(std::size(values))] + (rng() % 2 == 0 ? rand_below(16) : 0);
      words[index].store(value, std::memory_order_relaxed);
    } else if (what < 90 && target == Target::kEverything) {
      // The segment header: magic, version, geometry, role controls (pids, heartbeats, epochs).
      const std::uint64_t off = rand_below(kSegmentHeaderBytes - 8);
      std::uint64_t v = rng();
      std::memcpy(base + off, &v, 8);
    } else if (what < 95 && target == Target::kEverything) {
      // Anywhere at all, the other ring included.
      const std::uint64_t len = 1 + rand_below(32);
      const std::uint64_t off = rand_below(size - len);
      for (std::uint64_t i = 0; i < len; ++i) base[off + i] = static_cast<std::byte>(rng());
    } else {
      sched_yield();
    }
    flags->scribbles.fetch_add(1, std::memory_order_relaxed);
    if (rand_below(16) == 0) usleep(static_cast<useconds_t>(rand_below(200)));
  }
  munmap(base, size);
  return 0;
}

class HostilePeerTest : public eshm_test::ChannelTestBase {
 protected:
  void SetUp() override {
    ChannelTestBase::SetUp();
    flags_ = MakeFlags();
    ASSERT_NE(flags_, nullptr);
  }
  void TearDown() override {
    if (flags_ != nullptr) munmap(flags_, sizeof(Flags));
    ChannelTestBase::TearDown();
  }
  std::uint64_t Seed() {
    const std::uint64_t seed = static_cast<std::uint64_t>(NowNs());
    std::printf("[hostile] seed %llu\n", static_cast<unsigned long long>(seed));
    return seed;
  }
  Flags* flags_ = nullptr;
};

// A raw producer and consumer of the m2s ring, in this process, against a scribbler process. Every result
// is one the API allows; the producer never writes outside its data area (the s2m ring, which the
// scribbler leaves alone here, stays all zero).
TEST_F(HostilePeerTest, RawRingSurvivesAScribbler) {
  const std::string name = NewName();
  SegmentOptions so;
  so.m2s_capacity = kRing;
  so.s2m_capacity = kRing;
  absl::StatusOr<Segment> segment = Segment::Create(name, so);
  ASSERT_TRUE(segment.ok()) << segment.status();
  const std::uint64_t seed = Seed();
  Child scribbler = StartChild([&] { return Scribble(name, flags_, Target::kM2sOnly, seed); });

  std::mt19937_64 rng(seed + 1);
  RingProducer producer = segment->MakeProducer(Direction::kMasterToSlave);
  RingConsumer consumer = segment->MakeConsumer(Direction::kMasterToSlave);
  std::vector<std::byte> message(segment->max_message_bytes(), std::byte{0x5a});
  std::vector<std::byte> buffer(segment->max_message_bytes());
  const int iterations = eshm_test::ScaledCount(100'000, 10'000);
  std::uint64_t ok_reads = 0, empty = 0, corrupt = 0, too_small = 0, writes = 0, full = 0, rebuilt_producer = 0;
  const std::int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(kWatchdog);
  // Until both this side and the scribbler have done their share (the scribbler may start late on a busy
  // machine).
  const std::uint64_t min_scribbles = static_cast<std::uint64_t>(eshm_test::ScaledCount(50'000, 2'000));
  for (int i = 0; (i < iterations || flags_->scribbles.load() < min_scribbles) && NowNs() < give_up; ++i) {
    const std::size_t size = static_cast<std::size_t>(rng() % 300);
    if (producer.TryWrite(std::span<const std::byte>(message.data(), size))) {
      ++writes;
    } else {
      ++full;
    }
    std::size_t got = 0;
    ReadResult r;
    if (i % 64 == 0) {
      absl::StatusOr<std::size_t> n = consumer.Read(buffer, WaitStrategy::Spin(), Deadline::AfterMs(1));
      r = n.ok() ? ReadResult::kOk
          : absl::IsDataLoss(n.status()) ? ReadResult::kCorrupt
          : absl::IsDeadlineExceeded(n.status()) ? ReadResult::kEmpty
                                                  : ReadResult::kBufferTooSmall;
      if (!n.ok() && !absl::IsDataLoss(n.status()) && !absl::IsDeadlineExceeded(n.status())) {
        ADD_FAILURE() << "unexpected status " << n.status();
        break;
      }
      if (n.ok()) got = *n;
    } else {
      r = consumer.TryRead(buffer, &got);
    }
    switch (r) {
      case ReadResult::kOk:
        ++ok_reads;
        ASSERT_LE(got, buffer.size());
        break;
      case ReadResult::kEmpty:
        ++empty;
        break;
      case ReadResult::kBufferTooSmall:
        ++too_small;  // impossible with a max-size buffer: a length over the maximum is corruption
        ADD_FAILURE() << "kBufferTooSmall with a buffer of max_message_bytes";
        break;
      case ReadResult::kCorrupt:
        ++corrupt;
        EXPECT_TRUE(absl::IsDataLoss(consumer.corruption_status())) << consumer.corruption_status();
        // Start over from whatever the shared head now says (itself possibly hostile).
        consumer = segment->MakeConsumer(Direction::kMasterToSlave);
        break;
    }
    if (i % 1024 == 0) {
      // A producer that (re)attaches scrubs the free space by the hostile head and tail.
      producer = segment->MakeProducer(Direction::kMasterToSlave);
      ++rebuilt_producer;
    }
  }
  flags_->stop = 1;
  EXPECT_TRUE(eshm_test::WaitForChild(scribbler, kWatchdog));
  // Nothing outside the m2s ring changed: the s2m control block and data are still zero.
  const std::byte* s2m = reinterpret_cast<const std::byte*>(segment->ring_control(Direction::kSlaveToMaster));
  const std::uint64_t s2m_bytes = kRingControlBytes + kRing;
  std::uint64_t nonzero = 0;
  std::string where;
  for (std::uint64_t i = 0; i < s2m_bytes; ++i) {
    if (s2m[i] != std::byte{0}) {
      if (++nonzero <= 32) absl::StrAppend(&where, " +", i, "=", static_cast<int>(s2m[i]));
    }
  }
  EXPECT_EQ(nonzero, 0u) << "bytes outside the m2s ring were written (offsets from the s2m control block):" << where;
  EXPECT_EQ(segment->header()->magic, kSegmentMagic);
  std::printf("[hostile] raw ring: %llu scribbles; %llu writes (%llu full), %llu reads, %llu empty, %llu corrupt, "
              "%llu producer re-attachments\n",
              static_cast<unsigned long long>(flags_->scribbles.load()), static_cast<unsigned long long>(writes),
              static_cast<unsigned long long>(full), static_cast<unsigned long long>(ok_reads),
              static_cast<unsigned long long>(empty), static_cast<unsigned long long>(corrupt),
              static_cast<unsigned long long>(rebuilt_producer));
  (void)too_small;
}

// Allowed outcomes of a channel operation under a hostile peer.
bool Allowed(const absl::Status& s) {
  return s.ok() || absl::IsDataLoss(s) || absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s);
}

ChannelOptions HostileOptions(ChannelRole role) {
  ChannelOptions o;
  o.role = role;
  o.disconnect_behavior = DisconnectBehavior::kNever;
  o.m2s_capacity = kRing;
  o.s2m_capacity = kRing;
  o.reconnect_retry_interval_ms = 10;
  o.max_reconnect_attempts = 0;
  return o;
}

// A master child streams to the parent's slave Channel and reads what the parent writes, while a
// scribbler corrupts everything. Both Channel users only ever see allowed results, and both end.
TEST_F(HostilePeerTest, ChannelSurvivesAScribblerOverTheWholeSegment) {
  const std::string name = NewName();
  const std::uint64_t seed = Seed();
  eshm_test::Pipe created;
  Child master = StartChild([&]() -> int {
    auto c = Channel::Open(name, HostileOptions(ChannelRole::kMaster));
    ESHM_CHILD_CHECK_OK(c);
    ESHM_CHILD_CHECK(created.Send(1));
    std::vector<std::byte> msg(200, std::byte{7});
    std::vector<std::byte> buffer((*c)->max_message_bytes());
    while (flags_->stop.load() == 0) {
      const absl::Status w = (*c)->Write(msg, Deadline::AfterMs(5));
      if (!Allowed(w)) {
        std::fprintf(stderr, "master write: %s\n", w.ToString().c_str());
        return 1;
      }
      std::size_t n = 0;
      const IoResult r = (*c)->TryRead(buffer, &n);
      if (r == IoResult::kBufferTooSmall || r == IoResult::kTooLarge || r == IoResult::kClosed) {
        std::fprintf(stderr, "master read: %s\n", IoResultName(r));
        return 1;
      }
    }
    return 0;
  });
  ASSERT_TRUE(created.Receive(kWatchdog, &master).has_value()) << master.Describe();
  Child scribbler = StartChild([&] { return Scribble(name, flags_, Target::kEverything, seed); });

  absl::StatusOr<std::unique_ptr<Channel>> opened = Channel::Open(name, HostileOptions(ChannelRole::kSlave));
  // The scribbler may already have broken the header: a refusal is a clean outcome too.
  std::uint64_t reads = 0, data_loss = 0, unavailable = 0, other = 0;
  if (opened.ok()) {
    Channel& c = **opened;
    std::vector<std::byte> buffer(c.max_message_bytes());
    const int ops = eshm_test::ScaledCount(100'000, 5'000);
    const std::int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(absl::Seconds(20));
    for (int i = 0; i < ops && NowNs() < give_up; ++i) {
      absl::StatusOr<std::size_t> n = c.Read(buffer, Deadline::AfterMs(2));
      if (n.ok()) {
        ++reads;
      } else if (absl::IsDataLoss(n.status())) {
        ++data_loss;
      } else if (absl::IsUnavailable(n.status())) {
        ++unavailable;
      } else if (!absl::IsDeadlineExceeded(n.status())) {
        ++other;
        ADD_FAILURE() << "read: " << n.status();
        break;
      }
      if (i % 4 == 0) {
        const IoResult r = c.TryWrite(std::vector<std::byte>(64, std::byte{1}));
        EXPECT_NE(r, IoResult::kClosed);
        EXPECT_NE(r, IoResult::kTooLarge);
      }
    }
  } else {
    std::printf("[hostile] slave open refused: %s\n", opened.status().ToString().c_str());
  }
  flags_->stop = 1;
  EXPECT_TRUE(eshm_test::WaitForChildren({&scribbler, &master}, kWatchdog));
  opened = absl::UnknownError("closed");  // close our endpoint
  std::printf("[hostile] channel: %llu scribbles; slave read %llu messages, %llu DataLoss, %llu Unavailable\n",
              static_cast<unsigned long long>(flags_->scribbles.load()), static_cast<unsigned long long>(reads),
              static_cast<unsigned long long>(data_loss), static_cast<unsigned long long>(unavailable));
  (void)other;
}

// Targeted corruption of the next record through a Channel: every variant is reported as kCorrupt by
// TryRead and DataLoss by Read, and nothing is delivered.
TEST_F(HostilePeerTest, TargetedRecordCorruptionIsDataLoss) {
  struct Variant {
    const char* what;
    std::uint32_t length;
    std::uint32_t kind;
  };
  const Variant variants[] = {
      {"huge length", 0xFFFFFFF0u, static_cast<std::uint32_t>(RecordKind::kData)},
      {"length over max_message_bytes", static_cast<std::uint32_t>(kRing / 2), static_cast<std::uint32_t>(RecordKind::kData)},
      {"bad kind", 8, 0x0BADC0DEu},
      {"padding off the end", static_cast<std::uint32_t>(kRing), static_cast<std::uint32_t>(RecordKind::kPadding)},
  };
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.what);
    const std::string name = NewName();
    auto master = Channel::Open(name, HostileOptions(ChannelRole::kMaster));
    ASSERT_TRUE(master.ok()) << master.status();
    auto slave = Channel::Open(name, HostileOptions(ChannelRole::kSlave));
    ASSERT_TRUE(slave.ok()) << slave.status();
    // A few good messages first, consumed; then the record the hostile peer rewrites.
    std::vector<std::byte> buffer(kRing);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE((*master)->Write(eshm_test::MakeSeqMessage(1, i, 100), Deadline::AfterMs(5000)).ok());
      ASSERT_TRUE((*slave)->Read(buffer, Deadline::AfterMs(5000)).ok());
    }
    ASSERT_TRUE((*master)->Write(eshm_test::MakeSeqMessage(1, 3, 100), Deadline::AfterMs(5000)).ok());
    std::size_t size = 0;
    std::byte* base = MapRaw(name, &size);
    ASSERT_NE(base, nullptr);
    auto* control = reinterpret_cast<RingControl*>(base + kSegmentHeaderBytes);
    const std::uint64_t position = control->consumer.head.load();
    auto* header = reinterpret_cast<RecordHeader*>(base + kSegmentHeaderBytes + kRingControlBytes +
                                                   (position & (kRing - 1)));
    ASSERT_EQ(header->commit.load(), position + 1) << "the next record is where the consumer will look";
    header->length = v.length;
    header->kind = v.kind;
    munmap(base, size);

    EXPECT_EQ((*slave)->TryRead(buffer, &size), IoResult::kCorrupt);
    const absl::Status s = (*slave)->Read(buffer, Deadline::AfterMs(5000)).status();
    EXPECT_TRUE(absl::IsDataLoss(s)) << s;
    EXPECT_EQ((*slave)->TryRead(buffer, &size), IoResult::kCorrupt) << "corruption is sticky";
  }
}

// A scribbler that ftruncates the file mid-traffic. Both endpoints' SIGBUS guards turn it into DataLoss
// (kCorrupt), never a crash, and both ends finish.
TEST_F(HostilePeerTest, TruncationMidTrafficIsDataLossNotSigbus) {
  for (const off_t new_size : {off_t{0}, static_cast<off_t>(kSegmentHeaderBytes + kRingControlBytes + kRing / 2)}) {
    SCOPED_TRACE(absl::StrCat("truncated to ", new_size));
    flags_->stop = 0;
    const std::string name = NewName();
    eshm_test::Pipe created, truncate_now;
    Child master = StartChild([&]() -> int {
      auto c = Channel::Open(name, HostileOptions(ChannelRole::kMaster));
      ESHM_CHILD_CHECK_OK(c);
      ESHM_CHILD_CHECK(created.Send(1));
      std::vector<std::byte> buffer((*c)->max_message_bytes());
      bool lost = false;
      for (std::uint64_t seq = 0; flags_->stop.load() == 0; ++seq) {
        const absl::Status w = (*c)->Write(eshm_test::MakeSeqMessage(1, seq, 64 + seq % 500), Deadline::AfterMs(5));
        if (!Allowed(w)) {
          std::fprintf(stderr, "master write: %s\n", w.ToString().c_str());
          return 1;
        }
        if (absl::IsDataLoss(w)) lost = true;
        std::size_t n = 0;
        (void)(*c)->TryRead(buffer, &n);
      }
      (void)lost;
      return 0;
    });
    ASSERT_TRUE(created.Receive(kWatchdog, &master).has_value()) << master.Describe();
    Child truncator = StartChild([&]() -> int {
      ESHM_CHILD_CHECK(truncate_now.Receive(kWatchdog).has_value());
      const int fd = open(Segment::PathFor(name).c_str(), O_RDWR | O_CLOEXEC);
      ESHM_CHILD_CHECK(fd >= 0);
      ESHM_CHILD_CHECK(ftruncate(fd, new_size) == 0);
      close(fd);
      return 0;
    });
    auto slave = Channel::Open(name, HostileOptions(ChannelRole::kSlave));
    ASSERT_TRUE(slave.ok()) << slave.status();
    Channel& c = **slave;
    std::vector<std::byte> buffer(c.max_message_bytes());
    std::uint64_t read_before = 0;
    bool truncated = false;
    bool data_loss = false;
    const std::int64_t give_up = NowNs() + absl::ToInt64Nanoseconds(absl::Seconds(60));
    while (NowNs() < give_up) {
      absl::StatusOr<std::size_t> n = c.Read(buffer, Deadline::AfterMs(5));
      if (n.ok()) {
        auto m = eshm_test::ParseSeqMessage(std::span<const std::byte>(buffer.data(), *n));
        // After a truncation, what was lost reads as zeros, never as a garbled message.
        ASSERT_TRUE(m.has_value()) << "garbled message of " << *n << " bytes";
        if (!truncated) ++read_before;
      } else if (absl::IsDataLoss(n.status())) {
        data_loss = true;
        EXPECT_TRUE(truncated) << "DataLoss before the truncation: " << n.status();
        break;
      } else {
        ASSERT_TRUE(Allowed(n.status())) << n.status();
      }
      if (!truncated && read_before >= 200) {
        ASSERT_TRUE(truncate_now.Send(1));
        ASSERT_TRUE(eshm_test::WaitForChild(truncator, kWatchdog));
        truncated = true;
      }
      (void)c.TryWrite(std::vector<std::byte>(32, std::byte{2}));
    }
    EXPECT_TRUE(truncated);
    EXPECT_TRUE(data_loss) << "the truncation was never reported as DataLoss";
    // Writes on the truncated segment fail as corruption too.
    EXPECT_EQ(c.TryWrite(std::vector<std::byte>(32, std::byte{2})), IoResult::kCorrupt);
    flags_->stop = 1;
    EXPECT_TRUE(eshm_test::WaitForChild(master, kWatchdog)) << "the master must survive the truncation";
  }
}

}  // namespace
}  // namespace eshm
