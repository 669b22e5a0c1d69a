// libFuzzer harness: arbitrary bytes as a ring's shared memory (its RingControl and data area).
//
// Input layout: byte 0 selects the capacity (bit 0: 4096 or 8192) and how the consumer reads (bits 1-2:
// TryRead into a max_message_bytes buffer, TryPeek + Release, TryRead into a 64-byte buffer, or a mix);
// the rest is copied over a 128-byte-aligned heap block of sizeof(RingControl) + capacity bytes (zero
// padded, extra bytes ignored). The block is exactly as large as the ring, so ASan reports any access the
// consumer or the producer makes outside it.
//
// The consumer reads until empty or corrupt (bounded). If it ends empty (not corrupt), a producer attached
// over the same memory then writes a few messages, and the consumer must read back exactly those messages
// in order: a hostile previous producer cannot make a fresh producer's writes unreadable or reordered.
// The producer is also exercised when the consumer found corruption; it must still stay inside its block.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "eshm/layout.h"
#include "eshm/ring.h"

namespace {

void Fail(const char* what) {
  std::fprintf(stderr, "ring_reader_fuzzer: %s\n", what);
  std::abort();
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

// Reads one message with the given mode. Sets *out to its bytes on kOk.
eshm::ReadResult ReadOne(eshm::RingConsumer& consumer, int mode, int i, std::uint64_t max_message,
                         std::vector<std::byte>* out) {
  if (mode == 3) mode = i % 3;
  if (mode == 1) {
    std::span<const std::byte> message;
    eshm::ReadResult result = consumer.TryPeek(&message);
    if (result == eshm::ReadResult::kOk) {
      std::span<const std::byte> again;
      if (consumer.TryPeek(&again) != eshm::ReadResult::kOk || again.data() != message.data() ||
          again.size() != message.size()) {
        Fail("a second TryPeek returned a different message");
      }
      if (message.size() > max_message) Fail("peeked a message above the maximum size");
      out->assign(message.begin(), message.end());  // touches every byte: ASan checks them
      consumer.Release();
    }
    return result;
  }
  std::vector<std::byte> buffer(mode == 2 ? 64 : max_message);
  std::size_t size = 0;
  eshm::ReadResult result = consumer.TryRead(buffer, &size);
  if (result == eshm::ReadResult::kBufferTooSmall) {
    if (mode != 2 || size <= buffer.size() || size > max_message) Fail("bad kBufferTooSmall");
    // The message stays in the ring: read it with a large enough buffer.
    buffer.resize(max_message);
    std::size_t again = 0;
    result = consumer.TryRead(buffer, &again);
    if (result != eshm::ReadResult::kOk || again != size) Fail("message changed after kBufferTooSmall");
  }
  if (result == eshm::ReadResult::kOk) {
    if (size > buffer.size()) Fail("TryRead reported more bytes than fit its buffer");
    out->assign(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(size));
  }
  return result;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t selector = data[0];
  ++data;
  --size;
  const std::uint64_t capacity = (selector & 1) ? 8192 : 4096;
  const int mode = (selector >> 1) & 3;
  const std::uint64_t max_message = eshm::MaxPayloadForCapacity(capacity);
  const std::size_t block_bytes = sizeof(eshm::RingControl) + capacity;  // a multiple of 128

  std::unique_ptr<void, AlignedFree> block(std::aligned_alloc(alignof(eshm::RingControl), block_bytes));
  if (!block) Fail("out of memory");
  std::memset(block.get(), 0, block_bytes);
  std::memcpy(block.get(), data, size < block_bytes ? size : block_bytes);
  auto* control = static_cast<eshm::RingControl*>(block.get());
  auto* ring_data = static_cast<std::byte*>(block.get()) + sizeof(eshm::RingControl);

  eshm::RingConsumer consumer(control, ring_data, capacity, max_message);
  eshm::ReadResult result = eshm::ReadResult::kOk;
  std::vector<std::byte> message;
  for (int i = 0; i < 1000 && result == eshm::ReadResult::kOk; ++i) {
    result = ReadOne(consumer, mode, i, max_message, &message);
  }
  if (result != eshm::ReadResult::kOk) {
    if ((result == eshm::ReadResult::kCorrupt) != consumer.corrupted()) Fail("kCorrupt without corrupted()");
    if (consumer.corrupted() && consumer.corruption_status().ok()) Fail("corrupted() with an OK status");
    if (result == eshm::ReadResult::kCorrupt && consumer.HasData() != true) Fail("corrupt ring without data");
  }
  const bool drained = result == eshm::ReadResult::kEmpty;

  // A producer attaching over the same memory; its writes must stay inside the block.
  eshm::RingProducer producer(control, ring_data, capacity, max_message);
  const std::size_t sizes[] = {0, 1, 15, 16, 17, 100, 1000, static_cast<std::size_t>(max_message), 300, 7};
  std::vector<std::vector<std::byte>> written;
  for (std::size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); ++k) {
    std::vector<std::byte> payload(sizes[k], static_cast<std::byte>(0xA0 + k));
    const eshm::Publish publish = (k % 3 == 2) ? eshm::Publish::kDeferred : eshm::Publish::kNow;
    if (producer.TryWrite(payload, publish)) written.push_back(std::move(payload));
  }
  producer.Flush();
  if (!drained) return 0;

  // The consumer was caught up, so it must read back exactly what the producer wrote.
  for (std::size_t k = 0; k < written.size(); ++k) {
    std::vector<std::byte> got;
    const eshm::ReadResult r = ReadOne(consumer, mode, static_cast<int>(k), max_message, &got);
    if (r != eshm::ReadResult::kOk) {
      std::fprintf(stderr, "message %zu of %zu: %s (%s)\n", k, written.size(), eshm::ReadResultName(r),
                   consumer.corruption_status().ToString().c_str());
      Fail("a message the producer wrote could not be read back");
    }
    if (got != written[k]) Fail("read back a different message than the producer wrote");
  }
  std::vector<std::byte> extra;
  if (ReadOne(consumer, mode, 0, max_message, &extra) != eshm::ReadResult::kEmpty) {
    Fail("the consumer read more messages than the producer wrote");
  }
  return 0;
}
