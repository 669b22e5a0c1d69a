#include "eshm/ring.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "gtest/gtest.h"

namespace eshm {
namespace {

// A ring on the heap: RingControl followed by `capacity` bytes of data, 128-byte aligned like a segment.
class HeapRing {
 public:
  explicit HeapRing(std::uint64_t capacity, std::uint64_t max_message = 0)
      : capacity_(capacity),
        max_message_(max_message == 0 ? MaxPayloadForCapacity(capacity) : max_message),
        memory_(static_cast<std::byte*>(std::aligned_alloc(kFalseSharingRange, kRingControlBytes + capacity))) {
    std::memset(memory_.get(), 0, kRingControlBytes + capacity);
    InitializeRing(control());
  }
  RingControl* control() { return reinterpret_cast<RingControl*>(memory_.get()); }
  std::byte* data() { return memory_.get() + kRingControlBytes; }
  RingProducer Producer() { return RingProducer(control(), data(), capacity_, max_message_); }
  RingConsumer Consumer() { return RingConsumer(control(), data(), capacity_, max_message_); }
  std::uint64_t capacity() const { return capacity_; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::uint64_t capacity_;
  std::uint64_t max_message_;
  std::unique_ptr<std::byte, Free> memory_;
};

// Stress sizes shrink under sanitizers (the test runner sets ESHM_STRESS_SCALE), where each step is slower.
int Scaled(int count) {
  const char* scale = std::getenv("ESHM_STRESS_SCALE");
  const double factor = scale != nullptr ? std::atof(scale) : 1.0;
  return std::max(1, static_cast<int>(count * (factor > 0 ? factor : 1.0)));
}

std::vector<std::byte> Message(std::size_t size, std::uint32_t seed) {
  std::vector<std::byte> m(size);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : m) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<std::byte>(x);
  }
  return m;
}

std::vector<std::byte> ReadOne(RingConsumer& consumer, std::size_t buffer_size = 1 << 16) {
  std::vector<std::byte> buffer(buffer_size);
  std::size_t size = 0;
  EXPECT_EQ(consumer.TryRead(buffer, &size), ReadResult::kOk);
  buffer.resize(size);
  return buffer;
}

TEST(RingTest, EmptyRingHasNothingToRead) {
  HeapRing ring(4096);
  RingConsumer consumer = ring.Consumer();
  std::byte buffer[16];
  std::size_t size = 123;
  EXPECT_EQ(consumer.TryRead(buffer, &size), ReadResult::kEmpty);
  EXPECT_EQ(size, 123u);
  EXPECT_FALSE(consumer.HasData());
}

TEST(RingTest, MessageRoundTripsWithItsExactLength) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  const std::string text = "Hello from master #0";
  ASSERT_TRUE(producer.TryWrite(text.data(), text.size()));
  EXPECT_TRUE(consumer.HasData());
  const std::vector<std::byte> got = ReadOne(consumer);
  ASSERT_EQ(got.size(), text.size());
  EXPECT_EQ(std::memcmp(got.data(), text.data(), text.size()), 0);
  EXPECT_FALSE(consumer.HasData());
}

TEST(RingTest, ACopyTheCallerDistrustsStaysInTheRing) {
  // The Channel's read: its trailer check runs between the copy and the release. A failed check keeps the
  // message (and the space) where it is; a later read gets it again, and nothing after it comes first.
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  ASSERT_TRUE(producer.TryWrite("first", 5));
  ASSERT_TRUE(producer.TryWrite("second", 6));
  char buffer[16] = {};
  std::size_t size = 0;
  int checks = 0;
  EXPECT_EQ(consumer.TryRead(std::as_writable_bytes(std::span(buffer)), &size, [&] { return ++checks > 1; }),
            ReadResult::kCorrupt);
  EXPECT_EQ(checks, 1);
  EXPECT_EQ(consumer.messages_read(), 0u);
  EXPECT_EQ(consumer.TryRead(std::as_writable_bytes(std::span(buffer)), &size, [&] { return ++checks > 1; }),
            ReadResult::kOk);
  EXPECT_EQ(std::string(buffer, size), "first");
  EXPECT_EQ(consumer.TryRead(std::as_writable_bytes(std::span(buffer)), &size), ReadResult::kOk);
  EXPECT_EQ(std::string(buffer, size), "second");
  EXPECT_EQ(consumer.messages_read(), 2u);
}

