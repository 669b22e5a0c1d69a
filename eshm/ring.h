// A lock-free single-producer/single-consumer ring of variable-length messages over memory it is given.
//
// The ring never maps or allocates: RingProducer and RingConsumer work on a RingControl and a data area
// (see layout.h) that may be a heap buffer in a unit test or a shared-memory segment between two
// processes. It never overwrites an unread message: a full ring makes TryWrite fail and Write wait
// (backpressure).
//
// Publication. A record is visible to the consumer once its commit word holds its position + 1. Writes
// with Publish::kNow become visible at once. Writes with Publish::kDeferred are staged: the first record of
// a batch keeps its commit word unwritten, which hides the whole batch, until Flush() (or the next kNow
// write, or a full ring, or kBatchBytes of staged data) publishes it with a single release store. Batching
// keeps the consumer off the cache lines the producer is still filling, which is where streaming
// throughput is won. Staged records are never stranded by the ring itself: any write that finds the ring
// full publishes them first, and Write() publishes before it waits.
//
// Framing: why no message content is ever taken for a record. The consumer accepts the record at its
// position p when the commit word there holds p + 1. Consumed space is not cleared, so every byte of the
// data area may hold content of an earlier lap, and a sender controls what its payloads hold: p + 1, a
// plausible length and the data kind at any offset. The rule that makes this harmless: before it
// publishes a record that ends at position e, the producer stores 0 into the commit word at e (unless the
// ring is exactly full there; see below), and the release that publishes the record orders that store
// before it. Now take the consumer at p. It got there by consuming the record that ends at p (or p is where
// it attached). Every record the producer writes from then on starts at p or later, and one starts exactly
// at p; no payload of this lap covers the word at p. So the word holds, in modification order: what the
// zeroing store wrote (the consumer's acquire of the record before p makes that store, or something
// later, visible), then the real commit p + 1. Bytes written into a claim before it was shrunk or aborted
// are earlier than the zeroing store too, since records are written in order. The one exception: when the
// ring is exactly full at e (e - head == capacity), the word at e is the header of the oldest unread
// record, which must not be touched; it holds that record's commit, e - capacity + 1, or 0 if it is a
// batch's withheld first record, and neither is e + 1. At attach the producer zeroes every 16-byte-aligned
// word of the free space (ScrubFreeSpace), so a dead producer's leftovers are covered too. What the
// consumer delivers thus depends only on the records published, never on their content, after any number
// of laps, with claims, shrinks, aborts, deferred batches and padding.
//
// Memory ordering (each pair is marked SYNC at both ends, in ring.cc or in the inline code below):
//  * Producer commit (release) -> consumer commit load (acquire): everything the producer wrote into a
//    record, the zeroed commit word after it, and every record staged before the batch's first record
//    was published, happens-before the consumer reads it.
//  * Consumer head store (release, after every message) -> producer head load (acquire): the consumer has
//    finished reading everything before `head` before the producer overwrites it.
//  * Consumer sleeping for data. The consumer raises data_sleeping, then rechecks the commit word; the
//    producer publishes (a commit store), then loads the flag. A seq_cst commit store costs a full fence
//    on every publication (xchg on x86), which a consumer that only polls never needs, so the producer
//    makes it only while the consumer may sleep, which the consumer announces through an epoch:
//    - data_sleepy_epoch is odd while the consumer may sleep. It makes it odd before its first sleep after
//      polling, and even again once 64 waits in a row ended while it was still polling.
//    - The producer loads the epoch (relaxed) at each publication, stores it into data_sleepy_ack (release)
//      when it changed, and publishes with a seq_cst store for an odd epoch, a release store for an even
//      one; then it loads data_sleeping (seq_cst).
//    - A sleep once the consumer has read (acquire) its own odd epoch back from data_sleepy_ack is a plain
//      Dekker handshake, all four accesses seq_cst: the publication that stored the ack read the odd epoch,
//      so it and every later one (single producer, program order) are seq_cst; every earlier one
//      happens-before the consumer's acquire of the ack, so its record is visible to the recheck.
//    - A sleep before that ack may race a publication still made with a release store. Such a sleep runs
//      internal::HeavyFence() between raising the flag and the recheck (the asymmetric handshake below):
//      either the publication's store preceded the barrier its thread passed, and the recheck sees it, or
//      its flag load follows that barrier and sees the flag.
//    So a wakeup is never lost, whichever strategy the consumer uses and however it switches. Where the
//    kernel lacks membarrier the producer publishes seq_cst always.
//  * Producer sleeping for space (asymmetric Dekker): the producer stores space_wanted, raises
//    space_sleeping, runs internal::HeavyFence() (membarrier: a full barrier on every thread of every
//    consumer process) and rechecks the head; the consumer stores its head and then loads the flag, with no
//    fence of its own on this per-message path. The heavy fence makes the pair behave as if both sides had
//    one: either the producer's recheck sees the head, or the consumer's load sees the flag and wakes it
//    (once its head reaches space_wanted). Where the kernel lacks that membarrier command, the consumer
//    stores its head and loads the flag seq_cst instead.
//  The futex word itself is compared by the kernel, so a wake between the recheck and the sleep is not lost
//  either.
//
// Untrusted peers. The consumer validates every length and kind it reads from shared memory, reads each
// header field exactly once, and never touches memory outside its data area: a corrupt or hostile producer
// yields ReadResult::kCorrupt (and a DataLoss status from Read), never an out-of-bounds access. The
// producer only ever writes inside its data area, whatever the consumer publishes as its head.
//
// Threading: each class is thread-compatible. A ring has exactly one RingProducer and one RingConsumer,
// each used by one thread at a time; they may live in different threads or processes.
#ifndef ESHM_RING_H_
#define ESHM_RING_H_

