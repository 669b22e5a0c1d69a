// Two processes stream messages through a real segment and check every byte.
//
// Each stream is a pure function of (seed, sequence number): the size of message `seq` and its content
// come from a PRNG seeded with them, so the reader regenerates what the writer sent without any side
// channel and can tell a lost, repeated, reordered, truncated or corrupted message apart. A payload is
//
//   [seq: u64 little-endian][filler from PRNG(seed, seq)...][checksum of everything before: u64]
//
// cut to the message's size (shorter messages keep a prefix of the seq; the checksum needs 16 bytes).
//
// The parent creates the segment and forks a writer and a reader, each of which opens it by name (so it
// maps it at its own address) and exits 0 or prints what went wrong and exits 1. The parent stays single-
// threaded and only waits, with a watchdog. Message counts scale with ESHM_STRESS_SCALE (see README.md).
// The wakeup tests at the end instead play one side in the parent and watch the other through /proc.
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/segment.h"
#include "eshm/wait_strategy.h"
#include "gtest/gtest.h"
#include "tests/fork_util.h"

namespace eshm {
namespace {

using eshm_test::Child;

// ---------------------------------------------------------------------------------------------------------
// Scale and budgets

double StressScale() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  double scale = 0.05;  // sanitized code is 5-20x slower; the env var still wins
#else
  double scale = 1.0;
#endif
  if (const char* text = std::getenv("ESHM_STRESS_SCALE"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    const double value = std::strtod(text, &end);
    if (end != text && *end == '\0' && value > 0 && std::isfinite(value)) scale = value;
  }
  return scale;
}

// Never fewer than this, so every size-class boundary (the first messages of a stream) is always sent.
constexpr std::uint64_t kMinMessages = 200;

std::uint64_t Scaled(std::uint64_t base) {
  const double scaled = std::round(static_cast<double>(base) * StressScale());
  return std::max<std::uint64_t>(kMinMessages, static_cast<std::uint64_t>(std::min(scaled, 1e12)));
}

// How long a child may go without progress (one blocking call, or spinning for one message) before it
// reports a stall. A healthy peer answers in microseconds, a loaded machine in well under a second.
constexpr std::int64_t kStallMs = 10'000;
// The parent's last resort: it kills both children after this. Far above any healthy run (seconds).
const absl::Duration kWatchdog = absl::Seconds(200);

// ---------------------------------------------------------------------------------------------------------
// Child-side reporting: no gtest in children, just stderr and the exit code.

int Fail(const char* who, const char* format, ...) __attribute__((format(printf, 2, 3)));
int Fail(const char* who, const char* format, ...) {
  char text[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof(text), format, args);
  va_end(args);
  std::fprintf(stderr, "[%s pid %d] FAILED: %s\n", who, static_cast<int>(getpid()), text);
  return 1;
}

// Busy-waits politely: a pause hint, and a yield now and then so a peer sharing the core gets to run.
class Spinner {
 public:
  // False once kStallMs have passed since the last Progress() (checked now and then, so a little later).
  bool Pause() {
    if ((++spins_ & 63) != 0) {
      CpuRelax();
      return true;
    }
    sched_yield();
    if ((spins_ & 1023) == 0) {
      const std::int64_t now = MonotonicNowNs();
      if (stalled_since_ == 0) stalled_since_ = now;
      if (now - stalled_since_ > kStallMs * 1'000'000) return false;
    }
    return true;
  }
  void Progress() {
    spins_ = 0;
    stalled_since_ = 0;
  }

