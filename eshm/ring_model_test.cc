// Model-based tests of the ring: random operation sequences checked against a trivial reference queue,
// with payloads built to look like framing.
//
// Every payload is "hostile": at each 16-byte-aligned offset it carries what a record header at that ring
// offset would hold on some lap (the commit word of that offset's position on this lap, the next laps or
// the previous one, a plausible length, the data or padding kind), so any reader that ever takes message
// content for a record header delivers a message nobody sent, skips real ones, or stalls. The model knows
// where each payload lands because it tracks the producer's tail exactly as the ring defines it (records
// 16-byte aligned, a padding record where a record would cross the end, claims rewound by Abort and
// shrunk by Commit).
//
// What is checked after every step: everything delivered is exactly the next message written (content and
// length), in order, never a corruption report; and whenever the producer has flushed, the reader drains
// exactly what was written, so a reader lost inside a payload ("empty" forever) fails too.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "eshm/layout.h"
#include "eshm/ring.h"
#include "gtest/gtest.h"

namespace eshm {
namespace {

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
  RingProducer Producer() { return RingProducer(control(), data(), capacity_, MaxPayloadForCapacity(capacity_)); }
  RingConsumer Consumer() { return RingConsumer(control(), data(), capacity_, MaxPayloadForCapacity(capacity_)); }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::uint64_t capacity_;
  std::unique_ptr<std::byte, Free> memory_;
};

double StressScale() {
  const char* scale = std::getenv("ESHM_STRESS_SCALE");
  const double factor = scale != nullptr ? std::atof(scale) : 1.0;
  return factor > 0 ? factor : 1.0;
}

// Fills `payload`, which will sit at stream position `payload_position` of a ring of `capacity` bytes,
// with plausible record headers at every 16-byte-aligned offset. Bytes before the first aligned offset
// and after the last whole header get random values.
void FillHostile(std::span<std::byte> payload, std::uint64_t payload_position, std::uint64_t capacity,
                 std::mt19937_64& rng) {
  for (std::byte& b : payload) b = static_cast<std::byte>(rng());
  const std::uint64_t max_payload = MaxPayloadForCapacity(capacity);
  for (std::uint64_t at = 0; at + kRecordHeaderBytes <= payload.size(); at += kRecordAlignment) {
    const std::uint64_t position = payload_position + at;
    const std::uint64_t offset = position % capacity;
    // Which lap's commit word to plant: this lap's (a shrunk claim may make this a boundary), the next
    // ones (where a later reader will be), or the previous one.
    const int lap = static_cast<int>(rng() % 5) - 1;
    const std::uint64_t forged = position + static_cast<std::uint64_t>(lap) * capacity + 1;
    std::uint32_t length;
    std::uint32_t kind;
    if (rng() % 4 == 0) {
      kind = static_cast<std::uint32_t>(RecordKind::kPadding);
      length = static_cast<std::uint32_t>(capacity - offset - kRecordHeaderBytes);
    } else {
      kind = static_cast<std::uint32_t>(RecordKind::kData);
      const std::uint64_t room = std::min(max_payload, capacity - offset - kRecordHeaderBytes);
      length = static_cast<std::uint32_t>(rng() % 3 == 0 ? 0 : rng() % (room + 1));
    }
    std::memcpy(payload.data() + at, &forged, 8);
    std::memcpy(payload.data() + at + 8, &length, 4);
    std::memcpy(payload.data() + at + 12, &kind, 4);
  }
}

// The producer's tail as the ring defines it.
struct TailModel {
  std::uint64_t capacity;
  std::uint64_t tail = 0;
  // Where a record of `payload` bytes written now starts, and the tail before it (for Abort).
  std::uint64_t StartOf(std::uint64_t payload) const {
    const std::uint64_t to_end = capacity - tail % capacity;
    return RecordBytes(payload) > to_end ? tail + to_end : tail;
  }
};

class RingModelTest : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(RingModelTest, RandomOperationsDeliverExactlyWhatWasWritten) {
  const std::uint64_t capacity = GetParam();
  const std::uint64_t max_payload = MaxPayloadForCapacity(capacity);
  HeapRing ring(capacity);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  std::mt19937_64 rng(0x5eed0000 + capacity);
  TailModel model{capacity};
  std::deque<std::vector<std::byte>> written;  // written (published or staged), not yet read
  bool staged = false;                         // deferred writes since the last publication
  std::vector<std::byte> buffer(max_payload);

