// Regression test: a ring whose shared head is not at a record boundary.
//
// The head lives in shared memory, and any process that can open the segment can write it (a hostile or
// buggy consumer, or a scribbler). The ring's constructors once resumed at such a head unchecked: with
// head = capacity - 1 the producer read and wrote a commit word and a padding header up to 15 bytes past
// the data area (into the next ring's control block), and the consumer read a record header there. ring.h
// promises the ring never touches memory outside its data area. Now a head (or a resumed tail) that is
// not a multiple of kRecordAlignment is corruption: the consumer reports kCorrupt, the producer treats
// the ring as full and never writes through it. Found by hostile_peer_test (RawRingSurvivesAScribbler
// with unaligned control words). The data area here is followed by guard bytes that must stay intact.
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

TEST(RingUnalignedHead, ProducerResumingAtAnUnalignedHeadWritesPastItsDataArea) {
  Memory m;
  m.control()->consumer.head.store(kCapacity - 1);  // what a hostile consumer publishes
  RingProducer producer(m.control(), m.data(), kCapacity, MaxPayloadForCapacity(kCapacity));
  EXPECT_EQ(m.GuardBytesChanged(), 0) << "the producer's attach (ScrubFreeSpace) wrote past its data area";
  const std::byte message[32] = {};
  (void)producer.TryWrite(message, sizeof(message));
  EXPECT_EQ(m.GuardBytesChanged(), 0) << "the producer's first write wrote past its data area";
}

TEST(RingUnalignedHead, ConsumerAtAnUnalignedHeadReportsCorruption) {
  Memory m;
  m.control()->consumer.head.store(kCapacity - 1);
  RingConsumer consumer(m.control(), m.data(), kCapacity, MaxPayloadForCapacity(kCapacity));
  std::byte buffer[64];
  std::size_t size = 0;
  // Before the fix this read a header at data + 4095 (out of bounds: ASan saw a heap-buffer-overflow) and
  // returned kEmpty.
  EXPECT_EQ(consumer.TryRead(buffer, &size), ReadResult::kCorrupt);
}

}  // namespace
}  // namespace eshm