 private:
  std::uint64_t spins_ = 0;
  std::int64_t stalled_since_ = 0;
};

// ---------------------------------------------------------------------------------------------------------
// Streams

std::uint64_t Mix(std::uint64_t x) {  // the splitmix64 finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

enum class SizeMix {
  kEveryClass,   // mostly small, some medium, a few near the maximum: 0, 1-15, 16-255, 256-4095, 4096-max
  kMostlyLarge,  // three in four within the top quarter below the maximum, the rest anywhere
};

struct StreamSpec {
  std::uint64_t seed = 1;
  std::uint64_t count = 0;
  std::uint64_t max_size = 0;
  SizeMix mix = SizeMix::kEveryClass;
};

// A size in [lo, hi], spread evenly over the powers of two in between so that small sizes are not drowned.
std::uint64_t LogUniform(std::uint64_t r, std::uint64_t lo, std::uint64_t hi) {
  if (lo >= hi) return lo;
  const int lo_bit = lo == 0 ? 0 : 63 - __builtin_clzll(lo);
  const int hi_bit = 63 - __builtin_clzll(hi);
  const int bit = lo_bit + static_cast<int>(r % static_cast<std::uint64_t>(hi_bit - lo_bit + 1));
  const std::uint64_t from = std::max(lo, std::uint64_t{1} << bit);
  const std::uint64_t to = std::min(hi, (std::uint64_t{2} << bit) - 1);
  return from + (r >> 8) % (to - from + 1);
}

std::uint64_t MessageSize(const StreamSpec& s, std::uint64_t seq) {
  // Every stream starts with the boundaries of each size class, whatever the mix.
  const std::uint64_t edges[] = {0, 1, 7, 8, 9, 15, 16, 17, 255, 256, 4095, 4096, s.max_size - 1, s.max_size};
  if (seq < std::size(edges)) return std::min(edges[seq], s.max_size);
  const std::uint64_t r = Mix(s.seed ^ Mix(seq));
  const std::uint64_t pick = r % 1000;
  const std::uint64_t v = r >> 10;
  const std::uint64_t max = s.max_size;
  if (s.mix == SizeMix::kMostlyLarge) {
    if (pick < 750) return max - v % (max / 4 + 1);
    return v % (max + 1);
  }
  // Weights per thousand keep the average under 1 KiB, so millions of messages stay fast.
  if (pick < 30) return 0;
  if (pick < 230) return std::min(max, 1 + v % 15);
  if (pick < 700) return std::min(max, LogUniform(v, 16, 255));
  if (pick < 998 || max < 4096) return std::min(max, LogUniform(v, 256, 4095));
  return LogUniform(v, 4096, max);
}

std::uint64_t Checksum(const std::byte* data, std::size_t size) {
  std::uint64_t h = 0x243f6a8885a308d3ull ^ size;
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, data + i, 8);
    h = ((h ^ w) * 0x100000001b3ull);
    h ^= h >> 29;
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, data + i, size - i);
  return Mix(h ^ tail);
}

// Writes message `seq` of `size` bytes to `out`.
void FillPayload(const StreamSpec& s, std::uint64_t seq, std::byte* out, std::size_t size) {
  std::byte seq_bytes[8];
  for (int i = 0; i < 8; ++i) seq_bytes[i] = static_cast<std::byte>(seq >> (8 * i));
  std::memcpy(out, seq_bytes, std::min<std::size_t>(size, 8));
  if (size <= 8) return;
  const std::size_t body_end = size >= 16 ? size - 8 : size;
  const std::uint64_t base = Mix(s.seed * 0x9e3779b97f4a7c15ull + seq);
  for (std::size_t i = 8; i < body_end; i += 8) {
    const std::uint64_t w = Mix(base + i);
    std::memcpy(out + i, &w, std::min<std::size_t>(8, body_end - i));
  }
  if (size >= 16) {
    const std::uint64_t sum = Checksum(out, size - 8);
    std::memcpy(out + size - 8, &sum, 8);
  }
}

unsigned long long ULL(std::uint64_t v) { return static_cast<unsigned long long>(v); }

// Checks messages, in order, against the stream.
class StreamChecker {
 public:
  StreamChecker(const char* who, const StreamSpec& spec) : who_(who), spec_(spec), expected_(spec.max_size + 1) {}

  std::uint64_t next_seq() const { return seq_; }
  std::uint64_t next_size() const { return MessageSize(spec_, seq_); }
  bool done() const { return seq_ == spec_.count; }

  // 0 if `message` is the next message of the stream (and advances), otherwise the Fail code.
  int Check(std::span<const std::byte> message) {
    const std::uint64_t want_size = next_size();
    if (message.size() >= 8) {
      std::uint64_t got_seq = 0;
      for (int i = 0; i < 8; ++i) got_seq |= std::uint64_t(std::to_integer<std::uint8_t>(message[i])) << (8 * i);
      if (got_seq != seq_) {
        return Fail(who_, "message %llu (expected %llu bytes) arrived with sequence number %llu and %zu bytes: "
                          "lost, repeated or reordered",
                    ULL(seq_), ULL(want_size), ULL(got_seq), message.size());
      }
    }
    if (message.size() != want_size) {
      return Fail(who_, "message %llu has %zu bytes, expected %llu", ULL(seq_), message.size(), ULL(want_size));
    }
    if (want_size >= 16) {
      std::uint64_t sum;
      std::memcpy(&sum, message.data() + want_size - 8, 8);
      if (sum != Checksum(message.data(), want_size - 8)) {
        return Fail(who_, "message %llu (%llu bytes) fails its checksum", ULL(seq_), ULL(want_size));
      }
    }
    FillPayload(spec_, seq_, expected_.data(), want_size);
    if (want_size > 0 && std::memcmp(message.data(), expected_.data(), want_size) != 0) {
      std::size_t at = 0;
      while (message[at] == expected_[at]) ++at;
      return Fail(who_, "message %llu (%llu bytes) differs from what was sent at byte %zu", ULL(seq_),
                  ULL(want_size), at);
    }
    ++seq_;
    return 0;
  }