#include "eshm/internal/require_cxx20.h"
#if ESHM_CXX20

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eshm/deadline.h"
#include "eshm/layout.h"
#include "eshm/wait_strategy.h"

namespace eshm {

enum class Publish : std::uint8_t {
  kNow,       // visible to the consumer when the call returns
  kDeferred,  // staged; visible at the next Flush() or kNow write (see the file comment)
};

enum class ReadResult : std::uint8_t {
  kOk,              // a message was read (or peeked)
  kEmpty,           // nothing to read now
  kBufferTooSmall,  // the next message is larger than the buffer; it stays in the ring
  kCorrupt,         // the shared memory breaks the ring's invariants; the ring is unusable
};

const char* ReadResultName(ReadResult result);

// Called by blocking operations every few microseconds while they poll, and between sleeps (so also after
// a signal interrupts one). A non-OK status ends the wait with that status: the channel layer uses it to
// report a dead peer, Python to raise KeyboardInterrupt. Keep it cheap.
using WaitCheck = absl::FunctionRef<absl::Status()>;

// Maximum time a blocking wait sleeps before calling its WaitCheck again.
inline constexpr std::int64_t kWaitCheckIntervalNs = 10'000'000;  // 10 ms

// A sleep armed on one ring by a waiter on several (eshm::WaitSet): the futex word and the value to wait
// for, and whether the waiter must run internal::HeavyFence() before its last look at the ring (see
// "Memory ordering": the same handshake as a single ring's sleep, with the fence shared by all rings).
struct ArmedSleep {
  std::atomic<std::uint32_t>* word = nullptr;
  std::uint32_t seen = 0;
  bool heavy = false;
};

// Validates that `capacity` can back a ring: a power of two in [kMinRingCapacity, kMaxRingCapacity].
absl::Status ValidateRingCapacity(std::uint64_t capacity);

// Prepares zeroed memory for a new ring (control block zeroed; data need not be). For heap-backed rings;
// a new shared-memory segment is already zero.
void InitializeRing(RingControl* control);

class RingProducer {
 public:
  // Staged (kDeferred) bytes that trigger an automatic publication.
  static constexpr std::uint64_t kMaxBatchBytes = 16 * 1024;