TEST(RingTest, ZeroLengthMessageIsAMessage) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  ASSERT_TRUE(producer.TryWrite(nullptr, 0));
  std::size_t size = 99;
  std::byte buffer[1];
  EXPECT_EQ(consumer.TryRead(std::span<std::byte>(buffer, 0), &size), ReadResult::kOk);
  EXPECT_EQ(size, 0u);
  EXPECT_EQ(consumer.TryRead(buffer, &size), ReadResult::kEmpty);
}

TEST(RingTest, FullRingRefusesWritesAndNeverOverwrites) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  // 100-byte payloads occupy 128-byte records: exactly 32 fit in 4 KiB.
  int written = 0;
  while (producer.TryWrite(Message(100, written))) ++written;
  EXPECT_EQ(written, 32);
  EXPECT_FALSE(producer.TryWrite(Message(100, 999)));
  EXPECT_FALSE(producer.TryWrite(nullptr, 0));  // not even an empty record fits
  // Every message is still the original, in order.
  for (int i = 0; i < written; ++i) {
    ASSERT_EQ(ReadOne(consumer), Message(100, i)) << "message " << i;
  }
  // Space comes back once read.
  EXPECT_TRUE(producer.TryWrite(Message(100, 1000)));
  EXPECT_EQ(ReadOne(consumer), Message(100, 1000));
}

TEST(RingTest, WrapInsertsPaddingAndKeepsOrder) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  // Sizes chosen so records straddle the end of the data area on several laps.
  std::uint32_t seed = 0;
  for (int lap = 0; lap < 50; ++lap) {
    for (std::size_t size : {1000u, 700u, 333u, 1500u}) {
      ASSERT_TRUE(producer.TryWrite(Message(size, seed))) << "lap " << lap << " size " << size;
      ASSERT_EQ(ReadOne(consumer), Message(size, seed)) << "lap " << lap << " size " << size;
      ++seed;
    }
  }
  EXPECT_EQ(consumer.messages_read(), 200u);
}

TEST(RingTest, LargestMessageFitsWheneverTheRingIsEmpty) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  const std::size_t max = producer.max_message_bytes();
  EXPECT_EQ(max, 4096u / 2 - kRecordHeaderBytes);
  // Shift the write position through many offsets; the largest message must fit each time.
  for (std::size_t shift = 0; shift < 64; ++shift) {
    ASSERT_TRUE(producer.TryWrite(Message(shift * 16, shift)));
    ASSERT_EQ(ReadOne(consumer), Message(shift * 16, shift));
    ASSERT_TRUE(producer.TryWrite(Message(max, shift))) << "shift " << shift;
    ASSERT_EQ(ReadOne(consumer, max), Message(max, shift));
  }
}

TEST(RingTest, OversizedMessageIsRefusedWithAClearError) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  const std::vector<std::byte> too_big(producer.max_message_bytes() + 1);
  EXPECT_FALSE(producer.TryWrite(too_big));
  EXPECT_EQ(producer.TryClaim(too_big.size()), nullptr);
  const absl::Status status = producer.Write(too_big, WaitStrategy::Spin(), Deadline::AfterMs(10));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("exceeds"), std::string_view::npos) << status;
  // A message larger than the whole ring is refused the same way, not waited for.
  const std::vector<std::byte> huge(1 << 20);
  EXPECT_EQ(producer.Write(huge, WaitStrategy::Spin(), Deadline::Infinite()).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RingTest, EverySizeClassRoundTrips) {
  HeapRing ring(1 << 16);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  std::vector<std::size_t> sizes;
  for (std::size_t s = 0; s <= 48; ++s) sizes.push_back(s);  // around header and alignment boundaries
  for (std::size_t s : {63u, 64u, 65u, 127u, 128u, 129u, 255u, 256u, 1023u, 1024u, 4095u, 4096u, 4097u,
                        16383u, 16384u, 32000u}) {
    sizes.push_back(s);
  }
  sizes.push_back(producer.max_message_bytes());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_TRUE(producer.TryWrite(Message(sizes[i], i))) << sizes[i];
    ASSERT_EQ(ReadOne(consumer), Message(sizes[i], i)) << sizes[i];
  }
}

TEST(RingTest, ClaimThenCommitPublishesInPlace) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  std::byte* slot = producer.TryClaim(64);
  ASSERT_NE(slot, nullptr);
  EXPECT_TRUE(producer.has_claim());
  const std::vector<std::byte> payload = Message(40, 7);
  std::memcpy(slot, payload.data(), payload.size());
  EXPECT_FALSE(consumer.HasData()) << "a claim must be invisible before Commit";
  producer.Commit(40);  // commit fewer bytes than claimed
  EXPECT_FALSE(producer.has_claim());
  EXPECT_EQ(ReadOne(consumer), payload);
}