 private:
  const char* who_;
  StreamSpec spec_;
  std::vector<std::byte> expected_;
  std::uint64_t seq_ = 0;
};

// ---------------------------------------------------------------------------------------------------------
// One direction: a writer process and a reader process.

enum class WriterKind {
  kSpin,      // TryWrite in a loop
  kBlocking,  // Write with a WaitStrategy and a deadline
  kZeroCopy,  // TryClaim, fill in place, Commit a shorter size than claimed; now and then Abort a claim
};
enum class ReaderKind {
  kSpin,      // TryRead in a loop
  kBlocking,  // Read with a WaitStrategy and a deadline
  kZeroCopy,  // TryPeek, check in place, Release
};
enum class PublishMode { kNow, kDeferred, kMixed };

struct OneWay {
  Direction direction = Direction::kMasterToSlave;
  SegmentOptions options;
  StreamSpec stream;
  WriterKind writer = WriterKind::kSpin;
  ReaderKind reader = ReaderKind::kSpin;
  PublishMode publish = PublishMode::kNow;
  WaitStrategy strategy = WaitStrategy::Adaptive();  // for the blocking kinds
};

Publish PublishFor(PublishMode mode, std::uint64_t seq) {
  switch (mode) {
    case PublishMode::kNow:
      return Publish::kNow;
    case PublishMode::kDeferred:
      return Publish::kDeferred;
    case PublishMode::kMixed:
      return Mix(seq * 7 + 3) % 8 == 0 ? Publish::kNow : Publish::kDeferred;
  }
  return Publish::kNow;
}

int WriterMain(const std::string& name, const OneWay& c) {
  const char* who = "writer";
  absl::StatusOr<Segment> segment = Segment::Open(name, Deadline::AfterMs(kStallMs));
  if (!segment.ok()) return Fail(who, "Open: %s", segment.status().ToString().c_str());
  RingProducer producer = segment->MakeProducer(c.direction);
  if (producer.max_message_bytes() < c.stream.max_size) {
    return Fail(who, "ring takes %llu-byte messages, stream needs %llu", ULL(producer.max_message_bytes()),
                ULL(c.stream.max_size));
  }
  std::vector<std::byte> buffer(c.stream.max_size + 1);
  Spinner spinner;
  std::uint64_t aborts = 0;

  for (std::uint64_t seq = 0; seq < c.stream.count; ++seq) {
    const std::size_t size = MessageSize(c.stream, seq);
    const Publish publish = PublishFor(c.publish, seq);
    switch (c.writer) {
      case WriterKind::kSpin:
        FillPayload(c.stream, seq, buffer.data(), size);
        while (!producer.TryWrite(buffer.data(), size, publish)) {
          if (!spinner.Pause()) return Fail(who, "ring stayed full at message %llu", ULL(seq));
        }
        break;
      case WriterKind::kBlocking: {
        FillPayload(c.stream, seq, buffer.data(), size);
        const absl::Status status = producer.Write(std::span(buffer.data(), size), c.strategy,
                                                   Deadline::AfterMs(kStallMs), publish);
        if (!status.ok()) return Fail(who, "Write of message %llu: %s", ULL(seq), status.ToString().c_str());
        break;
      }
      case WriterKind::kZeroCopy: {
        const std::uint64_t r = Mix(seq ^ 0x5eed);
        // Claim more than needed (up to the maximum) and commit only `size`: the ring must take back the rest.
        const std::uint64_t room = c.stream.max_size - size;
        const std::uint64_t extra = r % 4 == 0 ? 0 : (r % 4 == 1 ? (r >> 8) % std::min<std::uint64_t>(room + 1, 64)
                                                                 : (r >> 8) % (room + 1));
        if (r % 50 == 7) {
          // An aborted claim, filled with a plausible wrong message, must leave no trace.
          std::byte* scratch;
          while ((scratch = producer.TryClaim(size + extra)) == nullptr) {
            if (!spinner.Pause()) return Fail(who, "no room to claim at message %llu", ULL(seq));
          }
          FillPayload(c.stream, seq + 1000, scratch, size + extra);
          producer.Abort();
          if (producer.has_claim()) return Fail(who, "claim still outstanding after Abort");
          ++aborts;
        }
        std::byte* claim;
        while ((claim = producer.TryClaim(size + extra)) == nullptr) {
          if (!spinner.Pause()) return Fail(who, "no room to claim at message %llu", ULL(seq));
        }
        FillPayload(c.stream, seq, claim, size);
        producer.Commit(size, publish);
        break;
      }
    }
    spinner.Progress();
  }
  producer.Flush();
  if (producer.messages_written() != c.stream.count) {
    return Fail(who, "messages_written() is %llu after %llu messages", ULL(producer.messages_written()),
                ULL(c.stream.count));
  }
  if (c.writer == WriterKind::kZeroCopy && c.stream.count >= 1000 && aborts == 0) {
    return Fail(who, "the test never aborted a claim");
  }
  return 0;
}

int ReaderMain(const std::string& name, const OneWay& c) {
  const char* who = "reader";
  absl::StatusOr<Segment> segment = Segment::Open(name, Deadline::AfterMs(kStallMs));
  if (!segment.ok()) return Fail(who, "Open: %s", segment.status().ToString().c_str());
  RingConsumer consumer = segment->MakeConsumer(c.direction);
  StreamChecker checker(who, c.stream);
  std::vector<std::byte> buffer(c.stream.max_size);
  Spinner spinner;

  while (!checker.done()) {
    const std::uint64_t seq = checker.next_seq();
    const std::size_t size = checker.next_size();
    // Now and then offer a buffer one byte short: the message must stay in the ring, its size reported.
    const bool short_buffer = size > 0 && Mix(seq ^ 0xb0f) % 512 == 0;
    switch (c.reader) {
      case ReaderKind::kSpin: {
        std::size_t got = 0;
        for (;;) {
          const std::span<std::byte> into(buffer.data(), short_buffer ? size - 1 : buffer.size());
          const ReadResult result = consumer.TryRead(into, &got);
          if (result == ReadResult::kOk) break;
          if (result == ReadResult::kBufferTooSmall && short_buffer && got == size) {
            if (consumer.TryRead(std::span(buffer), &got) != ReadResult::kOk) {
              return Fail(who, "message %llu vanished after kBufferTooSmall", ULL(seq));
            }
            break;
          }
          if (result != ReadResult::kEmpty) {
            return Fail(who, "TryRead at message %llu: %s (size %zu); %s", ULL(seq), ReadResultName(result), got,
                        consumer.corruption_status().ToString().c_str());
          }
          if (!spinner.Pause()) return Fail(who, "nothing arrived at message %llu", ULL(seq));
        }
        if (const int failed = checker.Check(std::span(buffer.data(), got))) return failed;
        break;
      }
      case ReaderKind::kBlocking: {
        if (short_buffer) {
          const absl::StatusOr<std::size_t> too_small = consumer.Read(
              std::span(buffer.data(), size - 1), c.strategy, Deadline::AfterMs(kStallMs));
          if (too_small.status().code() != absl::StatusCode::kOutOfRange) {
            return Fail(who, "Read with a short buffer at message %llu: %s, expected OutOfRange", ULL(seq),
                        too_small.ok() ? "ok" : too_small.status().ToString().c_str());
          }
        }
        const absl::StatusOr<std::size_t> got =
            consumer.Read(std::span(buffer), c.strategy, Deadline::AfterMs(kStallMs));
        if (!got.ok()) return Fail(who, "Read of message %llu: %s", ULL(seq), got.status().ToString().c_str());
        if (const int failed = checker.Check(std::span(buffer.data(), *got))) return failed;
        break;
      }
      case ReaderKind::kZeroCopy: {
        std::span<const std::byte> message;
        for (;;) {
          const ReadResult result = consumer.TryPeek(&message);
          if (result == ReadResult::kOk) break;
          if (result != ReadResult::kEmpty) {
            return Fail(who, "TryPeek at message %llu: %s; %s", ULL(seq), ReadResultName(result),
                        consumer.corruption_status().ToString().c_str());
          }
          if (!spinner.Pause()) return Fail(who, "nothing arrived at message %llu", ULL(seq));
        }
        if (Mix(seq ^ 0x9ee) % 64 == 0) {
          // Peeking again without Release yields the same message in place.
          std::span<const std::byte> again;
          if (consumer.TryPeek(&again) != ReadResult::kOk || again.data() != message.data() ||
              again.size() != message.size()) {
            return Fail(who, "a second TryPeek at message %llu saw a different message", ULL(seq));
          }
        }
        if (const int failed = checker.Check(message)) return failed;
        consumer.Release();
        break;
      }
    }
    spinner.Progress();
  }
  // The writer has sent everything by now; anything more would be a message it never wrote.
  std::size_t extra = 0;
  if (const ReadResult r = consumer.TryRead(std::span(buffer), &extra); r != ReadResult::kEmpty) {
    return Fail(who, "after the last message the ring is not empty: %s (%zu bytes)", ReadResultName(r), extra);
  }
  if (consumer.messages_read() != c.stream.count) {
    return Fail(who, "messages_read() is %llu after %llu messages", ULL(consumer.messages_read()),
                ULL(c.stream.count));
  }
  return 0;
}

// Runs a writer and a reader process over a fresh segment and checks what they leave in it.
void RunOneWay(const OneWay& c) {
  const std::string name = eshm_test::UniqueSegmentName();
  absl::StatusOr<Segment> segment = Segment::Create(name, c.options);
  ASSERT_TRUE(segment.ok()) << segment.status();
  struct Unlinker {
    std::string name;
    ~Unlinker() { (void)Segment::Unlink(name); }
  } unlinker{name};
  ASSERT_GE(segment->max_message_bytes(), c.stream.max_size);

  const std::int64_t start = eshm_test::NowNs();
  Child reader = Child::Start([&] { return ReaderMain(name, c); });
  Child writer = Child::Start([&] { return WriterMain(name, c); });
  ASSERT_TRUE(eshm_test::WaitForChildren({&writer, &reader}, kWatchdog)) << "writer, then reader";
  const double seconds = static_cast<double>(eshm_test::NowNs() - start) / 1e9;

  // The final state, read through the parent's own mapping: every message written and read, ring drained,
  // and the other direction untouched.
  const RingControl* ring = segment->ring_control(c.direction);
  EXPECT_EQ(ring->producer.messages_written.load(), c.stream.count);
  EXPECT_EQ(ring->consumer.messages_read.load(), c.stream.count);
  EXPECT_EQ(ring->consumer.head.load(), ring->producer.tail.load());
  EXPECT_GT(ring->producer.tail.load(), segment->ring_capacity(c.direction)) << "the stream never wrapped the ring";
  const Direction other =
      c.direction == Direction::kMasterToSlave ? Direction::kSlaveToMaster : Direction::kMasterToSlave;
  EXPECT_EQ(segment->ring_control(other)->producer.tail.load(), 0u);
  EXPECT_EQ(segment->ring_control(other)->producer.messages_written.load(), 0u);
  std::printf("%llu messages, %.1f MB of ring traffic in %.2f s (scale %g); %llu wake and %llu wait syscalls\n",
              ULL(c.stream.count), static_cast<double>(ring->producer.tail.load()) / 1e6, seconds, StressScale(),
              ULL(ring->wait.wake_syscalls.load()), ULL(ring->wait.wait_syscalls.load()));
}

constexpr std::uint64_t kMiB = 1 << 20;

// A 1 MiB ring in each direction, the default, and messages up to the largest it takes.
OneWay Streaming(Direction direction, std::uint64_t seed) {
  OneWay c;
  c.direction = direction;
  c.options.m2s_capacity = kMiB;
  c.options.s2m_capacity = kMiB;
  c.stream.seed = seed;
  c.stream.count = Scaled(2'000'000);
  c.stream.max_size = MaxPayloadForCapacity(kMiB);
  return c;
}

TEST(CrossProcessRingTest, SpinningPeersDeliverEveryMessageInOrderWhenPublishingAtOnce) {
  OneWay c = Streaming(Direction::kMasterToSlave, 1);
  c.writer = WriterKind::kSpin;
  c.reader = ReaderKind::kSpin;
  c.publish = PublishMode::kNow;
  RunOneWay(c);
}

TEST(CrossProcessRingTest, SpinningPeersDeliverEveryMessageInOrderWhenPublishingDeferred) {
  OneWay c = Streaming(Direction::kSlaveToMaster, 2);
  c.writer = WriterKind::kSpin;
  c.reader = ReaderKind::kSpin;
  c.publish = PublishMode::kDeferred;  // only the final Flush publishes the tail of the stream
  RunOneWay(c);
}

TEST(CrossProcessRingTest, BlockingPeersWithSleepStrategyDeliverEveryMessageInOrder) {
  OneWay c = Streaming(Direction::kMasterToSlave, 3);
  c.writer = WriterKind::kBlocking;
  c.reader = ReaderKind::kBlocking;
  c.publish = PublishMode::kNow;
  c.strategy = WaitStrategy::Sleep();  // every wait is a futex sleep: exercises the wake handshake hardest
  RunOneWay(c);
}

TEST(CrossProcessRingTest, BlockingPeersWithAdaptiveStrategyDeliverEveryMessageInOrder) {
  OneWay c = Streaming(Direction::kSlaveToMaster, 4);
  c.writer = WriterKind::kBlocking;
  c.reader = ReaderKind::kBlocking;
  c.publish = PublishMode::kMixed;
  c.strategy = WaitStrategy::Adaptive();
  RunOneWay(c);
}

TEST(CrossProcessRingTest, ZeroCopyPeersWithShrinkingCommitsAndAbortsDeliverEveryMessageInOrder) {
  OneWay c = Streaming(Direction::kMasterToSlave, 5);
  c.writer = WriterKind::kZeroCopy;
  c.reader = ReaderKind::kZeroCopy;
  c.publish = PublishMode::kMixed;
  RunOneWay(c);
}

TEST(CrossProcessRingTest, SleepingReaderIsWokenByDeferredZeroCopyWrites) {
  OneWay c = Streaming(Direction::kSlaveToMaster, 6);
  c.writer = WriterKind::kZeroCopy;
  c.reader = ReaderKind::kBlocking;
  c.publish = PublishMode::kDeferred;
  c.strategy = WaitStrategy::Sleep();
  RunOneWay(c);
}

// Messages close to the maximum on a ring that holds two of them: nearly every record wraps or pads.
TEST(CrossProcessRingTest, LargeMessagesOnASmallRingWrapThroughPadding) {
  OneWay c;
  c.direction = Direction::kMasterToSlave;
  c.options.m2s_capacity = 8192;
  c.options.s2m_capacity = 8192;
  c.stream = {.seed = 7, .count = Scaled(400'000), .max_size = MaxPayloadForCapacity(8192), .mix = SizeMix::kMostlyLarge};
  c.writer = WriterKind::kSpin;
  c.reader = ReaderKind::kZeroCopy;
  c.publish = PublishMode::kNow;
  RunOneWay(c);
}

TEST(CrossProcessRingTest, LargeMessagesOnTheSmallestRingWithBlockingPeers) {
  OneWay c;
  c.direction = Direction::kSlaveToMaster;
  c.options.m2s_capacity = kMinRingCapacity;
  c.options.s2m_capacity = kMinRingCapacity;
  c.stream = {.seed = 8, .count = Scaled(200'000), .max_size = MaxPayloadForCapacity(kMinRingCapacity),
              .mix = SizeMix::kMostlyLarge};
  c.writer = WriterKind::kBlocking;
  c.reader = ReaderKind::kBlocking;
  c.publish = PublishMode::kMixed;
  c.strategy = WaitStrategy::Adaptive();
  RunOneWay(c);
}

// Staged (deferred) records plus a large message can exceed a tiny ring: a writer that only tries must
// still get its staged records published, or both sides wait forever.
TEST(CrossProcessRingTest, DeferredWritesOnTheSmallestRingAreNeverStranded) {
  OneWay c;
  c.direction = Direction::kMasterToSlave;
  c.options.m2s_capacity = kMinRingCapacity;
  c.options.s2m_capacity = kMinRingCapacity;
  c.stream = {.seed = 11, .count = Scaled(400'000), .max_size = MaxPayloadForCapacity(kMinRingCapacity)};
  c.writer = WriterKind::kSpin;
  c.reader = ReaderKind::kSpin;
  c.publish = PublishMode::kDeferred;
  RunOneWay(c);
}

// ---------------------------------------------------------------------------------------------------------
// Wakeups. A blocking wait sleeps in slices of kWaitCheckIntervalNs, so a lost wake only makes it slower and
// the streams above would still pass. These tests watch the sleeper through /proc instead: once it sleeps on
// the futex word, the peer's next publication must make a FUTEX_WAKE call.

constexpr int kWakeRounds = 20;

template <typename Condition>
bool WaitFor(Condition condition) {
  const std::int64_t give_up = eshm_test::NowNs() + kStallMs * 1'000'000;
  while (!condition()) {
    if (eshm_test::NowNs() >= give_up) return false;
    eshm_test::SleepMs(1);
  }
  return true;
}

// The child uses the mapping it inherited, at the parent's address, so /proc shows the same word address.
eshm_test::BlockedState WaitUntilSleepingOn(pid_t pid, const std::atomic<std::uint32_t>& word) {
  return eshm_test::WaitUntilBlockedIn(absl::StrCat("/proc/", pid, "/syscall"), SYS_futex,
                                       reinterpret_cast<std::uintptr_t>(&word), absl::Milliseconds(kStallMs));
}

TEST(CrossProcessRingTest, WriterWakesAReaderSleepingInAnotherProcess) {
  const std::string name = eshm_test::UniqueSegmentName();
  SegmentOptions options;
  options.m2s_capacity = options.s2m_capacity = kMinRingCapacity;
  absl::StatusOr<Segment> segment = Segment::Create(name, options);
  ASSERT_TRUE(segment.ok()) << segment.status();
  struct Unlinker {
    std::string name;
    ~Unlinker() { (void)Segment::Unlink(name); }
  } unlinker{name};

  const Segment& shared = *segment;
  Child reader = Child::Start([&] {
    RingConsumer consumer = shared.MakeConsumer(Direction::kMasterToSlave);
    int value = 0;
    for (int i = 0; i < kWakeRounds; ++i) {
      const absl::StatusOr<std::size_t> got = consumer.Read(std::as_writable_bytes(std::span(&value, 1)),
                                                            WaitStrategy::Sleep(), Deadline::AfterMs(kStallMs));
      if (!got.ok()) return Fail("reader", "Read %d: %s", i, got.status().ToString().c_str());
      if (*got != sizeof(value) || value != i) return Fail("reader", "message %d: got %d", i, value);
    }
    return 0;
  });

  RingProducer producer = segment->MakeProducer(Direction::kMasterToSlave);
  const RingControl* ring = segment->ring_control(Direction::kMasterToSlave);
  int woken_rounds = 0;
  for (int i = 0; i < kWakeRounds; ++i) {
    // The reader has taken every earlier message (it publishes its count when it finds the ring empty)...
    ASSERT_TRUE(WaitFor([&] { return ring->consumer.messages_read.load() == std::uint64_t(i); })) << "round " << i;
    // ... and sleeps for the next.
    const eshm_test::BlockedState state = WaitUntilSleepingOn(reader.pid(), ring->wait.data_futex);
    if (state == eshm_test::BlockedState::kUnsupported) GTEST_SKIP() << "/proc/<pid>/syscall is not available";
    ASSERT_EQ(state, eshm_test::BlockedState::kBlocked) << "round " << i << ": the reader never slept";
    const std::uint64_t before = producer.wake_syscalls();
    ASSERT_TRUE(producer.TryWrite(&i, sizeof(i)));
    if (producer.wake_syscalls() > before) ++woken_rounds;
  }
  EXPECT_TRUE(eshm_test::WaitForChild(reader, kWatchdog));
  // A reader between two sleep slices can see the message before it sleeps again and need no wake, but
  // that window is microseconds wide: nearly every round must wake it.
  EXPECT_GE(woken_rounds, kWakeRounds / 2);
}

TEST(CrossProcessRingTest, ReaderWakesAWriterSleepingOnAFullRing) {
  const std::string name = eshm_test::UniqueSegmentName();
  SegmentOptions options;
  options.m2s_capacity = options.s2m_capacity = kMinRingCapacity;
  absl::StatusOr<Segment> segment = Segment::Create(name, options);
  ASSERT_TRUE(segment.ok()) << segment.status();
  struct Unlinker {
    std::string name;
    ~Unlinker() { (void)Segment::Unlink(name); }
  } unlinker{name};

  // Records of exactly a quarter of the ring: four fill it, the fifth must wait.
  constexpr std::size_t kSize = kMinRingCapacity / 4 - kRecordHeaderBytes;
  constexpr int kFill = 4;
  const Segment& shared = *segment;
  Child writer = Child::Start([&] {
    RingProducer producer = shared.MakeProducer(Direction::kMasterToSlave);
    std::vector<std::byte> message(kSize);
    for (int i = 0; i < kWakeRounds + kFill; ++i) {
      std::memcpy(message.data(), &i, sizeof(i));
      const absl::Status status =
          producer.Write(std::span(message), WaitStrategy::Sleep(), Deadline::AfterMs(kStallMs));
      if (!status.ok()) return Fail("writer", "Write %d: %s", i, status.ToString().c_str());
    }
    return 0;
  });

  RingConsumer consumer = segment->MakeConsumer(Direction::kMasterToSlave);
  const RingControl* ring = segment->ring_control(Direction::kMasterToSlave);
  std::vector<std::byte> buffer(kSize);
  int woken_rounds = 0;
  auto check_message = [&](int i, std::size_t size) {
    int value = -1;
    std::memcpy(&value, buffer.data(), sizeof(value));
    EXPECT_EQ(size, kSize);
    EXPECT_EQ(value, i);
  };
  for (int i = 0; i < kWakeRounds; ++i) {
    // The writer has filled the ring...
    ASSERT_TRUE(WaitFor([&] { return ring->producer.messages_written.load() == std::uint64_t(kFill + i); }))
        << "round " << i;
    // ... and sleeps for space.
    const eshm_test::BlockedState state = WaitUntilSleepingOn(writer.pid(), ring->wait.space_futex);
    if (state == eshm_test::BlockedState::kUnsupported) GTEST_SKIP() << "/proc/<pid>/syscall is not available";
    ASSERT_EQ(state, eshm_test::BlockedState::kBlocked) << "round " << i << ": the writer never slept";
    const std::uint64_t before = consumer.wake_syscalls();
    std::size_t size = 0;
    ASSERT_EQ(consumer.TryRead(std::span(buffer), &size), ReadResult::kOk);
    check_message(i, size);
    if (consumer.wake_syscalls() > before) ++woken_rounds;
  }
  for (int i = kWakeRounds; i < kWakeRounds + kFill; ++i) {
    const absl::StatusOr<std::size_t> size =
        consumer.Read(std::span(buffer), WaitStrategy::Sleep(), Deadline::AfterMs(kStallMs));
    ASSERT_TRUE(size.ok()) << size.status();
    check_message(i, *size);
  }
  EXPECT_TRUE(eshm_test::WaitForChild(writer, kWatchdog));
  EXPECT_GE(woken_rounds, kWakeRounds / 2);
}

// ---------------------------------------------------------------------------------------------------------
// Both directions at once: each process writes one stream and reads the other, never blocking, so a full
// ring on one side can never wait on a full ring on the other.

struct Duplex {
  SegmentOptions options;
  StreamSpec m2s;
  StreamSpec s2m;
};

int DuplexMain(const std::string& name, const Duplex& c, Role role) {
  const bool master = role == Role::kMaster;
  const char* who = master ? "master" : "slave";
  absl::StatusOr<Segment> segment = Segment::Open(name, Deadline::AfterMs(kStallMs));
  if (!segment.ok()) return Fail(who, "Open: %s", segment.status().ToString().c_str());
  const StreamSpec& out = master ? c.m2s : c.s2m;
  RingProducer producer = segment->MakeProducer(master ? Direction::kMasterToSlave : Direction::kSlaveToMaster);
  RingConsumer consumer = segment->MakeConsumer(master ? Direction::kSlaveToMaster : Direction::kMasterToSlave);
  StreamChecker checker(who, master ? c.s2m : c.m2s);
  std::vector<std::byte> out_buffer(out.max_size + 1);
  std::vector<std::byte> in_buffer(master ? c.s2m.max_size : c.m2s.max_size);
  std::uint64_t sent = 0;
  std::uint64_t prepared = ~std::uint64_t{0};
  Spinner spinner;

  while (sent < out.count || !checker.done()) {
    bool progress = false;
    // The master copies each message in and publishes it at once; the slave claims in place and batches.
    for (int burst = 0; burst < 32 && sent < out.count; ++burst) {
      const std::size_t size = MessageSize(out, sent);
      if (master) {
        if (prepared != sent) {
          FillPayload(out, sent, out_buffer.data(), size);
          prepared = sent;
        }
        if (!producer.TryWrite(out_buffer.data(), size, Publish::kNow)) break;
      } else {
        std::byte* claim = producer.TryClaim(size);
        if (claim == nullptr) break;
        FillPayload(out, sent, claim, size);
        producer.Commit(size, Publish::kDeferred);
      }
      ++sent;
      progress = true;
    }
    // Nobody ever waits for the next write, so a staged batch must not outlive this round.
    producer.Flush();
    for (int burst = 0; burst < 32 && !checker.done(); ++burst) {
      std::span<const std::byte> message;
      std::size_t size = 0;
      const ReadResult result = master ? consumer.TryPeek(&message) : consumer.TryRead(std::span(in_buffer), &size);
      if (result == ReadResult::kEmpty) break;
      if (result != ReadResult::kOk) {
        return Fail(who, "read at message %llu: %s; %s", ULL(checker.next_seq()), ReadResultName(result),
                    consumer.corruption_status().ToString().c_str());
      }
      if (!master) message = std::span<const std::byte>(in_buffer.data(), size);
      if (const int failed = checker.Check(message)) return failed;
      if (master) consumer.Release();
      progress = true;
    }
    if (progress) {
      spinner.Progress();
    } else if (!spinner.Pause()) {
      return Fail(who, "stalled: sent %llu of %llu, received %llu", ULL(sent), ULL(out.count),
                  ULL(checker.next_seq()));
    }
  }
  producer.Flush();
  return 0;
}

TEST(CrossProcessRingTest, BothDirectionsAtOnceOverSmallRingsNeverDeadlock) {
  constexpr std::uint64_t kCapacity = 64 * 1024;
  Duplex c;
  c.options.m2s_capacity = kCapacity;
  c.options.s2m_capacity = kCapacity;
  c.m2s = {.seed = 9, .count = Scaled(1'000'000), .max_size = MaxPayloadForCapacity(kCapacity)};
  c.s2m = {.seed = 10, .count = Scaled(1'000'000), .max_size = MaxPayloadForCapacity(kCapacity)};

  const std::string name = eshm_test::UniqueSegmentName();
  absl::StatusOr<Segment> segment = Segment::Create(name, c.options);
  ASSERT_TRUE(segment.ok()) << segment.status();
  struct Unlinker {
    std::string name;
    ~Unlinker() { (void)Segment::Unlink(name); }
  } unlinker{name};

  const std::int64_t start = eshm_test::NowNs();
  Child slave = Child::Start([&] { return DuplexMain(name, c, Role::kSlave); });
  Child master = Child::Start([&] { return DuplexMain(name, c, Role::kMaster); });
  ASSERT_TRUE(eshm_test::WaitForChildren({&master, &slave}, kWatchdog)) << "master, then slave";
  const double seconds = static_cast<double>(eshm_test::NowNs() - start) / 1e9;

  for (const Direction d : {Direction::kMasterToSlave, Direction::kSlaveToMaster}) {
    SCOPED_TRACE(d == Direction::kMasterToSlave ? "master to slave" : "slave to master");
    const std::uint64_t count = d == Direction::kMasterToSlave ? c.m2s.count : c.s2m.count;
    const RingControl* ring = segment->ring_control(d);
    EXPECT_EQ(ring->producer.messages_written.load(), count);
    EXPECT_EQ(ring->consumer.messages_read.load(), count);
    EXPECT_EQ(ring->consumer.head.load(), ring->producer.tail.load());
    // Backpressure was real: the stream was many times the ring.
    EXPECT_GT(ring->producer.tail.load(), 4 * kCapacity);
  }
  std::printf("%llu + %llu messages in %.2f s (scale %g)\n", ULL(c.m2s.count), ULL(c.s2m.count), seconds,
              StressScale());
}

}  // namespace
}  // namespace eshm