  RingProducer() = default;
  // Writes records into `data[0, capacity)`, resuming at the tail recorded in `control`. `capacity` must
  // satisfy ValidateRingCapacity; `max_message_bytes` at most MaxPayloadForCapacity(capacity).
  RingProducer(RingControl* control, std::byte* data, std::uint64_t capacity, std::uint64_t max_message_bytes);

  RingProducer(RingProducer&&) = default;
  RingProducer& operator=(RingProducer&&) = default;

  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t max_message_bytes() const { return max_message_bytes_; }

  // Copies `message` into the ring. False when it does not fit now (ring full), or never will (larger
  // than max_message_bytes(); Write() says so with a Status).
  bool TryWrite(std::span<const std::byte> message, Publish publish = Publish::kNow) {
    const std::uint64_t size = message.size();
    const std::uint64_t record_bytes = RecordBytes(size);
    const std::uint64_t offset = tail_ & mask_;
    // Fast path: the record fits before the end of the data area and within the free space last seen.
    if (size > max_message_bytes_ || claim_position_ != kNone || record_bytes > capacity_ - offset ||
        tail_ + record_bytes - cached_head_ > capacity_) {
      return TryWriteSlow(message, publish);
    }
    RecordHeader* header = reinterpret_cast<RecordHeader*>(data_ + offset);
    SetHeaderFields(header, size, RecordKind::kData);
    if (size != 0) std::memcpy(reinterpret_cast<std::byte*>(header + 1), message.data(), size);
    const std::uint64_t position = tail_;
    tail_ += record_bytes;
    CommitRecord(kNone, position, publish);
    return true;
  }
  bool TryWrite(const void* data, std::size_t size, Publish publish = Publish::kNow) {
    return TryWrite(std::span<const std::byte>(static_cast<const std::byte*>(data), size), publish);
  }

  // Zero-copy: reserves room for a message of up to `size` bytes and returns where to write it, or nullptr
  // when it does not fit now (or ever: see TryWrite). Exactly one claim may be outstanding; end it with
  // Commit (any size up to the claimed one) or Abort. Nothing becomes visible before Commit.
  std::byte* TryClaim(std::size_t size);
  void Commit(std::size_t size, Publish publish = Publish::kNow);
  void Abort();
  bool has_claim() const { return claim_position_ != kNone; }

  // Publishes every staged record and wakes the consumer if it sleeps. Cheap when nothing is staged.
  // Inline: a write published at once (Publish::kNow) runs it for every message.
  void Flush() {
    if (batch_start_ == kNone) return;
    // SYNC(commit): release pairs with the consumer's acquire in TryPeek: the batch's records, and the
    // commit words of all but its first, are visible before the first record is.
    // Which store the consumer needs ("Memory ordering" above): seq_cst while it may sleep (an odd epoch),
    // release while it polls. Relaxed: the epoch only selects the order; the ack tells the consumer which
    // epoch our publications follow. SYNC(sleepy-ack): release pairs with the consumer's acquire in
    // WaitForData: every earlier publication happens-before the consumer sees this ack.
    const std::uint32_t epoch = control_->wait.data_sleepy_epoch.load(std::memory_order_relaxed);
    if (epoch != acked_epoch_) {
      control_->wait.data_sleepy_ack.store(epoch, std::memory_order_release);
      acked_epoch_ = epoch;
    }
    if (fenced_by_sleepers_ && (epoch & 1) == 0) {
      HeaderAt(batch_start_)->commit.store(batch_start_ + 1, std::memory_order_release);
    } else {
      HeaderAt(batch_start_)->commit.store(batch_start_ + 1, std::memory_order_seq_cst);
    }
    batch_start_ = kNone;
    // For observers only (the consumer follows commit words): relaxed counters, release tail.
    control_->producer.messages_written.store(messages_written_, std::memory_order_relaxed);
    control_->producer.tail.store(tail_, std::memory_order_release);
    // SYNC(sleep-flag): seq_cst load after the publication, see SleepUnlessReady in ring.cc; the call
    // (which looks again and lets one waker pay for the system call) only when the flag is raised.
    if (control_->wait.data_sleeping.load(std::memory_order_seq_cst) != 0) WakeSleepingConsumer();
  }

