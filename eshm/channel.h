// A channel: one endpoint (master or slave) of a named two-way eshm connection, with roles, a heartbeat,
// liveness detection, automatic reconnection and statistics, over the two rings of a Segment.
//
// Roles. Exactly one master and one slave per name, arbitrated by OFD locks on the segment file
// (role_lock.h): a second live master or slave is refused with an error naming the holder's pid. The
// master creates the segment; a master (or AUTO) that finds a segment whose master is dead takes it over
// without anyone removing files. AUTO takes the master role if it is free and the slave role otherwise,
// race-free because the lock decides. What happens to the file at the channel's path (create, adopt,
// replace a dead master's segment of another shape, or refuse anything else untouched) is decided by
// Segment::Acquire alone.
//
// Liveness. The peer is dead when its role lock is free (kernel evidence: the lock dies with the
// process), unresponsive when its heartbeat has not advanced for stale_threshold_ms on this process's
// monotonic clock (or, where we watch the peer's monitor thread through the kernel, that thread has not
// slept and woken for that long), alive otherwise. All channels of a process share one monitor thread
// (internal/monitor.h), which beats and looks at each peer a few times per stale threshold (the smaller of
// the two sides' thresholds, each side publishes its own) and otherwise sleeps: a peer's exit wakes it
// through a pidfd, a peer's arrival or a change at the name through inotify, so idle channels cost next
// to nothing. A blocked read or write learns of a death within about a millisecond: the monitor wakes it.
//
// Disconnects. While the peer is gone (dead, unresponsive, or not yet attached), reads deliver what is
// already queued and writes queue messages while the ring has room (they reach the next peer). An
// operation that would have to wait for the peer (a read from an empty ring, a write to a full one) does as
// the disconnect behaviour says: kImmediately fails at once (kPeerGone / Unavailable; under kImmediately
// writes fail at once even with room), kOnTimeout waits up to reconnect_wait_ms for a peer that went away
// (dead or unresponsive) to come back, then fails, and waits for a peer that has not attached yet as long
// as the operation's own deadline allows; kNever waits as long as the operation's own deadline allows.
//
// Reconnection and crash semantics (what survives what):
//  * Master killed: the segment stays; the slave keeps it, reports the master gone, and carries on when the
//    next master takes the segment over. Messages either side had published survive and are delivered in
//    order (to the slave, or to the new master).
//  * Master closed with auto_cleanup: the name is removed. The slave can still read what was queued for it;
//    when a new master creates a new segment under the name (a new inode), the slave re-attaches to it by
//    itself (every reconnect_retry_interval_ms, at most max_reconnect_attempts times; 0 = unlimited).
//    Messages the slave had queued for the old master are dropped with the old segment.
//  * Segment name removed by hand while the master runs (`rm /dev/shm/eshm_<name>`): the master notices
//    within reconnect_retry_interval_ms, creates a new segment of the same shape under the name and moves
//    there; the slave drains the old one and follows, as above. What the slave writes between the move
//    and its following (at most about reconnect_retry_interval_ms) is lost with the old segment.
//  * Slave killed or closed: messages queued for it are delivered to the next slave.
//  * Either side killed while reading: the message it was reading (copied or peeked, not yet released; at
//    most RingConsumer::kMaxRedeliveredMessages) is delivered again to its successor. Across a reader crash
//    delivery is at-least-once; otherwise it is exactly-once and in order.
//  * A writer killed mid-message or mid-batch: nothing partial is ever delivered; staged, unpublished
//    messages are lost.
//
// Truncation. A process that can open the segment file can truncate it. This endpoint then reports the
// segment lost (kCorrupt; DataLoss "... truncated ...") from every call, for good: close and re-open the
// channel. Reads notice at once (the trailer check of Segment::TrailerIntact after each message, and on
// an empty ring); a blocked call notices at its next wait slice (it looks at the trailer itself: 10 ms on
// a ring or for the peer), and the monitor's backstop (fstat once a second) wakes it. A read never returns as whole a message the truncation damaged. Messages
// queued in the segment are lost, and so is what the writer wrote there before it noticed.
//
// Moving to a new segment (the master re-creating its removed name, a slave following a new master) with
// writes not yet published. Messages staged with Publish::kDeferred (one by one, or by a WriteBatch in
// progress) are taken along: at the write side's next call (TryWrite, Write, WriteBatch, TryClaim, Commit
// or Flush) they are written again, still staged and in order, into the new segment, ahead of
// anything newer; the old segment's reader never saw them, so each is delivered once. An open claim stays
// valid (its memory stays mapped) until Commit or Abort; Commit then sends its bytes to the new segment,
// never to the one left behind. What the master had published before it moved, including by a write-side
// call in progress at that moment, is in the old segment, which the slave drains before it follows (see
// above): the master holds its role there until its write side can no longer publish there. If the new
// segment cannot take a carried message (a new master chose a smaller maximum message size or smaller
// rings), that message and the ones after it are dropped and the next TryWrite, Write, WriteBatch, Commit
// or Flush returns IoResult::kLost (DataLoss): TryWrite, Write and Commit then did not send their own
// message; StatusOf(kLost) says how many were dropped. Close() publishes what is staged where the write
// side last wrote: call Flush() first if the channel may have moved since.
//
// Threading: thread-compatible per side. The write side (Write, TryWrite, Claim/Commit/Abort, WriteBatch,
// Flush) may be used by one thread at a time, and the read side (Read, TryRead, Peek/Release)
// by one thread at a time; one writer thread and one reader thread may run concurrently. stats(), role(),
// peer_state(), IsRemoteAlive() and Shutdown() are thread-safe. Close() and the destructor must not race
// with any other call.
#ifndef ESHM_CHANNEL_H_
#define ESHM_CHANNEL_H_

