#include "eshm/internal/staged_messages.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "eshm/layout.h"
#include "eshm/ring.h"
#include "gtest/gtest.h"

namespace eshm::internal {
namespace {

// A ring on the heap: RingControl followed by `capacity` bytes of data, aligned like a segment.
class HeapRing {
 public:
  explicit HeapRing(std::uint64_t capacity)
      : capacity_(capacity),
        memory_(static_cast<std::byte*>(std::aligned_alloc(kFalseSharingRange, kRingControlBytes + capacity))) {
    std::memset(memory_.get(), 0, kRingControlBytes + capacity);
    InitializeRing(control());
  }
  RingControl* control() { return reinterpret_cast<RingControl*>(memory_.get()); }
  std::byte* data() { return memory_.get() + kRingControlBytes; }
  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t max_message() const { return MaxPayloadForCapacity(capacity_); }
  RingProducer Producer() { return RingProducer(control(), data(), capacity_, max_message()); }
  RingConsumer Consumer() { return RingConsumer(control(), data(), capacity_, max_message()); }

  bool Copy(const RingProducer& producer, std::vector<std::vector<std::byte>>* out) {
    return CopyStagedMessages(*control(), data(), capacity_, producer.staged_bytes(), max_message(), out);
  }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::uint64_t capacity_;
  std::unique_ptr<std::byte, Free> memory_;
};

std::vector<std::byte> Message(std::size_t size, std::uint32_t seed) {
  std::vector<std::byte> m(size);
  for (std::size_t i = 0; i < size; ++i) m[i] = static_cast<std::byte>(seed * 31 + i);
  return m;
}

TEST(StagedMessagesTest, NothingStagedReadsBackNothing) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  ASSERT_TRUE(producer.TryWrite(Message(10, 1)));  // published
  std::vector<std::vector<std::byte>> out;
  EXPECT_TRUE(ring.Copy(producer, &out));
  EXPECT_TRUE(out.empty());
}

TEST(StagedMessagesTest, ReadsBackTheStagedMessagesAfterThePublishedOnes) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  ASSERT_TRUE(producer.TryWrite(Message(10, 1)));
  ASSERT_TRUE(producer.TryWrite(Message(0, 2)));
  std::vector<std::byte> buffer(4096);
  std::size_t size = 0;
  ASSERT_EQ(consumer.TryRead(buffer, &size), ReadResult::kOk);  // read one, keep one queued
  std::vector<std::vector<std::byte>> staged = {Message(100, 3), Message(0, 4), Message(7, 5)};
  for (const auto& m : staged) ASSERT_TRUE(producer.TryWrite(m, Publish::kDeferred));
  std::vector<std::vector<std::byte>> out;
  EXPECT_TRUE(ring.Copy(producer, &out));
  EXPECT_EQ(out, staged);
  // Reading back changed nothing: publishing them now delivers them as written.
  producer.Flush();
  ASSERT_EQ(consumer.TryRead(buffer, &size), ReadResult::kOk);
  EXPECT_EQ(size, 0u);
  for (const auto& m : staged) {
    ASSERT_EQ(consumer.TryRead(buffer, &size), ReadResult::kOk);
    EXPECT_EQ(std::vector<std::byte>(buffer.begin(), buffer.begin() + size), m);
  }
}

TEST(StagedMessagesTest, ReadsBackABatchThatWrapsWithPadding) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  std::vector<std::byte> buffer(4096);
  std::size_t size = 0;
  // Move the positions near the end of the data area, everything read.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(producer.TryWrite(Message(700, i)));
    ASSERT_EQ(consumer.TryRead(buffer, &size), ReadResult::kOk);
  }
  std::vector<std::vector<std::byte>> staged;
  for (int i = 0; i < 4; ++i) {  // 4 x 240 bytes: the third crosses the end of the data area
    staged.push_back(Message(224, 10 + i));
    ASSERT_TRUE(producer.TryWrite(staged.back(), Publish::kDeferred));
  }
  std::vector<std::vector<std::byte>> out;
  EXPECT_TRUE(ring.Copy(producer, &out));
  EXPECT_EQ(out, staged);
}

TEST(StagedMessagesTest, AnAbortedClaimAfterTheBatchIsNotPartOfIt) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  const std::vector<std::byte> staged = Message(50, 1);
  ASSERT_TRUE(producer.TryWrite(staged, Publish::kDeferred));
  std::byte* claim = producer.TryClaim(100);
  ASSERT_NE(claim, nullptr);
  std::memset(claim, 0xee, 100);
  producer.Abort();
  std::vector<std::vector<std::byte>> out;
  EXPECT_TRUE(ring.Copy(producer, &out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], staged);
}

TEST(StagedMessagesTest, AScribbledRecordIsReportedNotTrusted) {
  HeapRing ring(4096);
  RingProducer producer = ring.Producer();
  const std::vector<std::byte> first = Message(40, 1);
  ASSERT_TRUE(producer.TryWrite(first, Publish::kDeferred));
  ASSERT_TRUE(producer.TryWrite(Message(40, 2), Publish::kDeferred));
  // A peer overwrites the second record's length with something that runs past the data area.
  RecordHeader* second = reinterpret_cast<RecordHeader*>(ring.data() + RecordBytes(40));
  second->length = 1u << 30;
  std::vector<std::vector<std::byte>> out;
  EXPECT_FALSE(ring.Copy(producer, &out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], first);
  // More staged bytes than the ring holds: refused before anything is read.
  out.clear();
  EXPECT_FALSE(CopyStagedMessages(*ring.control(), ring.data(), ring.capacity(), ring.capacity() + 16,
                                  ring.max_message(), &out));
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace eshm::internal