  // Blocking write: waits for space under `strategy` until `deadline`, calling `check` between sleeps.
  // InvalidArgument if the message can never fit; DeadlineExceeded if the ring stayed full.
  absl::Status Write(std::span<const std::byte> message, const WaitStrategy& strategy, Deadline deadline,
                     Publish publish = Publish::kNow);
  absl::Status Write(std::span<const std::byte> message, const WaitStrategy& strategy, Deadline deadline,
                     Publish publish, WaitCheck check);

  // True if a message of `size` bytes fits now (a full ring looks at the consumer's head again).
  bool Fits(std::size_t size) { return HasSpace(RecordBytes(size)); }

  // Waits until a message of `size` bytes fits. Publishes staged records first.
  absl::Status WaitForSpace(std::size_t size, const WaitStrategy& strategy, Deadline deadline, WaitCheck check);

  // For a waiter on many rings: publishes what is staged, asks the consumer to wake us once a message of
  // `size` bytes fits, and raises the sleep flag, as WaitForSpace does before it sleeps. The caller then
  // fences (always heavy on this side), looks with Fits(size), sleeps on the word, and ends with EndSleep.
  ArmedSleep ArmSleep(std::size_t size);
  void EndSleep(bool slept);

  // Messages written (published or staged) by this producer since it attached.
  std::uint64_t messages_written() const { return messages_written_; }
  // FUTEX_WAKE / FUTEX_WAIT system calls this producer made.
  std::uint64_t wake_syscalls() const { return wake_syscalls_; }
  std::uint64_t wait_syscalls() const { return wait_syscalls_; }
  std::uint64_t staged_bytes() const { return batch_start_ == kNone ? 0 : tail_ - batch_start_; }

 private:
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};

  RecordHeader* HeaderAt(std::uint64_t position) const {
    return reinterpret_cast<RecordHeader*>(data_ + (position & mask_));
  }
  static void SetHeaderFields(RecordHeader* header, std::uint64_t length, RecordKind kind) {
    header->length = static_cast<std::uint32_t>(length);
    header->kind = static_cast<std::uint32_t>(kind);
  }
  bool TryWriteSlow(std::span<const std::byte> message, Publish publish);
  // True if a record of `record_bytes` (plus any padding before it) fits; refreshes the cached head.
  bool HasSpace(std::uint64_t record_bytes);
  // Reserves a record of `record_bytes` at tail_, writing (but not committing) padding first if the record
  // would cross the end of the data area. Returns the record's position, or kNone when full.
  std::uint64_t Reserve(std::uint64_t record_bytes);
  // Adds the reserved padding (kNone if none) and record to the current batch, committing all but the
  // batch's first record, and publishes the batch if asked to or if it is large enough. tail_ is already
  // past the record.
  void CommitRecord(std::uint64_t padding, std::uint64_t record, Publish publish) {
    ClearNextCommitWord();
    if (padding != kNone) AddToBatch(padding);
    AddToBatch(record);
    ++messages_written_;
    if (publish == Publish::kNow || tail_ - batch_start_ >= batch_limit_) Flush();
  }
  void AddToBatch(std::uint64_t position) {
    if (batch_start_ == kNone) {
      batch_start_ = position;  // its commit is withheld: it hides the whole batch until Flush
    } else {
      // Invisible until the batch's first record is published (the consumer cannot get past it), so any
      // order would do; release keeps each record self-contained for whoever resumes a crashed producer.
      HeaderAt(position)->commit.store(position + 1, std::memory_order_release);
    }
  }
  // Zeroes the commit word at tail_, the next record position, before the record before it is published
  // (see "Framing" in the file comment). Skipped when the ring is exactly full there: that word is then the
  // oldest unread record's header, whose commit word can never hold tail_ + 1. Relaxed: the publication's
  // release orders it.
  void ClearNextCommitWord() {
    if (tail_ - cached_head_ < capacity_) HeaderAt(tail_)->commit.store(0, std::memory_order_relaxed);
  }
  // The consumer head at which a record of `record_bytes` (and any padding before it) fits.
  std::uint64_t HeadNeededFor(std::uint64_t record_bytes) const;
  // Zeroes every commit word in the free part of the ring (at attach: a dead producer may have left
  // committed-looking records behind its last published one).
  void ScrubFreeSpace();
  // Wakes the consumer if it raised data_sleeping (out of line: the rare part of Flush).
  void WakeSleepingConsumer();