TEST(RingTest, ClaimThenAbortLeavesNoTrace) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  for (int round = 0; round < 100; ++round) {
    std::byte* slot = producer.TryClaim(300);
    ASSERT_NE(slot, nullptr);
    std::memset(slot, 0xAB, 300);
    producer.Abort();
    EXPECT_FALSE(consumer.HasData());
    ASSERT_TRUE(producer.TryWrite(Message(200, round)));
    ASSERT_EQ(ReadOne(consumer), Message(200, round));
  }
}

TEST(RingTest, AbortedClaimAcrossTheWrapDoesNotLeakPadding) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  // Move to 3968 bytes into the ring so a 1000-byte claim needs padding.
  for (int i = 0; i < 31; ++i) {
    ASSERT_TRUE(producer.TryWrite(Message(112, i)));
    ASSERT_EQ(ReadOne(consumer), Message(112, i));
  }
  ASSERT_NE(producer.TryClaim(1000), nullptr);
  producer.Abort();
  EXPECT_FALSE(consumer.HasData());
  ASSERT_TRUE(producer.TryWrite(Message(16, 1)));  // fits before the end: no padding this time
  EXPECT_EQ(ReadOne(consumer), Message(16, 1));
}

// Writes what looks like a committed 8-byte record for stream position `position` at `where`.
void ForgeRecord(std::byte* where, std::uint64_t position) {
  const std::uint64_t commit = position + 1;
  const std::uint32_t length = 8;
  const std::uint32_t kind = static_cast<std::uint32_t>(RecordKind::kData);
  std::memcpy(where, &commit, 8);
  std::memcpy(where + 8, &length, 4);
  std::memcpy(where + 12, &kind, 4);
}

TEST(RingTest, StrayBytesOfAShrunkClaimNeverLookCommitted) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  std::byte* slot = producer.TryClaim(1000);  // record at position 0, payload from byte 16
  ASSERT_NE(slot, nullptr);
  // The caller's bytes happen to form a committed-looking record exactly where the next record will start
  // once the claim shrinks to 8 bytes (position 32), and again further on (position 64).
  ForgeRecord(slot + 16, 32);
  ForgeRecord(slot + 48, 64);
  producer.Commit(8);
  EXPECT_EQ(ReadOne(consumer).size(), 8u);
  EXPECT_FALSE(consumer.HasData()) << "stray claim bytes were read as a record";
  ASSERT_TRUE(producer.TryWrite(Message(8, 1)));
  EXPECT_EQ(ReadOne(consumer), Message(8, 1));
  EXPECT_FALSE(consumer.HasData()) << "stray claim bytes were read as a record";
}

TEST(RingTest, StrayBytesOfAnAbortedClaimNeverLookCommitted) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  std::byte* slot = producer.TryClaim(1000);
  ASSERT_NE(slot, nullptr);
  ForgeRecord(slot + 16, 32);  // where the successor of an 8-byte record at position 0 starts
  producer.Abort();
  ASSERT_TRUE(producer.TryWrite(Message(8, 2)));
  EXPECT_EQ(ReadOne(consumer), Message(8, 2));
  EXPECT_FALSE(consumer.HasData()) << "stray claim bytes were read as a record";
}

// Message content is never framing: a payload that holds, at a future record boundary, that boundary's
// commit word, a plausible length and the data kind is not delivered as a message once the reader gets
// there on a later lap.
TEST(RingTest, PayloadThatLooksLikeAFutureRecordIsNeverDelivered) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  // A 2032-byte message fills the record at position 0 (2048 bytes); its payload offset 1008 lies at ring
  // offset 1024, which is position 5120 on the next lap: forge a 40-byte data record there.
  std::vector<std::byte> bait = Message(2032, 1);
  ForgeRecord(bait.data() + 1008, 5120);
  ASSERT_TRUE(producer.TryWrite(bait));
  ASSERT_EQ(ReadOne(consumer), bait);
  ASSERT_TRUE(producer.TryWrite(Message(2032, 2)));  // position 2048
  ASSERT_EQ(ReadOne(consumer), Message(2032, 2));
  ASSERT_TRUE(producer.TryWrite(Message(1008, 3)));  // position 4096, ends at 5120
  ASSERT_EQ(ReadOne(consumer), Message(1008, 3));
  std::span<const std::byte> forged;
  EXPECT_EQ(consumer.TryPeek(&forged), ReadResult::kEmpty) << "a message nobody sent was delivered";
  consumer.Release();
  // The stream goes on exactly as written.
  for (std::uint32_t i = 4; i < 40; ++i) {
    ASSERT_TRUE(producer.TryWrite(Message(100 + i, i)));
    ASSERT_EQ(ReadOne(consumer), Message(100 + i, i)) << "message " << i;
  }
  EXPECT_FALSE(consumer.HasData());
}