#include "eshm/internal/require_cxx20.h"
#if ESHM_CXX20

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eshm/deadline.h"
#include "eshm/internal/monitor.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/segment.h"
#include "eshm/segment_name.h"
#include "eshm/wait_strategy.h"

namespace eshm {

class WaitSet;

enum class ChannelRole : int { kMaster = 0, kSlave = 1, kAuto = 2 };
enum class DisconnectBehavior : int { kImmediately = 0, kOnTimeout = 1, kNever = 2 };
enum class PeerState : int {
  kAbsent = 0,        // no peer has attached to this segment since we did
  kAlive = 1,         // role lock held, heartbeat advancing
  kUnresponsive = 2,  // role lock held, heartbeat stale (frozen, stopped, or starved)
  kDead = 3,          // role lock free after a peer had attached
};
const char* PeerStateName(PeerState state);

struct ChannelOptions {
  ChannelRole role = ChannelRole::kAuto;
  DisconnectBehavior disconnect_behavior = DisconnectBehavior::kOnTimeout;
  int stale_threshold_ms = 100;
  // The longest time between two beats of this side; 0 (the default): a quarter of the smaller stale
  // threshold of the two sides, or once a second where the peer watches this process's monitor thread
  // through the kernel instead (docs/design.md §5). A peer is called unresponsive by its own stale
  // threshold either way.
  int heartbeat_interval_ms = 0;
  int reconnect_wait_ms = 5000;
  // How often a slave waiting for its master (in Open, or for a new segment after the name was removed)
  // looks at the name again; it also looks as soon as inotify reports the name created or changed.
  int reconnect_retry_interval_ms = 100;
  int max_reconnect_attempts = 50;  // 0 = unlimited
  bool auto_cleanup = true;         // the master removes the segment name when it closes
  bool use_threads = true;          // false: no monitor; heartbeat and checks advance on each call
  // Segment shape, used by the side that creates it (the slave adopts the master's).
  std::uint64_t m2s_capacity = 1 << 20;
  std::uint64_t s2m_capacity = 1 << 20;
  std::uint64_t max_message_bytes = 0;  // 0: the largest the rings allow
  mode_t mode = 0600;
  // Accept a segment created by another user (for channels shared between users through `mode`). Off by
  // default: a segment someone else created under our name is refused rather than trusted.
  bool allow_other_owner = false;
  // How blocking calls wait: spin, then yield, then sleep on a futex.
  WaitStrategy wait = WaitStrategy::Adaptive();
  // Called on the waiting thread while anything waits: at least every kAcquireCheckIntervalMs (50 ms) while
  // Open waits (a slave for its master, or anyone for a process replacing the segment), and at least every
  // kWaitCheckIntervalNs (10 ms) while a blocking call (Write, WriteBatch, Claim, Read, Peek)
  // waits for the ring or the peer. A non-OK status ends the wait with it. For interruptible waits: Python
  // runs its signal handlers in it (Ctrl-C raises KeyboardInterrupt), eshm_demo stops on SIGINT.
  std::function<absl::Status()> wait_check;
};

// Results of the non-blocking calls: cheap to return on the hot path; StatusOf() explains them.
enum class IoResult : std::uint8_t {
  kOk,
  kWouldBlock,      // ring full (write) or empty (read)
  kTooLarge,        // message larger than max_message_bytes(): it can never be written
  kBufferTooSmall,  // the next message is larger than the buffer; it stays in the ring
  kPeerGone,        // disconnect behaviour kImmediately and the peer is dead, unresponsive or absent
  kCorrupt,         // the peer broke the ring's invariants
  kClosed,          // the channel was closed
  kLost,            // messages written before a move to a new segment could not be carried there (see
                    // "Moving to a new segment" above); this call's own message was not sent
};
const char* IoResultName(IoResult result);

struct ChannelStats {
  std::uint32_t master_pid = 0;
  std::uint32_t slave_pid = 0;
  bool master_alive = false;
  bool slave_alive = false;
  // Each holder's beat counter: it advances every beat interval, or once a second where the holder's peer
  // watches its monitor thread through the kernel instead (master_alive / slave_alive say what it means).
  std::uint64_t master_heartbeat = 0;
  std::uint64_t slave_heartbeat = 0;
  std::uint64_t m2s_write_count = 0;
  std::uint64_t m2s_read_count = 0;
  std::uint64_t s2m_write_count = 0;
  std::uint64_t s2m_read_count = 0;
  std::uint64_t epoch = 0;            // master attachments to this segment (1 = its creator)
  std::uint64_t segment_epoch_ns = 0; // when the segment was created (CLOCK_REALTIME)
  std::uint64_t reconnect_count = 0;  // times this endpoint saw its peer come back or re-attached
  std::uint64_t m2s_queued_bytes = 0;
  std::uint64_t m2s_queued_messages = 0;
  std::uint64_t s2m_queued_bytes = 0;
  std::uint64_t s2m_queued_messages = 0;
  std::uint64_t m2s_capacity = 0;
  std::uint64_t s2m_capacity = 0;
  std::uint64_t max_message_bytes = 0;
  std::uint64_t wake_syscalls = 0;    // FUTEX_WAKE calls on both rings, both sides
  std::uint64_t wait_syscalls = 0;    // FUTEX_WAIT calls on both rings, both sides
};

class Channel final : private internal::MonitorClient {
 public:
  // Opens the endpoint `name` in the role options.role asks for. The string_view overload checks the name
  // (SegmentName::Create: InvalidArgument) and calls the other, which checks nothing again.
  static absl::StatusOr<std::unique_ptr<Channel>> Open(std::string_view name, const ChannelOptions& options = {});
  static absl::StatusOr<std::unique_ptr<Channel>> Open(const SegmentName& name, const ChannelOptions& options = {});

  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel();