  RingControl* control_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t mask_ = 0;
  std::uint64_t max_message_bytes_ = 0;
  std::uint64_t batch_limit_ = 0;
  std::uint64_t tail_ = 0;          // next position to write
  std::uint64_t cached_head_ = 0;   // last head read from the consumer
  std::uint64_t batch_start_ = kNone;  // first record whose commit is withheld
  std::uint64_t claim_position_ = kNone;
  std::uint64_t claim_padding_ = kNone;  // padding written for the outstanding claim, uncommitted
  std::uint64_t claim_capacity_ = 0;
  bool fenced_by_sleepers_ = false;  // internal::LightSideReady(): a sleeper's HeavyFence covers us
  std::uint32_t acked_epoch_ = ~std::uint32_t{0};  // the data_sleepy_epoch our publications follow
  std::uint64_t messages_written_ = 0;
  std::uint64_t wake_syscalls_ = 0;
  std::uint64_t wait_syscalls_ = 0;
};

class RingConsumer {
 public:
  // Messages a consumer killed while reading may leave to be delivered again to its successor: the one it
  // had copied or peeked but not yet released (the head is stored after every message).
  static constexpr std::uint64_t kMaxRedeliveredMessages = 1;

  RingConsumer() = default;
  // Reads records from `data[0, capacity)`, resuming at the head recorded in `control`. Rejects (as
  // corruption) any record whose payload exceeds `max_message_bytes`.
  RingConsumer(RingControl* control, const std::byte* data, std::uint64_t capacity,
               std::uint64_t max_message_bytes);

  RingConsumer(RingConsumer&&) = default;
  RingConsumer& operator=(RingConsumer&&) = default;