// A writer that starts waiting after the reader's last read is let in as soon as its message fits, even
// though the reader never calls again.
TEST(RingTest, WriterWaitingAfterTheLastReadSeesTheFreedSpace) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  int written = 0;
  while (producer.TryWrite(Message(100, written))) ++written;
  ASSERT_EQ(ReadOne(consumer), Message(100, 0));  // frees one 128-byte record, then reads no more
  int next_read = 1;
  for (const WaitStrategy& strategy : {WaitStrategy::Spin(), WaitStrategy::Sleep(), WaitStrategy::Adaptive()}) {
    const absl::Status status = producer.Write(Message(100, written), strategy, Deadline::AfterMs(2000));
    ASSERT_TRUE(status.ok()) << status;
    ++written;
    ASSERT_EQ(ReadOne(consumer), Message(100, next_read));  // again frees one record and stops
    ++next_read;
  }
}

// A writer asleep for room is woken by the read that makes its message fit, not by a later one.
TEST(RingTest, SleepingWriterIsWokenByTheReadThatMakesRoom) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  while (producer.TryWrite(Message(100, 0))) {
  }
  // 1000 bytes need 1024 free: eight 128-byte records.
  std::atomic<bool> done{false};
  absl::Status status;
  std::thread writer([&] {
    status = producer.Write(Message(1000, 7), WaitStrategy::Sleep(), Deadline::AfterMs(20000));
    done.store(true);
  });
  while (ring.control()->wait.space_sleeping.load() == 0) std::this_thread::yield();
  for (int i = 0; i < 8; ++i) ReadOne(consumer);
  // The reader now does nothing; the writer must finish by itself (a hang fails at the deadline above).
  writer.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(done.load());
}

TEST(RingTest, OnlyOneClaimAtATime) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  ASSERT_NE(producer.TryClaim(10), nullptr);
  EXPECT_EQ(producer.TryClaim(10), nullptr);
  EXPECT_FALSE(producer.TryWrite(Message(10, 0)));
  EXPECT_EQ(producer.Write(Message(10, 0), WaitStrategy::Spin(), Deadline::AfterMs(5)).code(),
            absl::StatusCode::kFailedPrecondition);
  producer.Commit(10);
  EXPECT_TRUE(producer.TryWrite(Message(10, 0)));
}

TEST(RingTest, DeferredWritesAreInvisibleUntilFlush) {
  HeapRing ring(1 << 16);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(producer.TryWrite(Message(50, i), Publish::kDeferred));
  EXPECT_FALSE(consumer.HasData()) << "a partial batch must be invisible";
  EXPECT_GT(producer.staged_bytes(), 0u);
  producer.Flush();
  EXPECT_EQ(producer.staged_bytes(), 0u);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(ReadOne(consumer), Message(50, i));
}

TEST(RingTest, ANowWritePublishesEarlierStagedWrites) {
  HeapRing ring(1 << 16);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  ASSERT_TRUE(producer.TryWrite(Message(5, 1), Publish::kDeferred));
  ASSERT_TRUE(producer.TryWrite(Message(6, 2), Publish::kNow));
  EXPECT_EQ(ReadOne(consumer), Message(5, 1));
  EXPECT_EQ(ReadOne(consumer), Message(6, 2));
}

TEST(RingTest, LargeBatchesPublishThemselves) {
  HeapRing ring(1 << 20);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  int written = 0;
  while (!consumer.HasData()) {
    ASSERT_TRUE(producer.TryWrite(Message(100, written), Publish::kDeferred));
    ++written;
    ASSERT_LE(written * 128u, RingProducer::kMaxBatchBytes) << "staged bytes were never published";
  }
}

TEST(RingTest, FullRingPublishesStagedWrites) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  int written = 0;
  while (producer.TryWrite(Message(100, written), Publish::kDeferred)) ++written;
  // The failed write published everything: a consumer can drain the ring without a Flush.
  for (int i = 0; i < written; ++i) ASSERT_EQ(ReadOne(consumer), Message(100, i));
}

TEST(RingTest, PeekKeepsTheMessageUntilRelease) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  ASSERT_TRUE(producer.TryWrite(Message(30, 1)));
  ASSERT_TRUE(producer.TryWrite(Message(31, 2)));
  std::span<const std::byte> first;
  ASSERT_EQ(consumer.TryPeek(&first), ReadResult::kOk);
  std::span<const std::byte> again;
  ASSERT_EQ(consumer.TryPeek(&again), ReadResult::kOk);
  EXPECT_EQ(first.data(), again.data());
  EXPECT_EQ(std::vector<std::byte>(first.begin(), first.end()), Message(30, 1));
  consumer.Release();
  EXPECT_EQ(ReadOne(consumer), Message(31, 2));
}

