#include "eshm/ring.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eshm/futex.h"
#include "eshm/internal/asymmetric_fence.h"

namespace eshm {
namespace {

absl::Status NoCheck() { return absl::OkStatus(); }

// Sleeps on `futex` after raising `sleeping`, unless `ready()` turns true in between. Shared by both sides:
// the consumer sleeps for data, the producer for space. Returns true if it made a FUTEX_WAIT call.
template <typename Ready>
bool SleepUnlessReady(std::atomic<std::uint32_t>& futex, std::atomic<std::uint32_t>& sleeping, Deadline until,
                      Ready ready, std::atomic<std::uint64_t>& wait_syscalls, bool heavy) {
  // Read the futex word before the final recheck: a wake that lands after the recheck bumps the word,
  // and FUTEX_WAIT then returns at once instead of sleeping through it.
  const std::uint32_t seen = futex.load(std::memory_order_acquire);
  // SYNC(sleep-flag): a Dekker handshake with the waker's publication (a commit or head store) and its load
  // of this flag (ring.h, "Memory ordering"). Either all four are seq_cst, or (`heavy`) the waker fences
  // nothing and HeavyFence() runs a full barrier on every thread of every eshm process in its place.
  // seq_cst operations rather than fences, because ThreadSanitizer models the former and not the latter.
  sleeping.store(1, std::memory_order_seq_cst);
  if (heavy) internal::HeavyFence();
  if (ready()) {
    sleeping.store(0, std::memory_order_relaxed);
    return false;
  }
  FutexWait(&futex, seen, until);
  wait_syscalls.fetch_add(1, std::memory_order_relaxed);
  // The waker normally clears the flag; after a timeout or a signal we clear it ourselves (a later
  // sleep raises it again).
  sleeping.store(0, std::memory_order_relaxed);
  return true;
}

// Ends a sleep a WaitSet armed (ArmSleep): lowers the flag, as SleepUnlessReady does after its sleep, and
// counts the system call if there was one.
void EndArmedSleep(std::atomic<std::uint32_t>& sleeping, bool slept, std::atomic<std::uint64_t>& shared_count,
                   std::uint64_t& own_count) {
  sleeping.store(0, std::memory_order_relaxed);
  if (slept) {
    shared_count.fetch_add(1, std::memory_order_relaxed);
    ++own_count;
  }
}

// Wakes the other side if it raised `sleeping`. Must follow the caller's publication (see SleepUnlessReady).
bool WakeIfSleeping(std::atomic<std::uint32_t>& futex, std::atomic<std::uint32_t>& sleeping,
                    std::atomic<std::uint64_t>& wake_syscalls) {
  // SYNC(sleep-flag): seq_cst load, see SleepUnlessReady. The exchange lets only one publication per sleep
  // pay for the system call.
  if (sleeping.load(std::memory_order_seq_cst) == 0 || sleeping.exchange(0, std::memory_order_relaxed) == 0) {
    return false;
  }
  // SYNC(futex-word): release so a sleeper that sees the new word value also sees our publication.
  futex.fetch_add(1, std::memory_order_release);
  FutexWakeAll(&futex);
  wake_syscalls.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// How many polls a spinning wait makes between looks at its deadline and WaitCheck (a few microseconds).
constexpr std::uint32_t kPollsPerCheck = 64;

// The slice a blocking wait sleeps before calling its WaitCheck again.
Deadline SliceOf(Deadline deadline) { return deadline.CappedAfterNs(kWaitCheckIntervalNs); }

}  // namespace

const char* ReadResultName(ReadResult result) {
  switch (result) {
    case ReadResult::kOk:
      return "ok";
    case ReadResult::kEmpty:
      return "empty";
    case ReadResult::kBufferTooSmall:
      return "buffer too small";
    case ReadResult::kCorrupt:
      return "corrupt";
  }
  return "unknown";
}

absl::Status ValidateRingCapacity(std::uint64_t capacity) {
  if (capacity < kMinRingCapacity || capacity > kMaxRingCapacity || (capacity & (capacity - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ring capacity %d bytes is not allowed: it must be a power of two from %d to %d bytes", capacity,
        kMinRingCapacity, kMaxRingCapacity));
  }
  return absl::OkStatus();
}

void InitializeRing(RingControl* control) { std::memset(static_cast<void*>(control), 0, sizeof(*control)); }

// ---------------------------------------------------------------------------------------------------------
// RingProducer

RingProducer::RingProducer(RingControl* control, std::byte* data, std::uint64_t capacity,
                           std::uint64_t max_message_bytes)
    : control_(control),
      data_(data),
      capacity_(capacity),
      mask_(capacity - 1),
      max_message_bytes_(std::min(max_message_bytes, MaxPayloadForCapacity(capacity))),
      batch_limit_(std::min(kMaxBatchBytes, capacity / 4)),
      fenced_by_sleepers_(internal::LightSideReady()) {
  // Resume after the last record a consumer can see. Walking the committed records from the consumer's
  // head (rather than trusting the tail word) is right even when a previous producer died between
  // committing a batch and updating `tail`, and it stops before records a dead producer staged but never
  // published.
  // SYNC(head): acquire pairs with the consumer's release in Advance.
  cached_head_ = control_->consumer.head.load(std::memory_order_acquire);
  // Records start at multiples of kRecordAlignment; a head that is not is corrupt, and rounding it down keeps
  // every header this producer touches inside the data area.
  cached_head_ &= ~(kRecordAlignment - 1);
  std::uint64_t position = cached_head_;
  while (position - cached_head_ < capacity_) {
    const RecordHeader* header = HeaderAt(position);
    // SYNC(commit): acquire pairs with the release in AddToBatch/Flush (of a previous producer).
    if (header->commit.load(std::memory_order_acquire) != position + 1) break;
    const std::uint64_t to_end = capacity_ - (position & mask_);
    const std::uint64_t bytes = header->kind == static_cast<std::uint32_t>(RecordKind::kPadding)
                                    ? to_end
                                    : RecordBytes(header->length);
    if (bytes > to_end || bytes == 0) break;
    position += bytes;
  }
  tail_ = position;
  messages_written_ = control_->producer.messages_written.load(std::memory_order_relaxed);
  ScrubFreeSpace();
  control_->producer.tail.store(tail_, std::memory_order_release);
}

void RingProducer::ScrubFreeSpace() {
  // A dead producer may have staged records after its last published one: all but the first of a batch
  // carry matching commit words, and a new producer writing records of the same sizes would line up with
  // them. Zeroing every 16-byte-aligned commit word of the free space (never read by the consumer, which
  // stops at tail_) removes them all, once, at attach.
  for (std::uint64_t position = tail_; position - cached_head_ < capacity_; position += kRecordAlignment) {
    HeaderAt(position)->commit.store(0, std::memory_order_relaxed);
  }
}

std::uint64_t RingProducer::HeadNeededFor(std::uint64_t record_bytes) const {
  const std::uint64_t to_end = capacity_ - (tail_ & mask_);
  const std::uint64_t needed = record_bytes + (record_bytes > to_end ? to_end : 0);
  return tail_ + needed - capacity_;
}

bool RingProducer::HasSpace(std::uint64_t record_bytes) {
  const std::uint64_t to_end = capacity_ - (tail_ & mask_);
  const std::uint64_t needed = record_bytes + (record_bytes > to_end ? to_end : 0);
  if (tail_ + needed - cached_head_ <= capacity_) return true;
  // SYNC(head): acquire pairs with the consumer's release in Advance: the consumer is done with everything
  // before the head we load, so we may overwrite it. seq_cst (a plain load on x86 and Arm64) for the
  // consumer without membarrier, whose Dekker handshake with WaitForSpace is the symmetric one.
  const std::uint64_t head = control_->consumer.head.load(std::memory_order_seq_cst);
  // A head outside [old cached head, tail], or not at a record boundary, is a corrupt consumer; treat the
  // ring as full rather than overwrite what we cannot prove was read (our writes stay inside our data area
  // either way).
  if (head < cached_head_ || head > tail_ || (head & (kRecordAlignment - 1)) != 0) return false;
  cached_head_ = head;
  return tail_ + needed - cached_head_ <= capacity_;
}

std::uint64_t RingProducer::Reserve(std::uint64_t record_bytes) {
  if (!HasSpace(record_bytes)) return kNone;
  const std::uint64_t to_end = capacity_ - (tail_ & mask_);
  if (record_bytes > to_end) {
    // Fill the rest of the data area with a padding record; the message starts the next lap.
    SetHeaderFields(HeaderAt(tail_), to_end - kRecordHeaderBytes, RecordKind::kPadding);
    tail_ += to_end;
  }
  const std::uint64_t position = tail_;
  tail_ += record_bytes;
  return position;
}

bool RingProducer::TryWriteSlow(std::span<const std::byte> message, Publish publish) {
  if (message.size() > max_message_bytes_ || claim_position_ != kNone) return false;
  const std::uint64_t before = tail_;
  const std::uint64_t position = Reserve(RecordBytes(message.size()));
  if (position == kNone) {
    Flush();  // a full ring must never strand staged records
    return false;
  }
  RecordHeader* header = HeaderAt(position);
  SetHeaderFields(header, message.size(), RecordKind::kData);
  if (!message.empty()) std::memcpy(reinterpret_cast<std::byte*>(header + 1), message.data(), message.size());
  CommitRecord(position != before ? before : kNone, position, publish);
  return true;
}

std::byte* RingProducer::TryClaim(std::size_t size) {
  if (size > max_message_bytes_ || claim_position_ != kNone) return nullptr;
  const std::uint64_t before = tail_;
  const std::uint64_t position = Reserve(RecordBytes(size));
  if (position == kNone) {
    Flush();
    return nullptr;
  }
  claim_padding_ = position != before ? before : kNone;
  claim_position_ = position;
  claim_capacity_ = size;
  RecordHeader* header = HeaderAt(position);
  header->kind = static_cast<std::uint32_t>(RecordKind::kData);
  header->length = static_cast<std::uint32_t>(size);
  return reinterpret_cast<std::byte*>(header + 1);
}

void RingProducer::Commit(std::size_t size, Publish publish) {
  if (claim_position_ == kNone) return;
  if (size > claim_capacity_) size = claim_capacity_;  // never publish bytes that were not reserved
  HeaderAt(claim_position_)->length = static_cast<std::uint32_t>(size);
  // A shorter message gives back the unused space, where the caller may have written anything: the next
  // record position may lie in it, and CommitRecord clears its commit word.
  tail_ = claim_position_ + RecordBytes(size);
  const std::uint64_t padding = claim_padding_;
  const std::uint64_t record = claim_position_;
  claim_position_ = claim_padding_ = kNone;
  CommitRecord(padding, record, publish);
}

void RingProducer::Abort() {
  if (claim_position_ == kNone) return;
  // Nothing of the claim (nor its padding) was committed, so rewinding makes it as if it never happened,
  // except for the bytes the caller wrote, which every later record's ClearNextCommitWord covers.
  tail_ = claim_padding_ != kNone ? claim_padding_ : claim_position_;
  claim_position_ = claim_padding_ = kNone;
}

void RingProducer::WakeSleepingConsumer() {
  if (WakeIfSleeping(control_->wait.data_futex, control_->wait.data_sleeping, control_->wait.wake_syscalls)) {
    ++wake_syscalls_;
  }
}

absl::Status RingProducer::WaitForSpace(std::size_t size, const WaitStrategy& strategy, Deadline deadline,
                                        WaitCheck check) {
  const std::uint64_t record_bytes = RecordBytes(size);
  Flush();
  deadline = deadline.Started();
  Backoff backoff(strategy);
  for (std::uint32_t polls = 1; !HasSpace(record_bytes); ++polls) {
    if (backoff.Pause()) {
      // Polling: look at the clock and the caller's check now and then, not on every poll.
      if (polls % kPollsPerCheck != 0) continue;
      if (deadline.Expired()) break;
      if (absl::Status status = check(); !status.ok()) return status;
      continue;
    }
    if (deadline.Expired()) break;
    // Relaxed: published by the seq_cst raising of space_sleeping, which the consumer loads with acquire.
    control_->wait.space_wanted.store(HeadNeededFor(record_bytes), std::memory_order_relaxed);
    if (SleepUnlessReady(control_->wait.space_futex, control_->wait.space_sleeping, SliceOf(deadline),
                         [&] { return HasSpace(record_bytes); }, control_->wait.wait_syscalls, /*heavy=*/true)) {
      ++wait_syscalls_;
    }
    if (absl::Status status = check(); !status.ok()) return status;
  }
  if (HasSpace(record_bytes)) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrFormat(
      "ring full: no room for a %d-byte message before the deadline (the reader is not keeping up; %d of %d "
      "bytes in use)",
      size, tail_ - cached_head_, capacity_));
}

ArmedSleep RingProducer::ArmSleep(std::size_t size) {
  Flush();
  // Relaxed: published by the seq_cst raising of space_sleeping, which the consumer loads with acquire.
  control_->wait.space_wanted.store(HeadNeededFor(RecordBytes(size)), std::memory_order_relaxed);
  // The word before the flag and the caller's last look, as in SleepUnlessReady.
  ArmedSleep arm{&control_->wait.space_futex, control_->wait.space_futex.load(std::memory_order_acquire), true};
  // SYNC(sleep-flag): see SleepUnlessReady; the caller runs the heavy fence.
  control_->wait.space_sleeping.store(1, std::memory_order_seq_cst);
  return arm;
}

void RingProducer::EndSleep(bool slept) {
  EndArmedSleep(control_->wait.space_sleeping, slept, control_->wait.wait_syscalls, wait_syscalls_);
}

absl::Status RingProducer::Write(std::span<const std::byte> message, const WaitStrategy& strategy,
                                 Deadline deadline, Publish publish) {
  return Write(message, strategy, deadline, publish, NoCheck);
}

absl::Status RingProducer::Write(std::span<const std::byte> message, const WaitStrategy& strategy,
                                 Deadline deadline, Publish publish, WaitCheck check) {
  if (message.size() > max_message_bytes_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "message of %d bytes exceeds the ring's maximum message size of %d bytes (ring capacity %d): split it "
        "or create the channel with a larger capacity",
        message.size(), max_message_bytes_, capacity_));
  }
  if (claim_position_ != kNone) {
    return absl::FailedPreconditionError("Write called while a claim is outstanding: Commit or Abort it first");
  }
  while (!TryWrite(message, publish)) {
    deadline = deadline.Started();  // once, at the first wait
    if (absl::Status status = WaitForSpace(message.size(), strategy, deadline, check); !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------------
// RingConsumer

RingConsumer::RingConsumer(RingControl* control, const std::byte* data, std::uint64_t capacity,
                           std::uint64_t max_message_bytes)
    : control_(control),
      data_(data),
      capacity_(capacity),
      mask_(capacity - 1),
      max_message_bytes_(std::min(max_message_bytes, MaxPayloadForCapacity(capacity))),
      fenced_by_sleepers_(internal::LightSideReady()) {
  head_ = control_->consumer.head.load(std::memory_order_relaxed);
  // A previous consumer may have left the epoch odd; the producer honours it, so we are sleepy too (and
  // wait for its acknowledgement like any new sleepy epoch).
  sleepy_epoch_ = control_->wait.data_sleepy_epoch.load(std::memory_order_relaxed);
  sleepy_ = (sleepy_epoch_ & 1) != 0;
  messages_read_ = control_->consumer.messages_read.load(std::memory_order_relaxed);
  if ((head_ & (kRecordAlignment - 1)) != 0) {
    // Records start at multiples of kRecordAlignment: reading a header here could cross the end of the ring.
    MarkCorrupt(absl::StrFormat("the shared read position %d is not a multiple of %d", head_, kRecordAlignment));
  }
}

ReadResult RingConsumer::MarkCorrupt(std::string detail) {
  if (!corrupt_) corruption_ = std::move(detail);
  corrupt_ = true;
  return ReadResult::kCorrupt;
}

absl::Status RingConsumer::corruption_status() const {
  if (!corrupt_) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("ring corrupted by its producer: ", corruption_,
                                          "; the channel must be re-created"));
}

ReadResult RingConsumer::TryPeekSlow(std::span<const std::byte>* message) {
  if (corrupt_) return ReadResult::kCorrupt;
  // At most one padding record precedes a message: a padding record at offset 0 would mean a message
  // larger than the whole ring, which the producer never writes.
  for (int records = 0; records < 2; ++records) {
    const std::uint64_t offset = head_ & mask_;
    const RecordHeader* header = reinterpret_cast<const RecordHeader*>(data_ + offset);
    // SYNC(commit): acquire pairs with the producer's release in Flush/AddToBatch. seq_cst (a plain
    // load on x86 and Arm64) because this is also the recheck of the sleep-flag handshake in WaitForData.
    if (header->commit.load(std::memory_order_seq_cst) != head_ + 1) return ReadResult::kEmpty;
    // Each field is read exactly once into a local: a hostile producer may change them under us.
    RecordHeader copy;
    std::memcpy(&copy.length, &header->length, sizeof(copy.length));
    std::memcpy(&copy.kind, &header->kind, sizeof(copy.kind));
    const std::uint64_t to_end = capacity_ - offset;
    if (copy.kind == static_cast<std::uint32_t>(RecordKind::kData)) {
      if (copy.length > max_message_bytes_ || RecordBytes(copy.length) > to_end) {
        return MarkCorrupt(absl::StrFormat("record at position %d claims %d payload bytes (maximum %d, %d bytes "
                                           "left before the end of the ring)",
                                           head_, copy.length, max_message_bytes_, to_end - kRecordHeaderBytes));
      }
      peeked_bytes_ = RecordBytes(copy.length);
      peeked_ = std::span<const std::byte>(reinterpret_cast<const std::byte*>(header + 1), copy.length);
      *message = peeked_;
      return ReadResult::kOk;
    }
    if (copy.kind != static_cast<std::uint32_t>(RecordKind::kPadding)) {
      return MarkCorrupt(absl::StrFormat("record at position %d has unknown kind 0x%08x", head_, copy.kind));
    }
    if (offset == 0 || copy.length != to_end - kRecordHeaderBytes) {
      return MarkCorrupt(absl::StrFormat("padding record at position %d covers %d bytes, expected %d", head_,
                                         copy.length, to_end - kRecordHeaderBytes));
    }
    head_ += to_end;
  }
  return MarkCorrupt(absl::StrFormat("two padding records in a row at position %d", head_));
}

void RingConsumer::WakeProducerIfRoom() {
  // Relaxed: Advance's acquire load of the flag made the value stored before it visible. A producer that
  // wants more room than has been freed is left asleep; it is woken by the read that frees enough.
  if (head_ < control_->wait.space_wanted.load(std::memory_order_relaxed)) return;
  if (WakeIfSleeping(control_->wait.space_futex, control_->wait.space_sleeping, control_->wait.wake_syscalls)) {
    ++wake_syscalls_;
  }
}

bool RingConsumer::HasData() {
  if (peeked_bytes_ != 0 || corrupt_) return true;
  std::span<const std::byte> message;
  // TryPeek skips padding and keeps the message peeked, so the next read starts where this left off.
  return TryPeek(&message) != ReadResult::kEmpty;
}

absl::Status RingConsumer::WaitForData(const WaitStrategy& strategy, Deadline deadline, WaitCheck check) {
  deadline = deadline.Started();
  Backoff backoff(strategy);
  const bool polls = strategy.spin_ns > 0 || strategy.yield_ns > 0;
  // A reader that never polls looks once more, after giving up its CPU, when it is reading a stream: its
  // last sleep woke to a backlog, or its last look found a message. Sleeping whenever it caught up would
  // cost the writer a FUTEX_WAKE every few dozen messages of a steady stream.
  bool look = !polls && (last_look_found_ || messages_read_ - read_when_woken_ >= kBacklogOfAStream);
  bool looked = false;
  bool slept = false;
  for (std::uint32_t polls_done = 1; !HasData(); ++polls_done) {
    if (backoff.Pause()) {
      // Polling: look at the clock and the caller's check now and then, not on every poll.
      if (polls_done % kPollsPerCheck != 0) continue;
      if (deadline.Expired()) break;
      if (absl::Status status = check(); !status.ok()) return status;
      continue;
    }
    if (deadline.Expired()) break;
    if (look) {
      // Gives the CPU to anything else runnable first, then looks for about a microsecond: less than the
      // sleep and the writer's wake would cost, and the next message of a steady stream is that close.
      look = false;
      looked = true;
      std::this_thread::yield();
      for (std::uint32_t i = 0; i < kLookPolls && !HasData(); ++i) CpuRelax();
      continue;  // the loop's condition is the look's last poll
    }
    const bool heavy = BecomeSleepy();
    slept = true;
    if (SleepUnlessReady(control_->wait.data_futex, control_->wait.data_sleeping, SliceOf(deadline),
                         [&] { return HasData(); }, control_->wait.wait_syscalls, heavy)) {
      ++wait_syscalls_;
    }
    if (absl::Status status = check(); !status.ok()) return status;
  }
  if (slept) read_when_woken_ = messages_read_;
  const bool found = HasData();
  last_look_found_ = found && looked && !slept;
  if (!found) return absl::DeadlineExceededError("no message arrived before the deadline");
  // A consumer whose waits keep ending while it polls (or looks) is not going to sleep soon: let the
  // producer publish without a store-load fence again (relaxed: the next sleep makes the epoch odd again and
  // fences heavily until the producer acknowledges it). One that sleeps at once and does not look stays:
  // its next wait sleeps whatever the last ones did, and would pay that heavy fence each time.
  if (sleepy_ && !slept && (polls || looked) && ++polled_waits_ >= kPolledWaitsToLeaveSleepy) {
    sleepy_epoch_ += 1;  // even
    control_->wait.data_sleepy_epoch.store(sleepy_epoch_, std::memory_order_relaxed);
    sleepy_ = false;
  }
  return absl::OkStatus();
}

bool RingConsumer::BecomeSleepy() {
  // An odd epoch asks the producer for seq_cst publications. Until it acknowledges the epoch, a publication
  // may still be under way without one, so a sleep pays for a heavy fence.
  if (!sleepy_) {
    sleepy_epoch_ |= 1;
    control_->wait.data_sleepy_epoch.store(sleepy_epoch_, std::memory_order_relaxed);
    sleepy_ = true;
    acked_ = false;
  }
  // SYNC(sleepy-ack): acquire pairs with the producer's release in Flush.
  if (!acked_) acked_ = control_->wait.data_sleepy_ack.load(std::memory_order_acquire) == sleepy_epoch_;
  polled_waits_ = 0;
  return !acked_;
}

ArmedSleep RingConsumer::ArmSleep() {
  // As WaitForData before a sleep.
  const bool heavy = BecomeSleepy();
  ArmedSleep arm{&control_->wait.data_futex, control_->wait.data_futex.load(std::memory_order_acquire), heavy};
  // SYNC(sleep-flag): see SleepUnlessReady.
  control_->wait.data_sleeping.store(1, std::memory_order_seq_cst);
  return arm;
}

void RingConsumer::EndSleep(bool slept) {
  EndArmedSleep(control_->wait.data_sleeping, slept, control_->wait.wait_syscalls, wait_syscalls_);
}

absl::StatusOr<std::size_t> RingConsumer::Read(std::span<std::byte> buffer, const WaitStrategy& strategy,
                                               Deadline deadline) {
  return Read(buffer, strategy, deadline, NoCheck);
}

absl::StatusOr<std::size_t> RingConsumer::Read(std::span<std::byte> buffer, const WaitStrategy& strategy,
                                               Deadline deadline, WaitCheck check) {
  for (;;) {
    std::size_t size = 0;
    switch (TryRead(buffer, &size)) {
      case ReadResult::kOk:
        return size;
      case ReadResult::kBufferTooSmall:
        return absl::OutOfRangeError(absl::StrFormat(
            "the next message is %d bytes but the buffer holds %d; the message stays in the ring: read it "
            "with a buffer of at least %d bytes",
            size, buffer.size(), size));
      case ReadResult::kCorrupt:
        return corruption_status();
      case ReadResult::kEmpty:
        break;
    }
    deadline = deadline.Started();  // once, at the first wait
    if (absl::Status status = WaitForData(strategy, deadline, check); !status.ok()) return status;
  }
}

}  // namespace eshm
