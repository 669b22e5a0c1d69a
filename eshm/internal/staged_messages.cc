#include "eshm/internal/staged_messages.h"

#include <atomic>
#include <cstring>

namespace eshm::internal {
namespace {

// One record header, each field read once (the memory may change under us).
struct Header {
  std::uint64_t commit;
  std::uint32_t length;
  std::uint32_t kind;
};

Header ReadHeader(const std::byte* data, std::uint64_t offset) {
  const RecordHeader* h = reinterpret_cast<const RecordHeader*>(data + offset);
  Header out;
  // SYNC(commit): acquire pairs with the producer's release in ring.cc (Flush/AddToBatch): a committed
  // record's length and kind are complete when its commit word is seen.
  out.commit = h->commit.load(std::memory_order_acquire);
  std::memcpy(&out.length, &h->length, sizeof(out.length));
  std::memcpy(&out.kind, &h->kind, sizeof(out.kind));
  return out;
}

// Bytes the record at `position` takes, or 0 if its header is not a valid record there.
std::uint64_t RecordSpan(const Header& h, std::uint64_t position, std::uint64_t capacity,
                         std::uint64_t max_message_bytes) {
  const std::uint64_t to_end = capacity - (position & (capacity - 1));
  if (h.kind == static_cast<std::uint32_t>(RecordKind::kPadding)) return to_end;
  if (h.kind != static_cast<std::uint32_t>(RecordKind::kData) || h.length > max_message_bytes) return 0;
  const std::uint64_t bytes = RecordBytes(h.length);
  return bytes <= to_end ? bytes : 0;
}

}  // namespace

bool CopyStagedMessages(const RingControl& control, const std::byte* data, std::uint64_t capacity,
                        std::uint64_t staged_bytes, std::uint64_t max_message_bytes,
                        std::vector<std::vector<std::byte>>* out) {
  if (staged_bytes == 0) return true;
  if (staged_bytes > capacity) return false;
  const std::uint64_t mask = capacity - 1;
  // SYNC(head): acquire pairs with the consumer's release in RingConsumer::Advance; only a starting point:
  // records between it and the staged batch stay untouched while the producer (this thread) stages.
  const std::uint64_t head = control.consumer.head.load(std::memory_order_acquire) & ~(kRecordAlignment - 1);

  // The staged batch starts at the first record from the head whose commit word is withheld.
  std::uint64_t position = head;
  for (;;) {
    if (position - head >= capacity) return false;  // every record committed: no batch to find
    const Header h = ReadHeader(data, position & mask);
    if (h.commit != position + 1) break;
    const std::uint64_t bytes = RecordSpan(h, position, capacity, max_message_bytes);
    if (bytes == 0) return false;
    position += bytes;
  }
  const std::uint64_t start = position;
  const std::uint64_t end = start + staged_bytes;
  if (end - head > capacity) return false;

  while (position < end) {
    const Header h = ReadHeader(data, position & mask);
    if (position != start && h.commit != position + 1) return false;
    const std::uint64_t bytes = RecordSpan(h, position, capacity, max_message_bytes);
    if (bytes == 0 || bytes > end - position) return false;
    if (h.kind == static_cast<std::uint32_t>(RecordKind::kData)) {
      const std::byte* payload = data + (position & mask) + kRecordHeaderBytes;
      out->emplace_back(payload, payload + h.length);
    }
    position += bytes;
  }
  return true;
}

}  // namespace eshm::internal