  // Zero-copy: points `message` at the next message, which stays valid and in the ring until Release().
  // Peeking again without Release returns the same message.
  ReadResult TryPeek(std::span<const std::byte>* message) {
    if (peeked_bytes_ == 0) {
      const std::byte* payload;
      std::uint32_t length;
      if (!PeekFast(&payload, &length)) return TryPeekSlow(message);
      peeked_bytes_ = RecordBytes(length);
      peeked_ = std::span<const std::byte>(payload, length);
      *message = std::span<const std::byte>(payload, length);
      return ReadResult::kOk;
    }
    *message = peeked_;
    return ReadResult::kOk;
  }
  // Releases the peeked message so its space can be reused.
  void Release() {
    if (peeked_bytes_ == 0) return;
    const std::uint64_t bytes = peeked_bytes_;
    peeked_bytes_ = 0;
    Advance(bytes);
  }
  // Copies the next message into `buffer` and sets `*size` to its length. kBufferTooSmall leaves the
  // message in the ring and sets `*size` to the length needed.
  ReadResult TryRead(std::span<std::byte> buffer, std::size_t* size) {
    return TryRead(buffer, size, [] { return true; });
  }
  // As TryRead, and `intact()` runs after the copy, before the message is released: false says the copy
  // cannot be trusted (the Channel's look at the segment's trailer); the message then stays in the ring,
  // peeked, and the result is kCorrupt.
  template <typename Intact>
  ReadResult TryRead(std::span<std::byte> buffer, std::size_t* size, Intact&& intact) {
    const std::byte* payload;
    std::uint32_t length;
    if (peeked_bytes_ == 0 && PeekFast(&payload, &length)) {
      // The common case, without a round trip through the peek state.
      *size = length;
      if (length <= buffer.size()) {
        if (length != 0) std::memcpy(buffer.data(), payload, length);
        if (!intact()) {
          peeked_bytes_ = RecordBytes(length);
          peeked_ = std::span<const std::byte>(payload, length);
          return ReadResult::kCorrupt;
        }
        Advance(RecordBytes(length));
        return ReadResult::kOk;
      }
    }
    std::span<const std::byte> message;
    const ReadResult result = TryPeek(&message);
    if (result != ReadResult::kOk) return result;
    *size = message.size();
    if (message.size() > buffer.size()) return ReadResult::kBufferTooSmall;
    if (!message.empty()) std::memcpy(buffer.data(), message.data(), message.size());
    if (!intact()) return ReadResult::kCorrupt;
    Release();
    return ReadResult::kOk;
  }

  // True if a message is ready to read (kCorrupt counts as ready: the read reports it).
  bool HasData();

  // Blocking read: waits for a message under `strategy` until `deadline`, calling `check` between sleeps.
  // Returns the message length. OutOfRange (message kept) if `buffer` is too small, DeadlineExceeded if
  // nothing arrived, DataLoss if the ring is corrupt.
  absl::StatusOr<std::size_t> Read(std::span<std::byte> buffer, const WaitStrategy& strategy, Deadline deadline);
  absl::StatusOr<std::size_t> Read(std::span<std::byte> buffer, const WaitStrategy& strategy, Deadline deadline,
                                   WaitCheck check);

  // Waits until HasData().
  absl::Status WaitForData(const WaitStrategy& strategy, Deadline deadline, WaitCheck check);

  // For a waiter on many rings: becomes sleepy and raises the sleep flag, as WaitForData does before it
  // sleeps. The caller then fences if asked, looks with HasData(), sleeps on the word, and ends with
  // EndSleep (whether or not it slept).
  ArmedSleep ArmSleep();
  void EndSleep(bool slept);

  bool corrupted() const { return corrupt_; }
  // Why the ring is considered corrupt (DataLoss), or OK.
  absl::Status corruption_status() const;

  std::uint64_t messages_read() const { return messages_read_; }
  std::uint64_t wake_syscalls() const { return wake_syscalls_; }
  std::uint64_t wait_syscalls() const { return wait_syscalls_; }