TEST(RingTest, TooSmallBufferKeepsTheMessage) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  ASSERT_TRUE(producer.TryWrite(Message(100, 3)));
  std::byte small[10];
  std::size_t size = 0;
  EXPECT_EQ(consumer.TryRead(small, &size), ReadResult::kBufferTooSmall);
  EXPECT_EQ(size, 100u);
  absl::StatusOr<std::size_t> blocking = consumer.Read(small, WaitStrategy::Spin(), Deadline::AfterMs(10));
  EXPECT_EQ(blocking.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(blocking.status().message().find("stays in the ring"), std::string_view::npos);
  EXPECT_EQ(ReadOne(consumer), Message(100, 3));
}

TEST(RingTest, PartialRecordIsInvisible) {
  HeapRing ring(4096);
  RingConsumer consumer = ring.Consumer();
  // Everything of a record except its commit word: the consumer must not see it.
  auto* header = reinterpret_cast<RecordHeader*>(ring.data());
  header->length = 8;
  header->kind = static_cast<std::uint32_t>(RecordKind::kData);
  std::memset(static_cast<void*>(header + 1), 0x5A, 8);
  EXPECT_FALSE(consumer.HasData());
  header->commit.store(1, std::memory_order_release);
  EXPECT_TRUE(consumer.HasData());
}

TEST(RingTest, CommitWordFromAnEarlierLapIsNotData) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  for (int i = 0; i < 32; ++i) {
    ASSERT_TRUE(producer.TryWrite(Message(112, i)));
    ASSERT_EQ(ReadOne(consumer), Message(112, i));
  }
  // One full lap later, position 4096 holds the record written at position 0 (commit 1): not data.
  EXPECT_FALSE(consumer.HasData());
}