  // The blocking calls below wait until `deadline`. For a per-call timeout pass Deadline::TimeoutMs: it is
  // counted from the call's first wait, so a call that completes at once never reads the clock (with
  // Deadline::AfterMs, building the deadline costs a clock read per call).

  // ---- Write side ----
  // Copies `message` into the outgoing ring.
  IoResult TryWrite(std::span<const std::byte> message, Publish publish = Publish::kNow);
  // Waits for space (backpressure; never overwrites) and for the peer, per the disconnect behaviour.
  absl::Status Write(std::span<const std::byte> message, Deadline deadline, Publish publish = Publish::kNow);
  // Writes every message in order, publishing once at the end; stops at the first failure. Returns how
  // many were written (all of them on success).
  absl::StatusOr<std::size_t> WriteBatch(std::span<const std::span<const std::byte>> messages, Deadline deadline);
  // Zero-copy: room for up to `size` bytes (nullptr if it does not fit now, or ever, or the peer is gone
  // under kImmediately, or a claim is already open). End with Commit or Abort.
  std::byte* TryClaim(std::size_t size);
  // As TryClaim, waiting for room and for the peer as Write does.
  absl::StatusOr<std::byte*> Claim(std::size_t size, Deadline deadline);
  // Sends the first `size` bytes of the open claim (at most what was claimed): kOk, or kLost (it was not
  // sent: see "Moving to a new segment"), or kClosed. kOk without an open claim.
  IoResult Commit(std::size_t size, Publish publish = Publish::kNow);
  void Abort();
  // The mapping that holds the open claim's memory (empty without a claim). A binding whose buffers may
  // outlive the claim keeps it, so that they stay valid memory after Commit or Abort, whatever segment the
  // channel moves to meanwhile (the segment is unmapped only when the last holder lets go). Write side.
  std::shared_ptr<void> PinClaimMemory() const;
  // Publishes everything staged: kOk, kLost (others were dropped at a move; the rest are published), or
  // kClosed.
  IoResult Flush();

