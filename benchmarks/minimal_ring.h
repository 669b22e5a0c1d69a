// The baseline ring of eshm's benchmarks (eshm-bench's minimal_ring): the smallest correct single-producer/
// single-consumer ring of variable-length messages, the classic way (Lamport's queue with cached indices, as in
// rigtorp's SPSCQueue, over bytes instead of slots). What anyone would write first, it publishes EVERY message:
// a release store of `tail` (producer) and of `head` (consumer) each, so the two index lines bounce between the
// cores once per message. No validation, blocking or crash recovery: a floor, not a library.
//
// Record: a u64 length, the payload, padding up to 8 bytes. A record never wraps: if it does not fit before
// the end of the data area, the producer writes kPaddingLength there and starts at offset 0. Positions are
// byte counts that only grow; `capacity` is a power of two.
#ifndef ESHM_BENCHMARKS_MINIMAL_RING_H_
#define ESHM_BENCHMARKS_MINIMAL_RING_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace eshm_bench {

// Shared by the two sides, its words a prefetch pair (128 bytes) apart; the data area follows it (8-aligned).
struct MinimalRingControl {
  alignas(128) std::atomic<std::uint64_t> tail;  // written by the producer only
  alignas(128) std::atomic<std::uint64_t> head;  // written by the consumer only
};

inline constexpr std::uint64_t kMinimalHeaderBytes = 8;
inline constexpr std::uint64_t kPaddingLength = ~std::uint64_t{0};

constexpr std::uint64_t MinimalRecordBytes(std::uint64_t size) { return kMinimalHeaderBytes + (size + 7) / 8 * 8; }

class MinimalRingProducer {
 public:
  MinimalRingProducer(MinimalRingControl* control, std::byte* data, std::uint64_t capacity)
      : control_(control), data_(data), capacity_(capacity), mask_(capacity - 1) {}

  // Zero-copy: room for a message of `size` bytes, which Commit publishes; nullptr if full now (or too large).
  std::byte* TryClaim(std::size_t size) {
    if (size > capacity_ / 2 - kMinimalHeaderBytes) return nullptr;  // more might never fit, wherever the wrap falls
    const std::uint64_t record = MinimalRecordBytes(size);
    const std::uint64_t to_end = capacity_ - (tail_ & mask_);
    const std::uint64_t needed = record <= to_end ? record : to_end + record;
    if (tail_ + needed - cached_head_ > capacity_) {
      // acquire: pairs with the consumer's release store of head; it is done with the bytes before head.
      cached_head_ = control_->head.load(std::memory_order_acquire);
      if (tail_ + needed - cached_head_ > capacity_) return nullptr;
    }
    if (record > to_end) std::memcpy(data_ + (tail_ & mask_), &kPaddingLength, kMinimalHeaderBytes);
    claimed_ = tail_ + needed - record;  // past the padding, if any
    const std::uint64_t length = size;
    std::byte* at = data_ + (claimed_ & mask_);
    std::memcpy(at, &length, kMinimalHeaderBytes);
    return at + kMinimalHeaderBytes;
  }
  void Commit(std::size_t size) {
    tail_ = claimed_ + MinimalRecordBytes(size);
    // release: pairs with the consumer's acquire load of tail; the record (and any padding) is written.
    control_->tail.store(tail_, std::memory_order_release);
  }

  // Copies the message in and publishes it. False if the ring is full now (or the message is too large).
  bool TryWrite(const void* message, std::size_t size) {
    std::byte* at = TryClaim(size);
    if (at == nullptr) return false;
    std::memcpy(at, message, size);
    Commit(size);
    return true;
  }

 private:
  MinimalRingControl* control_;
  std::byte* data_;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t tail_ = 0;
  std::uint64_t cached_head_ = 0;
  std::uint64_t claimed_ = 0;  // where the claimed record's header is
};

class MinimalRingConsumer {
 public:
  MinimalRingConsumer(MinimalRingControl* control, const std::byte* data, std::uint64_t capacity)
      : control_(control), data_(data), capacity_(capacity), mask_(capacity - 1) {}

  // Zero-copy: the next message in place (valid until Release), or false if the ring is empty.
  bool TryPeek(std::span<const std::byte>* message) {
    if (head_ == cached_tail_) {
      // acquire: pairs with the producer's release store of tail; records before it are complete.
      cached_tail_ = control_->tail.load(std::memory_order_acquire);
      if (head_ == cached_tail_) return false;
    }
    std::uint64_t length;
    std::memcpy(&length, data_ + (head_ & mask_), kMinimalHeaderBytes);
    if (length == kPaddingLength) {
      // Padding is always published together with the record after it.
      head_ += capacity_ - (head_ & mask_);
      std::memcpy(&length, data_ + (head_ & mask_), kMinimalHeaderBytes);
    }
    *message = std::span<const std::byte>(data_ + (head_ & mask_) + kMinimalHeaderBytes, length);
    return true;
  }
  void Release(std::size_t size) {
    head_ += MinimalRecordBytes(size);
    // release: pairs with the producer's acquire load of head; we are done reading before head_.
    control_->head.store(head_, std::memory_order_release);
  }

  // Copies the next message into `buffer` (truncated to fit), its length into `*size`; false if empty.
  bool TryRead(std::span<std::byte> buffer, std::size_t* size) {
    std::span<const std::byte> message;
    if (!TryPeek(&message)) return false;
    *size = message.size();
    std::memcpy(buffer.data(), message.data(), message.size() < buffer.size() ? message.size() : buffer.size());
    Release(message.size());
    return true;
  }

 private:
  MinimalRingControl* control_;
  const std::byte* data_;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t head_ = 0;
  std::uint64_t cached_tail_ = 0;
};

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_MINIMAL_RING_H_