TEST(RingTest, CorruptedLengthIsDetected) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  ASSERT_TRUE(producer.TryWrite(Message(10, 1)));
  reinterpret_cast<RecordHeader*>(ring.data())->length = 0xFFFFFF00u;
  std::byte buffer[64];
  std::size_t size = 0;
  EXPECT_EQ(consumer.TryRead(buffer, &size), ReadResult::kCorrupt);
  EXPECT_TRUE(consumer.corrupted());
  EXPECT_EQ(consumer.corruption_status().code(), absl::StatusCode::kDataLoss);
  // Sticky: the ring stays unusable rather than resynchronizing on garbage.
  EXPECT_EQ(consumer.TryRead(buffer, &size), ReadResult::kCorrupt);
  EXPECT_EQ(consumer.Read(buffer, WaitStrategy::Spin(), Deadline::AfterMs(5)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(RingTest, LengthCrossingTheEndOfTheRingIsDetected) {
  HeapRing ring(4096);
  RingConsumer consumer = ring.Consumer();
  // Within max_message_bytes, but the record would run past the end of the data area.
  auto* header = reinterpret_cast<RecordHeader*>(ring.data() + 4096 - 64);
  ring.control()->consumer.head.store(4096 - 64);
  RingConsumer shifted = ring.Consumer();
  header->length = 100;
  header->kind = static_cast<std::uint32_t>(RecordKind::kData);
  header->commit.store(4096 - 64 + 1);
  std::span<const std::byte> message;
  EXPECT_EQ(shifted.TryPeek(&message), ReadResult::kCorrupt);
}

TEST(RingTest, UnknownKindAndBadPaddingAreDetected) {
  {
    HeapRing ring(4096);
    RingConsumer consumer = ring.Consumer();
    auto* header = reinterpret_cast<RecordHeader*>(ring.data());
    header->length = 4;
    header->kind = 0x12345678;
    header->commit.store(1);
    std::span<const std::byte> message;
    EXPECT_EQ(consumer.TryPeek(&message), ReadResult::kCorrupt);
    EXPECT_NE(consumer.corruption_status().message().find("unknown kind"), std::string_view::npos);
  }
  {
    HeapRing ring(4096);
    RingConsumer consumer = ring.Consumer();
    auto* header = reinterpret_cast<RecordHeader*>(ring.data());
    header->length = 4096 - 16;  // padding at offset 0 is never legitimate
    header->kind = static_cast<std::uint32_t>(RecordKind::kPadding);
    header->commit.store(1);
    std::span<const std::byte> message;
    EXPECT_EQ(consumer.TryPeek(&message), ReadResult::kCorrupt);
  }
}

TEST(RingTest, HostileHeadDoesNotLetTheProducerOverwriteUnreadData) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  while (producer.TryWrite(Message(100, 0))) {
  }
  // A consumer publishing a head beyond the tail is lying; the producer keeps treating the ring as full.
  ring.control()->consumer.head.store(1 << 30, std::memory_order_release);
  EXPECT_FALSE(producer.TryWrite(Message(100, 1)));
}

TEST(RingTest, ProducerResumesAfterTheLastPublishedRecord) {
  HeapRing ring(4096);
  {
    RingProducer first = ring.Producer();
    ASSERT_TRUE(first.TryWrite(Message(40, 1)));
    ASSERT_TRUE(first.TryWrite(Message(40, 2)));
    // Staged but never published: a producer that dies now must not deliver these.
    ASSERT_TRUE(first.TryWrite(Message(40, 3), Publish::kDeferred));
    ASSERT_TRUE(first.TryWrite(Message(40, 4), Publish::kDeferred));
  }
  RingProducer second = ring.Producer();
  ASSERT_TRUE(second.TryWrite(Message(24, 5)));
  ASSERT_TRUE(second.TryWrite(Message(90, 6)));
  RingConsumer consumer = ring.Consumer();
  EXPECT_EQ(ReadOne(consumer), Message(40, 1));
  EXPECT_EQ(ReadOne(consumer), Message(40, 2));
  EXPECT_EQ(ReadOne(consumer), Message(24, 5));
  EXPECT_EQ(ReadOne(consumer), Message(90, 6));
  EXPECT_FALSE(consumer.HasData());
}

TEST(RingTest, StaleStagedRecordsOfADeadProducerNeverSurface) {
  HeapRing ring(4096);
  {
    RingProducer first = ring.Producer();
    ASSERT_TRUE(first.TryWrite(Message(48, 1), Publish::kDeferred));  // withheld batch head
    ASSERT_TRUE(first.TryWrite(Message(48, 2), Publish::kDeferred));  // committed behind it
    ASSERT_TRUE(first.TryWrite(Message(48, 3), Publish::kDeferred));
  }
  // The next producer writes same-sized records at the same positions, one at a time.
  RingProducer second = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  ASSERT_TRUE(second.TryWrite(Message(48, 10)));
  EXPECT_EQ(ReadOne(consumer), Message(48, 10));
  EXPECT_FALSE(consumer.HasData()) << "a dead producer's staged record surfaced";
  ASSERT_TRUE(second.TryWrite(Message(48, 11)));
  EXPECT_EQ(ReadOne(consumer), Message(48, 11));
  EXPECT_FALSE(consumer.HasData());
}

TEST(RingTest, CountersTrackMessages) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(producer.TryWrite(Message(8, i)));
  for (int i = 0; i < 3; ++i) ReadOne(consumer);
  EXPECT_EQ(producer.messages_written(), 5u);
  EXPECT_EQ(consumer.messages_read(), 3u);
  EXPECT_EQ(ring.control()->producer.messages_written.load(), 5u);
  EXPECT_EQ(ring.control()->consumer.messages_read.load(), 3u);
}

TEST(RingTest, BlockingReadTimesOutWhenNothingArrives) {
  HeapRing ring(4096);
  RingConsumer consumer = ring.Consumer();
  std::byte buffer[16];
  for (const WaitStrategy& strategy : {WaitStrategy::Spin(), WaitStrategy::Sleep(), WaitStrategy::Adaptive()}) {
    EXPECT_EQ(consumer.Read(buffer, strategy, Deadline::AfterMs(20)).status().code(),
              absl::StatusCode::kDeadlineExceeded);
  }
}