  auto size_of_next = [&]() -> std::uint64_t {
    switch (rng() % 8) {
      case 0:
        return 0;
      case 1:
        return max_payload;  // half a ring
      case 2:
        return max_payload - rng() % 64;
      case 3:
        return rng() % (max_payload + 1);
      default:
        return rng() % 200;
    }
  };
  auto check_read = [&](std::span<const std::byte> got) {
    ASSERT_FALSE(written.empty()) << "read a message nobody wrote (" << got.size() << " bytes)";
    ASSERT_EQ(got.size(), written.front().size()) << "wrong length";
    ASSERT_TRUE(std::equal(got.begin(), got.end(), written.front().begin())) << "wrong content";
    written.pop_front();
  };
  auto read_one = [&]() -> bool {
    std::size_t size = 0;
    const ReadResult result = consumer.TryRead(buffer, &size);
    EXPECT_NE(result, ReadResult::kCorrupt) << consumer.corruption_status();
    EXPECT_NE(result, ReadResult::kBufferTooSmall);
    if (result != ReadResult::kOk) return false;
    check_read(std::span<const std::byte>(buffer.data(), size));
    return true;
  };
  auto drain_all = [&] {
    producer.Flush();
    staged = false;
    while (read_one()) {
    }
    ASSERT_TRUE(written.empty()) << written.size() << " written messages were never delivered";
  };