  // ---- Read side ----
  // A message read as kOk / OK is whole, as its writer wrote it: never one damaged by a truncation of the
  // segment file (that is kCorrupt / DataLoss, see "Truncation" above).
  IoResult TryRead(std::span<std::byte> buffer, std::size_t* size);
  absl::StatusOr<std::size_t> Read(std::span<std::byte> buffer, Deadline deadline);
  // Zero-copy: the next message stays in the ring (and `message` valid) until Release(). The view lies in
  // shared memory: a truncation of the file can zero it while it is held, so trust what was read from it
  // only once Release() returned kOk (kCorrupt: it may have been zeroed under you, the segment is lost).
  IoResult TryPeek(std::span<const std::byte>* message);
  absl::StatusOr<std::span<const std::byte>> Peek(Deadline deadline);
  IoResult Release();
  // Size of the next queued message, if any (so a caller can size its buffer and never truncate).
  std::optional<std::size_t> NextMessageSize();

  // ---- Any thread ----
  const std::string& name() const { return name_.name(); }
  Role role() const { return role_; }
  PeerState peer_state() const { return static_cast<PeerState>(peer_state_.load(std::memory_order_acquire)); }
  bool IsRemoteAlive() const { return peer_state() == PeerState::kAlive; }
  std::uint64_t max_message_bytes() const { return max_message_bytes_.load(std::memory_order_relaxed); }
  ChannelStats stats() const;
  // Why a non-blocking call returned `result`.
  absl::Status StatusOf(IoResult result) const;

  // For an endpoint that relays another one (eshm-bridge: the application on the far host): the state of
  // the endpoint it stands for, as this process knows it. The peer's peer_state() (and stats(), and what
  // its calls do while the peer is gone) is then the worse of its own evidence about this process and this
  // state, in the order kAlive < kUnresponsive < kAbsent < kDead; a return to kAlive after kDead counts in
  // the peer's reconnect_count, and a change wakes the peer's blocked calls as any change of its peer does.
  // std::nullopt (the default, and what an ordinary endpoint never changes): nothing represented. Kept
  // across moves to a new segment; cleared when the role is taken by a new holder. Peers built before this
  // existed ignore it. Thread-safe; a no-op once closed.
  void SetRepresentedPeerState(std::optional<PeerState> state);

  // Ends every blocking call in progress on any thread at once, and every later wait, with Cancelled
  // ("channel '<name>' is shutting down"); non-blocking calls keep working. For closing a channel that other
  // threads may be blocked on: Shutdown, let their calls return, then Close. Thread-safe; idempotent.
  void Shutdown();

  // Releases the role; with auto_cleanup a master also removes the segment name. Idempotent.
  void Close();

 private:
  friend class WaitSet;

  // One segment this endpoint is attached to, with the ring ends it uses. Replaced (by the monitor) when
  // the slave follows its master to a new segment; each side keeps the one it uses alive until it moves.
  struct Attachment {
    explicit Attachment(Segment s) : segment(std::move(s)) {}
    Segment segment;
    RingProducer producer;
    RingConsumer consumer;
    std::uint64_t generation = 0;
  };
  // Per-side state: which attachment the side's thread is using.
  struct Side {
    std::shared_ptr<Attachment> attachment;
    std::uint64_t generation = 0;
  };

  Channel(SegmentName name, const ChannelOptions& options);
  absl::Status Attach(std::shared_ptr<Attachment> attachment, Role role);