// A Timeout counts from the call's first wait, however long ago it was made, and ends the wait.
TEST(RingTest, BlockingCallsHonourATimeoutFromTheirFirstWait) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  const Deadline per_call = Deadline::TimeoutMs(40);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  for (const WaitStrategy& strategy : {WaitStrategy::Spin(), WaitStrategy::Sleep(), WaitStrategy::Adaptive()}) {
    std::byte buffer[64];
    std::int64_t start = MonotonicNowNs();
    EXPECT_EQ(consumer.Read(buffer, strategy, per_call).status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_GE(MonotonicNowNs() - start, 40'000'000);
    EXPECT_LT(MonotonicNowNs() - start, 5'000'000'000);
    while (producer.TryWrite(Message(100, 1))) {
    }
    start = MonotonicNowNs();
    EXPECT_EQ(producer.Write(Message(100, 1), strategy, per_call).code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_GE(MonotonicNowNs() - start, 40'000'000);
    EXPECT_LT(MonotonicNowNs() - start, 5'000'000'000);
    while (consumer.HasData()) ReadOne(consumer);
  }
}

TEST(RingTest, BlockingWriteTimesOutWhenTheRingStaysFull) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  while (producer.TryWrite(Message(100, 0))) {
  }
  const absl::Status status = producer.Write(Message(100, 1), WaitStrategy::Sleep(), Deadline::AfterMs(20));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(status.message().find("ring full"), std::string_view::npos);
}

TEST(RingTest, WaitCheckEndsABlockingWait) {
  HeapRing ring(4096);
  RingConsumer consumer = ring.Consumer();
  std::byte buffer[16];
  int calls = 0;
  auto check = [&]() -> absl::Status {
    return ++calls < 3 ? absl::OkStatus() : absl::UnavailableError("peer gone");
  };
  const auto result = consumer.Read(buffer, WaitStrategy::Sleep(), Deadline::Infinite(), check);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls, 3);
}

// Sleeping consumer and sleeping producer wake each other through the futex protocol; with a small ring
// and Sleep() on both sides every message exercises both sleep paths.
TEST(RingTest, SleepingSidesWakeEachOther) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  const int kMessages = Scaled(20000);
  std::thread reader([&] {
    std::vector<std::byte> buffer(2048);
    for (int i = 0; i < kMessages; ++i) {
      auto size = consumer.Read(buffer, WaitStrategy::Sleep(), Deadline::AfterMs(10000));
      ASSERT_TRUE(size.ok()) << size.status();
      buffer.resize(*size);
      ASSERT_EQ(buffer, Message(i % 700, i));
      buffer.resize(2048);
    }
  });
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(producer.Write(Message(i % 700, i), WaitStrategy::Sleep(), Deadline::AfterMs(10000)).ok());
  }
  reader.join();
  EXPECT_EQ(consumer.messages_read(), static_cast<std::uint64_t>(kMessages));
}

// A consumer that polls (so the producer publishes without a fence) and then sleeps must still be woken
// by the next publication, however often it switches; a lost wakeup would leave each read to its 10 ms
// wait slice, and the runs below would take minutes instead of a second (the test's timeout).
TEST(RingTest, ConsumerSwitchingBetweenPollingAndSleepingIsAlwaysWoken) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  const int kMessages = Scaled(30000);
  std::thread writer([&] {
    std::uint32_t x = 12345;
    for (int i = 0; i < kMessages; ++i) {
      x = x * 1664525u + 1013904223u;
      // Sometimes right away, sometimes after the reader has had time to go to sleep.
      if (x % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(x % 200));
      ASSERT_TRUE(producer.Write(Message(8 + i % 64, i), WaitStrategy::Sleep(), Deadline::AfterMs(10000)).ok());
    }
  });
  std::vector<std::byte> buffer(128);
  std::uint32_t y = 777;
  for (int i = 0; i < kMessages;) {
    y = y * 1664525u + 1013904223u;
    const WaitStrategy strategy = y % 2 == 0 ? WaitStrategy::Spin() : WaitStrategy::Sleep();
    for (int run = static_cast<int>(y % 150) + 1; run > 0 && i < kMessages; --run, ++i) {
      auto size = consumer.Read(buffer, strategy, Deadline::AfterMs(10000));
      ASSERT_TRUE(size.ok()) << "message " << i << ": " << size.status();
      ASSERT_EQ(std::vector<std::byte>(buffer.begin(), buffer.begin() + *size), Message(8 + i % 64, i));
    }
  }
  writer.join();
}