  const int steps = static_cast<int>(60000 * StressScale());
  int laps_checked = 0;
  for (int step = 0; step < steps && !HasFailure(); ++step) {
    switch (rng() % 10) {
      case 0:
      case 1:
      case 2: {  // copy write, published now or deferred
        const std::uint64_t size = size_of_next();
        const std::uint64_t start = model.StartOf(size);
        std::vector<std::byte> message(size);
        FillHostile(message, start + kRecordHeaderBytes, capacity, rng);
        const Publish publish = rng() % 2 == 0 ? Publish::kNow : Publish::kDeferred;
        if (producer.TryWrite(message, publish)) {
          model.tail = start + RecordBytes(size);
          written.push_back(std::move(message));
          staged = publish == Publish::kDeferred;
        } else {
          staged = false;  // a failed write publishes what was staged
        }
        break;
      }
      case 3: {  // zero-copy claim: commit whole, commit shrunk, or abort, after writing hostile bytes
        const std::uint64_t size = size_of_next();
        const std::uint64_t start = model.StartOf(size);
        std::byte* slot = producer.TryClaim(size);
        if (slot == nullptr) {
          staged = false;
          break;
        }
        ASSERT_EQ(slot, ring.data() + start % capacity + kRecordHeaderBytes) << "the model lost the tail";
        std::span<std::byte> claimed(slot, size);
        FillHostile(claimed, start + kRecordHeaderBytes, capacity, rng);
        const int ending = static_cast<int>(rng() % 3);
        if (ending == 0) {
          producer.Abort();
          break;
        }
        const std::uint64_t committed = ending == 1 ? size : (size == 0 ? 0 : rng() % size);
        const Publish publish = rng() % 2 == 0 ? Publish::kNow : Publish::kDeferred;
        producer.Commit(committed, publish);
        model.tail = start + RecordBytes(committed);
        written.emplace_back(slot, slot + committed);
        staged = publish == Publish::kDeferred;
        break;
      }
      case 4:
        producer.Flush();
        staged = false;
        break;
      case 5:
      case 6: {  // copy reads, sometimes a batch of them
        const int count = rng() % 4 == 0 ? static_cast<int>(rng() % 16) + 1 : 1;
        for (int i = 0; i < count && read_one(); ++i) {
        }
        break;
      }
      case 7: {  // peek, look, release (or peek twice first)
        std::span<const std::byte> message;
        const ReadResult result = consumer.TryPeek(&message);
        ASSERT_NE(result, ReadResult::kCorrupt) << consumer.corruption_status();
        if (result != ReadResult::kOk) break;
        if (rng() % 3 == 0) {
          std::span<const std::byte> again;
          ASSERT_EQ(consumer.TryPeek(&again), ReadResult::kOk);
          ASSERT_EQ(again.data(), message.data());
        }
        check_read(message);
        consumer.Release();
        break;
      }
      case 8: {  // a buffer one byte too small keeps the message in the ring
        std::span<const std::byte> next;
        if (consumer.TryPeek(&next) != ReadResult::kOk || next.empty()) break;
        std::size_t size = 0;
        ASSERT_EQ(consumer.TryRead(std::span<std::byte>(buffer.data(), next.size() - 1), &size),
                  ReadResult::kBufferTooSmall);
        ASSERT_EQ(size, next.size());
        break;
      }
      case 9:
        if (!staged) {
          // Nothing staged: everything written is visible, and the reader must get all of it.
          drain_all();
          ++laps_checked;
        } else {
          (void)consumer.HasData();
        }
        break;
    }
  }
  drain_all();
  EXPECT_GT(model.tail / capacity, 20u) << "too few laps to be meaningful";
  EXPECT_GT(laps_checked, 10);
}

INSTANTIATE_TEST_SUITE_P(Capacities, RingModelTest, ::testing::Values(4096, 8192, 65536),
                         [](const ::testing::TestParamInfo<std::uint64_t>& param) {
                           return "capacity_" + std::to_string(param.param);
                         });

// The same hostile payloads between two threads: a writer of sequence-numbered messages (claims, deferred
// batches and copies), a reader that checks every one.
TEST(RingModelThreadedTest, HostilePayloadsAcrossThreadsArriveIntactAndInOrder) {
  constexpr std::uint64_t kCapacity = 4096;
  const std::uint64_t max_payload = MaxPayloadForCapacity(kCapacity);
  HeapRing ring(kCapacity);
  RingProducer producer = ring.Producer();
  RingConsumer consumer = ring.Consumer();
  const std::uint64_t messages = static_cast<std::uint64_t>(200000 * StressScale());
  // Message i: 8-byte sequence number, then hostile bytes; its size is a function of i.
  auto size_of = [&](std::uint64_t i) -> std::uint64_t {
    const std::uint64_t h = i * 0x9E3779B97F4A7C15ull >> 40;
    switch (h % 6) {
      case 0:
        return 8;
      case 1:
        return max_payload;
      default:
        return 8 + h % (max_payload - 8);
    }
  };
  std::atomic<bool> reader_failed{false};
  std::thread reader([&] {
    std::vector<std::byte> buffer(max_payload);
    for (std::uint64_t i = 0; i < messages; ++i) {
      auto size = consumer.Read(buffer, WaitStrategy::Adaptive(), Deadline::AfterMs(20000));
      if (!size.ok() || *size != size_of(i)) {
        ADD_FAILURE() << "message " << i << ": " << size.status() << " size "
                      << (size.ok() ? *size : 0) << " expected " << size_of(i);
        reader_failed = true;
        return;
      }
      std::uint64_t seq;
      std::memcpy(&seq, buffer.data(), 8);
      if (seq != i) {
        ADD_FAILURE() << "expected message " << i << ", got " << seq;
        reader_failed = true;
        return;
      }
    }
  });
  std::mt19937_64 rng(42);
  TailModel model{kCapacity};
  auto stop_if_reader_failed = [&]() -> absl::Status {
    return reader_failed ? absl::AbortedError("the reader failed") : absl::OkStatus();
  };
  for (std::uint64_t i = 0; i < messages && !reader_failed; ++i) {
    const std::uint64_t size = size_of(i);
    const std::uint64_t start = model.StartOf(size);
    const int how = static_cast<int>(i % 3);
    if (how == 0) {  // claim, hostile bytes, commit
      std::byte* slot = nullptr;
      for (;;) {
        slot = producer.TryClaim(size);
        if (slot != nullptr || reader_failed) break;
        const absl::Status waited = producer.WaitForSpace(size, WaitStrategy::Adaptive(), Deadline::AfterMs(20000),
                                                          stop_if_reader_failed);
        if (!waited.ok()) {
          ADD_FAILURE() << "writer, message " << i << ": " << waited;
          break;
        }
      }
      if (slot == nullptr) break;
      std::span<std::byte> claimed(slot, size);
      FillHostile(claimed, start + kRecordHeaderBytes, kCapacity, rng);
      std::memcpy(slot, &i, 8);
      producer.Commit(size, i % 7 == 0 ? Publish::kDeferred : Publish::kNow);
    } else {
      std::vector<std::byte> message(size);
      FillHostile(message, start + kRecordHeaderBytes, kCapacity, rng);
      std::memcpy(message.data(), &i, 8);
      const Publish publish = how == 1 ? Publish::kDeferred : Publish::kNow;
      const absl::Status status = producer.Write(message, WaitStrategy::Adaptive(), Deadline::AfterMs(20000), publish,
                                                 stop_if_reader_failed);
      if (!status.ok()) {
        ADD_FAILURE() << "writer, message " << i << ": " << status;
        break;
      }
    }
    // The model follows what the producer did: a write that waited may have found the ring otherwise, but
    // the tail only depends on the sizes written.
    model.tail = start + RecordBytes(size);
  }
  producer.Flush();
  reader.join();  // the reader gives up by itself (deadline) if the writer stopped early
}

}  // namespace
}  // namespace eshm