  // Heartbeat and liveness; run by the process's monitor thread, or inline when use_threads is false.
  // Tick returns when it wants to run next; `events` are the monitor's hints (internal::MonitorEvent).
  std::int64_t OnTick(std::int64_t now_ns, unsigned events, internal::TickHints& hints) override;
  std::int64_t Tick(std::int64_t now_ns, unsigned events);
  void InlineTick();
  // Whether to ask the kernel whether the peer's role is locked: a system call, so only when a hint says
  // something changed, when nothing watches the peer's exit, or as a backstop.
  bool ShouldCheckLock(std::int64_t now, unsigned events, std::uint64_t epoch, std::uint32_t peer_role_state) const;
  // Watches the peer process's exit through the monitor when its published pid can be trusted to name it.
  void UpdatePidWatch(PeerState state, std::uint64_t epoch, bool exited_but_held);
  // The kernel as heartbeat (layout.h, RoleControl::monitor_tid): publishes our monitor thread, watches the
  // peer's when we can (and says so in kernel_watch), and learns whether the peer watches ours.
  void UpdateKernelBeat(PeerState evidence, std::uint64_t epoch, std::int64_t now);
  void StopKernelWatch();
  // How long until the next beat: see heartbeat_interval_ms.
  std::int64_t BeatIntervalNs() const;
  bool TryReattach();
  // A master whose name was removed creates a segment of the same shape under it and moves there. True if
  // the name is still missing (the creation failed): try again later.
  bool RecreateIfUnlinked();
  // Moves this endpoint (role already locked on `segment`) from current_ to `segment`.
  void Adopt(Segment segment);
  // Releases our role in the segments Adopt left behind, once the write side cannot publish there any more
  // (or at once with `force`). Under mu_.
  void ReleaseLeftSegments(std::int64_t now, bool force);
  // Writes our pid, heartbeat, attach epoch and state into our role's control block.
  void TakeRoleControl(Segment& segment);
  // Writes represented_ into our role's control block, tagged with our attach epoch there; true if the word
  // changed. Under mu_ (or before the channel is shared).
  bool PublishRepresentedState(Segment& segment);
  // The peer's state as this endpoint reports it: `evidence` (what we know about the process holding the
  // peer role) made worse by what that process represents, if it is attached and says something.
  PeerState CombineRepresented(PeerState evidence, const RoleControl& them, std::uint64_t epoch);
  void WakeLocalWaiters(const Attachment* attachment);

  // Moves a side onto the current attachment if the monitor replaced it. Cheap when nothing changed. The
  // reader first drains the old segment: its writer is gone, so what is queued there is all there will be.
  void SyncSide(Side& side) {
    if (generation_.load(std::memory_order_acquire) == side.generation) return;
    if (&side == &reader_ && side.attachment != nullptr && side.attachment->consumer.HasData()) return;
    SwitchSide(side);
  }
  void SwitchSide(Side& side);
  // After the write side moved from `left`: writes what it had staged there into its new attachment.
  void CarryStaged(Attachment& left);
  // Returns kLost for the messages dropped at the last move, and remembers how many for StatusOf.
  IoResult ReportLost();
  bool PeerGone() const { return peer_state_.load(std::memory_order_acquire) != static_cast<int>(PeerState::kAlive); }
  // For WaitSet, on the read (write) side's thread: a read would find a message (or a corrupt or cut ring
  // to report), a write of `size` bytes would fit; a move to a new segment counts as ready too (the side's
  // next call follows it).
  bool ReadReady();
  bool WriteReady(std::size_t size);
  // Waits, per the disconnect behaviour, until the peer is alive. OK when it is, when `ready()` (the call
  // can go on: a message to read, room to write), or when `side`'s segment was found truncated (the
  // caller's next call reports it). `deadline` is started (Deadline::Started) by the calling operation.
  absl::Status AwaitPeer(const Side& side, Deadline deadline, absl::FunctionRef<bool()> ready);
  // TryPeek without the trailer check after a message: for the read paths that check after copying.
  // What a read side's ring result means for the caller (an empty ring also looks at the trailer and, under
  // kImmediately, at the peer).
  IoResult ReadOutcome(ReadResult result) const;
  // Waits for the read side's next message (or for the peer, per the disconnect behaviour), until the
  // started `deadline`.
  absl::Status AwaitMessage(Deadline deadline);
  // Runs a blocking ring wait for `side` (`wait` gets the WaitCheck to pass to the ring) and ends it early,
  // with OK, when the caller must look again: the peer went, the attachment moved, the file was truncated.
  // Other results are the wait's own (DeadlineExceeded), or Cancelled if the channel is closing.
  absl::Status WaitOnRing(const Side& side, absl::FunctionRef<absl::Status(WaitCheck)> wait);
  // StatusOf for a result of `side`'s own call: reads only that side's attachment, so it is safe while
  // the other side's thread moves to a new one.
  absl::Status StatusOf(IoResult result, const Side& side) const;
  absl::Status PeerGoneError() const;
  absl::Status StoppedError() const;