// A consumer whose strategy sleeps at once (Sleep()) must stay "sleepy" (odd epoch: the producer publishes
// with seq_cst stores) however many waits find a message waiting before they look or sleep. Leaving after
// a run of such reads made every later sleep pay a heavy fence (a membarrier system call that interrupts
// the producer's CPU): streams read with Sleep() lost a quarter of their rate.
// A consumer that polls first (Adaptive) does leave after a run of waits that did not sleep.
TEST(RingTest, OnlyAPollingConsumerStopsAskingForFencedPublications) {
  for (const bool sleeps_at_once : {true, false}) {
    SCOPED_TRACE(sleeps_at_once ? "Sleep()" : "Adaptive()");
    HeapRing ring(1 << 16);
    RingProducer producer = ring.Producer();
    RingConsumer consumer = ring.Consumer();
    const WaitStrategy strategy = sleeps_at_once ? WaitStrategy::Sleep() : WaitStrategy::Adaptive();
    std::byte buffer[64];
    // Nothing to read: the wait ends in a sleep (until the deadline), which makes the epoch odd.
    ASSERT_EQ(consumer.Read(buffer, strategy, Deadline::AfterMs(1)).status().code(),
              absl::StatusCode::kDeadlineExceeded);
    const std::uint32_t sleepy = ring.control()->wait.data_sleepy_epoch.load();
    ASSERT_EQ(sleepy % 2, 1u);
    // Waits that end without sleeping: the message is there by the time the wait looks (as when it lands
    // between a read that found the ring empty and the wait that follows).
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(producer.TryWrite(Message(32, i)));
      ASSERT_TRUE(consumer.WaitForData(strategy, Deadline::AfterMs(1000), [] { return absl::OkStatus(); }).ok());
      ASSERT_TRUE(consumer.Read(buffer, strategy, Deadline::AfterMs(1000)).ok());
    }
    if (sleeps_at_once) {
      EXPECT_EQ(ring.control()->wait.data_sleepy_epoch.load(), sleepy);
    } else {
      EXPECT_EQ(ring.control()->wait.data_sleepy_epoch.load(), sleepy + 1);
    }
  }
}

// A reader that sleeps at once (Sleep()) and has just read a backlog looks once more, after yielding its
// CPU, before it sleeps; a look that finds a message lets the producer publish without a fence again. The
// message after which the writer pauses must still wake it at once, whichever way its last wait ended: a
// lost wakeup leaves the read to its 10 ms wait slice. Gaps around the length of a look, so that looks
// both find and miss messages, and pauses long enough for the reader to fall asleep; every message carries
// its send time.
TEST(RingTest, ASleepingReaderThatLooksBeforeSleepingIsWokenByEveryMessage) {
  HeapRing ring(1 << 16);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  const int kMessages = Scaled(40000);
  std::thread writer([&] {
    std::uint32_t x = 4242;
    for (int i = 0; i < kMessages; ++i) {
      x = x * 1664525u + 1013904223u;
      if (x % 64 == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(200 + x % 300));
      } else {
        const std::int64_t until = MonotonicNowNs() + (x >> 8) % 2000;
        while (MonotonicNowNs() < until) CpuRelax();
      }
      std::int64_t word[2] = {i, MonotonicNowNs()};
      ASSERT_TRUE(producer.Write(std::as_bytes(std::span(word)), WaitStrategy::Sleep(), Deadline::AfterMs(10000)).ok());
    }
  });
  int late = 0;
  std::int64_t latest_ns = 0;
  for (int i = 0; i < kMessages; ++i) {
    std::int64_t word[2];
    auto size = consumer.Read(std::as_writable_bytes(std::span(word)), WaitStrategy::Sleep(), Deadline::AfterMs(10000));
    ASSERT_TRUE(size.ok()) << size.status();
    ASSERT_EQ(word[0], i);
    const std::int64_t waited_ns = MonotonicNowNs() - word[1];
    latest_ns = std::max(latest_ns, waited_ns);
    if (waited_ns > 5'000'000) ++late;
  }
  writer.join();
  // A wake takes tens of microseconds; a busy machine may delay a few reads by milliseconds, not many.
  EXPECT_LE(late, kMessages / 400) << "messages read over 5 ms after they were sent (latest "
                                   << latest_ns / 1000 << " us)";
  EXPECT_GT(consumer.wait_syscalls(), 0u) << "the reader never slept: the pauses did not test the wake";
}

TEST(RingTest, AwakeReaderCostsTheWriterNoSystemCalls) {
  HeapRing ring(1 << 20);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  // Nobody sleeps: every write and read is pure shared-memory traffic.
  for (int i = 0; i < 10000; ++i) {
    ASSERT_TRUE(producer.TryWrite(Message(64, i)));
    ASSERT_EQ(ReadOne(consumer), Message(64, i));
  }
  EXPECT_EQ(producer.wake_syscalls(), 0u);
  EXPECT_EQ(consumer.wake_syscalls(), 0u);
  EXPECT_EQ(ring.control()->wait.wake_syscalls.load(), 0u);
}

TEST(RingTest, CapacityValidation) {
  EXPECT_TRUE(ValidateRingCapacity(4096).ok());
  EXPECT_TRUE(ValidateRingCapacity(1 << 20).ok());
  EXPECT_EQ(ValidateRingCapacity(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateRingCapacity(2048).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateRingCapacity(5000).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateRingCapacity(kMaxRingCapacity * 2).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace eshm