 private:
  // Consumes `record_bytes` at the head and hands the space back at once: a writer waiting for room gets
  // it as soon as its message fits, and a reader killed now leaves at most one message to redeliver. The
  // stores are to the consumer's own line, which the producer reads only when it believes the ring full.
  void Advance(std::uint64_t record_bytes) {
    head_ += record_bytes;
    // Relaxed: a statistic for observers.
    control_->consumer.messages_read.store(++messages_read_, std::memory_order_relaxed);
    std::uint32_t producer_sleeping;
    if (fenced_by_sleepers_) {
      // SYNC(head): release pairs with the producer's acquire in HasSpace: we are done reading before
      // head_. SYNC(space-sleep): the flag load is the light side of the asymmetric Dekker handshake with
      // WaitForSpace (file comment); acquire pairs with the producer's store of the flag, so the
      // space_wanted stored before it is visible.
      control_->consumer.head.store(head_, std::memory_order_release);
      producer_sleeping = control_->wait.space_sleeping.load(std::memory_order_acquire);
    } else {
      // No membarrier: an ordinary Dekker handshake, seq_cst on both sides.
      control_->consumer.head.store(head_, std::memory_order_seq_cst);
      producer_sleeping = control_->wait.space_sleeping.load(std::memory_order_seq_cst);
    }
    if (producer_sleeping != 0) WakeProducerIfRoom();
  }
  // The next record if it is a committed, valid data record; false for anything else (empty, padding,
  // corruption), which TryPeekSlow sorts out. Leaves the peek state alone.
  bool PeekFast(const std::byte** payload, std::uint32_t* length) const {
    const std::uint64_t offset = head_ & mask_;
    const RecordHeader* header = reinterpret_cast<const RecordHeader*>(data_ + offset);
    // SYNC(commit): acquire pairs with the producer's release in Flush/AddToBatch. seq_cst (a plain load
    // on x86 and Arm64) because this is also the recheck of the sleep-flag handshake in WaitForData.
    if (corrupt_ || header->commit.load(std::memory_order_seq_cst) != head_ + 1) return false;
    // Each field is read exactly once into a local: a hostile producer may change them under us.
    std::uint32_t kind;
    std::memcpy(length, &header->length, sizeof(*length));
    std::memcpy(&kind, &header->kind, sizeof(kind));
    if (kind != static_cast<std::uint32_t>(RecordKind::kData) || *length > max_message_bytes_ ||
        RecordBytes(*length) > capacity_ - offset) {
      return false;
    }
    *payload = reinterpret_cast<const std::byte*>(header + 1);
    return true;
  }
  ReadResult TryPeekSlow(std::span<const std::byte>* message);
  ReadResult MarkCorrupt(std::string detail);
  void WakeProducerIfRoom();
  // Before a sleep: makes the epoch odd (once) and looks for the producer's acknowledgement. Returns whether
  // the sleep must pass a heavy fence (not acknowledged yet).
  bool BecomeSleepy();
  // Waits that found data while still polling, in a row, after which a sleepy consumer counts as a
  // polling one again: the producer may then publish with release stores.
  static constexpr std::uint32_t kPolledWaitsToLeaveSleepy = 64;
  // Messages read after a sleep, before the next wait, that show a stream worth a look before sleeping (a
  // reader answering one message at a time reads one).
  static constexpr std::uint64_t kBacklogOfAStream = 8;
  // Polls of that look, after a yield (together about 1 us on the test machine: 0.2 us, 0.8 us).
  static constexpr std::uint32_t kLookPolls = 64;

  RingControl* control_ = nullptr;
  const std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t mask_ = 0;
  std::uint64_t max_message_bytes_ = 0;
  bool fenced_by_sleepers_ = false;  // internal::LightSideReady(): a sleeper's HeavyFence covers us
  std::uint32_t sleepy_epoch_ = 0;   // what we stored in data_sleepy_epoch (or found there)
  bool sleepy_ = false;              // sleepy_epoch_ is odd
  bool acked_ = false;               // the producer acknowledged sleepy_epoch_
  std::uint32_t polled_waits_ = 0;   // while sleepy_: waits in a row that ended without sleeping
  std::uint64_t read_when_woken_ = 0;  // messages_read_ when the last wait that slept ended
  bool last_look_found_ = false;     // the last wait ended in its look before sleeping
  std::uint64_t head_ = 0;           // next position to read, stored for the producer after every message
  std::uint64_t peeked_bytes_ = 0;    // record bytes of the peeked message, 0 if none
  std::span<const std::byte> peeked_;  // the peeked message
  bool corrupt_ = false;
  std::uint64_t messages_read_ = 0;
  std::uint64_t wake_syscalls_ = 0;
  std::uint64_t wait_syscalls_ = 0;
  std::string corruption_;
};

}  // namespace eshm

#endif  // ESHM_CXX20
#endif  // ESHM_RING_H_