  const SegmentName name_;
  const ChannelOptions options_;
  Role role_ = Role::kMaster;
  Direction out_ = Direction::kMasterToSlave;
  Direction in_ = Direction::kSlaveToMaster;
  std::atomic<std::uint64_t> max_message_bytes_{0};  // of the current attachment

  Side writer_;
  Side reader_;

  // The write side's open zero-copy claim, if any. Write side only.
  struct OpenClaim {
    std::byte* data = nullptr;  // nullptr: no claim is open
    std::size_t capacity = 0;
    const Attachment* attachment = nullptr;  // where it was claimed
    // That attachment once the write side has moved on: keeps the claim's memory mapped until it ends.
    std::shared_ptr<Attachment> left_behind;
  };
  OpenClaim claim_;
  // Marks a write-side call (see writer_busy_). Nests: only the outermost call sets and clears the flag.
  class WriterCall;
  int writer_depth_ = 0;  // write side only
  // True while a write-side call runs: it may publish into the attachment it last synced to. The write side
  // stores it relaxed, then orders it before its read of generation_ with a compiler-only fence; the monitor
  // supplies the hardware half with a process-wide barrier after it moves (Adopt), so the pair is a Dekker
  // handshake that costs the hot path nothing: either the monitor sees the call, or the call sees the move.
  // Cleared with release, read with acquire: what the call published happens-before the monitor's release
  // of the old segment.
  std::atomic<bool> writer_busy_{false};
  // The generation the write side writes to: stored (release) when it moves, read (acquire) by the monitor.
  std::atomic<std::uint64_t> writer_generation_{0};
  // Segments this endpoint moved away from and still holds its role in, so that the peer does not leave
  // them while our write side may still publish there; with when we left and whether the process-wide
  // barrier ran. Guarded by mu_.
  std::vector<std::shared_ptr<Attachment>> left_;
  std::int64_t left_since_ns_ = 0;
  bool left_ordered_ = false;
  // Messages the write side dropped at a move and has not reported yet. Write side only.
  std::uint64_t lost_ = 0;
  // How many the last kLost reported, for StatusOf from any thread. Relaxed: a number to print.
  std::atomic<std::uint64_t> lost_reported_{0};

  // std::mutex rather than absl::Mutex: the system abseil is not built for ThreadSanitizer.
  mutable std::mutex mu_;
  std::shared_ptr<Attachment> current_;  // guarded by mu_
  std::atomic<std::uint64_t> generation_{0};

  // Peer liveness, written by Tick: what peer_state() reports (our evidence combined with what the peer
  // represents, see SetRepresentedPeerState).
  std::atomic<int> peer_state_{static_cast<int>(PeerState::kAbsent)};
  // Whether peer_state_ is worse than our own evidence because of what the peer represents; for messages
  // only (relaxed).
  std::atomic<bool> peer_state_represented_{false};
  std::atomic<std::uint32_t> peer_event_{0};  // bumped (and futex-woken) on every peer state change
  std::atomic<std::int64_t> peer_gone_since_ns_{0};
  std::atomic<std::uint64_t> reconnect_count_{0};

