// BUG REPRODUCTION (tagged "manual": fails until eshm is fixed).
//
// RingProducer's and RingConsumer's constructors (eshm/ring.cc: RingProducer::RingProducer, ~line 106;
// RingConsumer::RingConsumer, ~line 304) resume at control->consumer.head without checking that it is
// 16-byte aligned. The head lives in shared memory and any process that can open the segment can write
// it (a hostile or buggy consumer, or a scribbler). With head = capacity - 1:
//  * the producer's resume walk reads a commit word at data + capacity - 1 (7 bytes past the data area),
//    ScrubFreeSpace() stores 8 bytes there (an unaligned atomic store, 7 bytes out of bounds), and the
//    next write stores a padding RecordHeader at data + capacity - 1 (15 bytes out of bounds, with length
//    0xFFFFFFF1): in a segment that is the next ring's RingControl (producer tail / messages_written);
//  * the consumer reads a 16-byte record header at data + capacity - 1 (15 bytes out of bounds).
// ring.h promises "never touches memory outside its data area" / "only ever writes inside its data area".
// Found by hostile_peer_test (RawRingSurvivesAScribbler with unaligned control words). Suggested fix:
// treat a head (and a resumed tail) that is not a multiple of kRecordAlignment as corruption (consumer:
// kCorrupt; producer: refuse / treat the ring as full and never write through it).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "eshm/layout.h"
#include "eshm/ring.h"
#include "gtest/gtest.h"

namespace eshm {
namespace {

constexpr std::uint64_t kCapacity = 4096;
constexpr std::uint64_t kGuard = 128;  // keeps the allocation a multiple of its alignment

struct Memory {
  Memory() : bytes(static_cast<std::byte*>(std::aligned_alloc(kFalseSharingRange, kRingControlBytes + kCapacity + kGuard))) {
    std::memset(bytes, 0, kRingControlBytes + kCapacity);
    std::memset(bytes + kRingControlBytes + kCapacity, 0xAB, kGuard);
    InitializeRing(control());
  }
  ~Memory() { std::free(bytes); }
  RingControl* control() { return reinterpret_cast<RingControl*>(bytes); }
  std::byte* data() { return bytes + kRingControlBytes; }
  int GuardBytesChanged() const {
    int changed = 0;
    for (std::uint64_t i = 0; i < kGuard; ++i) changed += bytes[kRingControlBytes + kCapacity + i] != std::byte{0xAB};
    return changed;
  }
  std::byte* bytes;
};

TEST(RingAlignmentBug, ProducerResumingAtAnUnalignedHeadWritesPastItsDataArea) {
  Memory m;
  m.control()->consumer.head.store(kCapacity - 1);  // what a hostile consumer publishes
  RingProducer producer(m.control(), m.data(), kCapacity, MaxPayloadForCapacity(kCapacity));
  EXPECT_EQ(m.GuardBytesChanged(), 0) << "the producer's attach (ScrubFreeSpace) wrote past its data area";
  const std::byte message[32] = {};
  (void)producer.TryWrite(message, sizeof(message));
  EXPECT_EQ(m.GuardBytesChanged(), 0) << "the producer's first write wrote past its data area";
}

TEST(RingAlignmentBug, ConsumerAtAnUnalignedHeadReportsCorruption) {
  Memory m;
  m.control()->consumer.head.store(kCapacity - 1);
  RingConsumer consumer(m.control(), m.data(), kCapacity, MaxPayloadForCapacity(kCapacity));
  std::byte buffer[64];
  std::size_t size = 0;
  // Today this reads a header at data + 4095 (out of bounds: ASan reports heap-buffer-overflow) and
  // returns kEmpty.
  EXPECT_EQ(consumer.TryRead(buffer, &size), ReadResult::kCorrupt);
}

}  // namespace
}  // namespace eshm