  // Tick's own bookkeeping (monitor thread, or the calling thread under mu_ when use_threads is false).
  // Our own evidence about the peer process (its lock, its heartbeat), which drives the mechanics:
  // re-attaching, watching its pid, how often to look.
  PeerState evidence_state_ = PeerState::kAbsent;
  // The reported state was kDead (or the peer restarted) since it was last kAlive: its next kAlive is a
  // reconnection.
  bool gone_since_alive_ = false;
  std::uint64_t heartbeat_ = 0;
  std::uint64_t peer_heartbeat_seen_ = 0;
  std::uint64_t peer_attach_epoch_seen_ = 0;
  std::int64_t peer_heartbeat_change_ns_ = 0;
  std::int64_t next_tick_ns_ = 0;
  std::int64_t last_reattach_try_ns_ = 0;
  int reattach_attempts_ = 0;
  bool peer_ever_seen_ = false;
  // The last look at the peer's role lock: when, its result, and the peer's attach epoch then.
  std::int64_t last_lock_check_ns_ = 0;
  bool peer_locked_ = false;
  std::uint64_t lock_checked_epoch_ = 0;
  // The peer process whose exit the monitor watches (pid_watched_), and a peer attachment (epoch) whose
  // published pid proved not to name the lock holder: polled instead.
  bool pid_watched_ = false;
  pid_t watched_pid_ = 0;
  std::uint64_t pid_untrusted_epoch_ = 0;
  // Until then, tick every millisecond: someone opened our file, a peer may be arriving.
  std::int64_t arrival_window_end_ns_ = 0;
  // When the peer was first seen marking its role vacant while it still held the lock (it is closing), or 0.
  std::int64_t leaving_seen_ns_ = 0;
  // What SetRepresentedPeerState last set: 0 = nothing, else 1 + PeerState. Guarded by mu_, as is the
  // attach epoch our role has in current_'s segment (the tag of what we publish there) and the word last
  // published there (so that an unchanged state costs no store and no wake of the peer).
  std::uint32_t represented_ = 0;
  std::uint64_t own_attach_epoch_ = 0;
  std::uint32_t represented_published_ = 0;
  // A master whose name was removed and could not re-create it yet: retry at reconnect_retry_interval_ms.
  bool name_retry_pending_ = true;
  pid_t own_pid_ = 0;
  // The kernel as heartbeat: whether the monitor watches the peer's monitor thread for us (for the peer
  // attachment thread_watch_epoch_, whose thread is thread_watch_tid_), whether the peer says it watches
  // ours, and what we last published (our monitor thread's id, our kernel_watch word).
  bool thread_watched_ = false;
  std::uint64_t thread_watch_epoch_ = 0;
  pid_t thread_watch_tid_ = 0;
  bool watched_by_peer_ = false;
  pid_t monitor_tid_published_ = 0;
  std::uint64_t kernel_watch_published_ = 0;

  // The WaitSets this channel is a member of; guarded by WaitSet's membership lock.
  std::vector<WaitSet*> wait_sets_;

  std::atomic<bool> stop_{false};
  bool monitored_ = false;  // registered with the process's monitor
  bool closed_ = false;
};

// The hot path's two calls are defined here, inline, so that a caller's loop of TryWrite or TryRead pays no
// call for them (the ring's own fast paths are inline too); what they need when it is not the common case
// is out of line.

class Channel::WriterCall {
 public:
  explicit WriterCall(Channel& channel) : channel_(channel) {
    if (channel_.writer_depth_++ != 0) return;
    // Relaxed, and ordered before this call's read of generation_ by the signal fence here (the compiler)
    // and the monitor's internal::HeavyFence (the CPU): see writer_busy_ above.
    channel_.writer_busy_.store(true, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  WriterCall(const WriterCall&) = delete;
  WriterCall& operator=(const WriterCall&) = delete;
  ~WriterCall() {
    // Release: pairs with the acquire in ReleaseLeftSegments; this call's publications come first.
    if (--channel_.writer_depth_ == 0) channel_.writer_busy_.store(false, std::memory_order_release);
  }

 private:
  Channel& channel_;
};

inline IoResult Channel::TryWrite(std::span<const std::byte> message, Publish publish) {
  if (closed_) return IoResult::kClosed;
  WriterCall call(*this);
  if (!options_.use_threads) InlineTick();
  SyncSide(writer_);
  if (lost_ != 0) return ReportLost();
  // The limit of the segment this side writes to (it can differ from a newer one the monitor attached).
  if (message.size() > writer_.attachment->producer.max_message_bytes()) return IoResult::kTooLarge;
  if (writer_.attachment->segment.truncated()) return IoResult::kCorrupt;
  if (options_.disconnect_behavior == DisconnectBehavior::kImmediately && PeerGone()) return IoResult::kPeerGone;
  return writer_.attachment->producer.TryWrite(message, publish) ? IoResult::kOk : IoResult::kWouldBlock;
}

// The one read path: the ring's own copying read, with the trailer check between the copy and the release.
inline IoResult Channel::TryRead(std::span<std::byte> buffer, std::size_t* size) {
  if (closed_) return IoResult::kClosed;
  if (!options_.use_threads) InlineTick();
  SyncSide(reader_);
  const Segment& segment = reader_.attachment->segment;
  if (segment.truncated()) return IoResult::kCorrupt;
  const ReadResult result = reader_.attachment->consumer.TryRead(
      buffer, size, [&segment] { return !segment.truncated() && segment.TrailerIntact(); });
  return result == ReadResult::kOk ? IoResult::kOk : ReadOutcome(result);  // the common case inline
}

}  // namespace eshm

#endif  // ESHM_CXX20
#endif  // ESHM_CHANNEL_H_
