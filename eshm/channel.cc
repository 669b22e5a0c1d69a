#include "eshm/channel.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "eshm/futex.h"
#include "eshm/internal/asymmetric_fence.h"
#include "eshm/internal/proc_status.h"
#include "eshm/internal/staged_messages.h"
#include "eshm/internal/status_macros.h"
#include "eshm/role_lock.h"
#include "eshm/wait_set.h"

namespace eshm {
namespace {

constexpr std::int64_t kNsPerMs = 1'000'000;
// Without a process-wide barrier (ReleaseLeftSegments), how long after a move an idle write side is trusted
// to have seen it: far longer than any store takes to become visible.
constexpr std::int64_t kUnorderedMoveGraceNs = 1'000'000;
// How often the monitor asks the kernel about the peer's role lock (and fstats the file) when nothing
// suggests a change: the backstop for hints that never come (a peer whose published pid names another
// process, say).
constexpr std::int64_t kLockBackstopNs = 1'000'000'000;
// After someone opens our segment file with no peer attached, how long to look every millisecond for it
// to announce itself.
constexpr std::int64_t kArrivalWindowNs = 100'000'000;

using internal::OwnPidNamespace;

// Makes the monitors watching `segment`'s name look now. Through the name while it names this segment:
// inotify reports an access through the descriptor of a segment this process created unnamed (O_TMPFILE,
// then linkat) under the unnamed file's own name ("#<inode>"), which no monitor watches. (Should a
// successor take the name between the look and the touch, its monitors look once for nothing: a hint, like
// every touch.)
void AnnounceToMonitors(const Segment& segment, const SegmentName& name) {
  if (segment.name_state() == Segment::NameState::kThis) {
    internal::TouchNameForMonitors(name.path().c_str());
  } else {
    internal::TouchForMonitors(segment.fd());
  }
}

const char* RoleName(Role role) { return role == Role::kMaster ? "master" : "slave"; }
Role Other(Role role) { return role == Role::kMaster ? Role::kSlave : Role::kMaster; }

absl::Status ValidateOptions(const ChannelOptions& o) {
  auto positive = [](int v, const char* what) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrFormat("%s must be positive, got %d", what, v));
  };
  auto non_negative = [](int v, const char* what) -> absl::Status {
    if (v >= 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrFormat("%s must not be negative, got %d", what, v));
  };
  ESHM_RETURN_IF_ERROR(positive(o.stale_threshold_ms, "stale_threshold_ms"));
  ESHM_RETURN_IF_ERROR(non_negative(o.heartbeat_interval_ms, "heartbeat_interval_ms"));
  ESHM_RETURN_IF_ERROR(non_negative(o.reconnect_wait_ms, "reconnect_wait_ms"));
  ESHM_RETURN_IF_ERROR(positive(o.reconnect_retry_interval_ms, "reconnect_retry_interval_ms"));
  ESHM_RETURN_IF_ERROR(non_negative(o.max_reconnect_attempts, "max_reconnect_attempts"));
  if (o.heartbeat_interval_ms >= o.stale_threshold_ms) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "heartbeat_interval_ms (%d) must be below stale_threshold_ms (%d), or every peer looks stale",
        o.heartbeat_interval_ms, o.stale_threshold_ms));
  }
  const int role = static_cast<int>(o.role);
  const int behavior = static_cast<int>(o.disconnect_behavior);
  if (role < 0 || role > 2) return absl::InvalidArgumentError(absl::StrFormat("unknown role %d", role));
  if (behavior < 0 || behavior > 2) {
    return absl::InvalidArgumentError(absl::StrFormat("unknown disconnect behavior %d", behavior));
  }
  return absl::OkStatus();
}

AcquireRole ToAcquireRole(ChannelRole role) {
  switch (role) {
    case ChannelRole::kMaster:
      return AcquireRole::kMaster;
    case ChannelRole::kSlave:
      return AcquireRole::kSlave;
    case ChannelRole::kAuto:
      break;
  }
  return AcquireRole::kAuto;
}

// How long Open waits (for a slave: for the segment to appear): max_reconnect_attempts retry intervals, or
// forever when that is 0.
Deadline OpenDeadline(const ChannelOptions& o) {
  if (o.max_reconnect_attempts == 0) return Deadline::Infinite();
  return Deadline::AfterMs(std::int64_t{o.max_reconnect_attempts} * o.reconnect_retry_interval_ms);
}

}  // namespace

const char* PeerStateName(PeerState state) {
  switch (state) {
    case PeerState::kAbsent:
      return "absent";
    case PeerState::kAlive:
      return "alive";
    case PeerState::kUnresponsive:
      return "unresponsive";
    case PeerState::kDead:
      return "dead";
  }
  return "unknown";
}

const char* IoResultName(IoResult result) {
  switch (result) {
    case IoResult::kOk:
      return "ok";
    case IoResult::kWouldBlock:
      return "would block";
    case IoResult::kTooLarge:
      return "too large";
    case IoResult::kBufferTooSmall:
      return "buffer too small";
    case IoResult::kPeerGone:
      return "peer gone";
    case IoResult::kCorrupt:
      return "corrupt";
    case IoResult::kClosed:
      return "closed";
    case IoResult::kLost:
      return "lost";
  }
  return "unknown";
}

Channel::Channel(SegmentName name, const ChannelOptions& options) : name_(std::move(name)), options_(options) {}

absl::StatusOr<std::unique_ptr<Channel>> Channel::Open(std::string_view name, const ChannelOptions& options) {
  ESHM_ASSIGN_OR_RETURN(SegmentName valid, SegmentName::Create(name));
  return Open(valid, options);
}

absl::StatusOr<std::unique_ptr<Channel>> Channel::Open(const SegmentName& name, const ChannelOptions& options) {
  ESHM_RETURN_IF_ERROR(ValidateOptions(options));
  std::unique_ptr<Channel> channel(new Channel(name, options));
  AcquireOptions request;
  request.role = ToAcquireRole(options.role);
  request.shape.m2s_capacity = options.m2s_capacity;
  request.shape.s2m_capacity = options.s2m_capacity;
  request.shape.max_message_bytes = options.max_message_bytes;
  request.shape.mode = options.mode;
  request.allow_other_owner = options.allow_other_owner;
  request.deadline = OpenDeadline(options);
  request.retry_interval_ms = options.reconnect_retry_interval_ms;
  request.check = options.wait_check;
  // The one decision about the file at the name: create, adopt, replace or refuse (segment.cc).
  absl::StatusOr<AcquiredSegment> acquired = Segment::Acquire(name, request);
  if (!acquired.ok()) {
    if (absl::IsNotFound(acquired.status()) && options.role == ChannelRole::kSlave) {
      return absl::NotFoundError(absl::StrFormat(
          "no master created channel '%s' (%s) within %d ms (max_reconnect_attempts %d x "
          "reconnect_retry_interval_ms %d): start the master first, or raise max_reconnect_attempts (0 waits "
          "forever). A master gives the segment its name only once it is complete, which takes a while for "
          "large rings",
          name.name(), name.path(),
          std::int64_t{options.max_reconnect_attempts} * options.reconnect_retry_interval_ms,
          options.max_reconnect_attempts, options.reconnect_retry_interval_ms));
    }
    return acquired.status();
  }
  ESHM_RETURN_IF_ERROR(
      channel->Attach(std::make_shared<Attachment>(std::move(acquired->segment)), acquired->role));
  if (options.use_threads) {
    channel->monitored_ = true;
    internal::Monitor::Process().Add(channel.get(), std::string(name.file_name()));
  }
  return channel;
}

absl::Status Channel::Attach(std::shared_ptr<Attachment> attachment, Role role) {
  role_ = role;
  out_ = role == Role::kMaster ? Direction::kMasterToSlave : Direction::kSlaveToMaster;
  in_ = role == Role::kMaster ? Direction::kSlaveToMaster : Direction::kMasterToSlave;
  Segment& segment = attachment->segment;
  max_message_bytes_.store(segment.max_message_bytes(), std::memory_order_relaxed);
  TakeRoleControl(segment);
  attachment->producer = segment.MakeProducer(out_);
  attachment->consumer = segment.MakeConsumer(in_);

  // The peer as we find it: its lock says whether it is there at all.
  const Role peer = Other(role);
  const RoleControl& them = segment.header()->roles[static_cast<int>(peer)];
  peer_heartbeat_seen_ = them.heartbeat.load(std::memory_order_relaxed);
  peer_attach_epoch_seen_ = them.attach_epoch.load(std::memory_order_relaxed);
  peer_heartbeat_change_ns_ = MonotonicNowNs();
  // (Epoch 0: the lock holder has not announced itself yet; see Tick.)
  peer_locked_ = IsRoleLockedByOther(segment.fd(), peer);
  last_lock_check_ns_ = MonotonicNowNs();
  lock_checked_epoch_ = peer_attach_epoch_seen_;
  peer_ever_seen_ = peer_locked_ && peer_attach_epoch_seen_ != 0;
  evidence_state_ = peer_ever_seen_ ? PeerState::kAlive : PeerState::kAbsent;
  peer_state_.store(static_cast<int>(CombineRepresented(evidence_state_, them, peer_attach_epoch_seen_)),
                    std::memory_order_release);
  if (!peer_ever_seen_) peer_gone_since_ns_.store(MonotonicNowNs(), std::memory_order_relaxed);

  std::lock_guard<std::mutex> lock(mu_);
  attachment->generation = generation_.load(std::memory_order_relaxed) + 1;
  current_ = attachment;
  writer_.attachment = reader_.attachment = attachment;
  writer_.generation = reader_.generation = attachment->generation;
  writer_generation_.store(attachment->generation, std::memory_order_relaxed);  // no monitor yet
  // Release: a side that sees the new generation sees the attachment it belongs to.
  generation_.store(attachment->generation, std::memory_order_release);
  return absl::OkStatus();
}

Channel::~Channel() { Close(); }

void Channel::Shutdown() {
  // Release: a waiter that sees a bumped word (WakeLocalWaiters, peer_event_) sees the flag.
  stop_.store(true, std::memory_order_release);
  std::lock_guard<std::mutex> lock(mu_);
  WakeLocalWaiters(current_.get());
  // A write side still in a segment it left sleeps there. (A read side that has not followed a move yet
  // sleeps on the old segment's word: it notices at its next wait slice, kWaitCheckIntervalNs.)
  for (const std::shared_ptr<Attachment>& left : left_) WakeLocalWaiters(left.get());
  peer_event_.fetch_add(1, std::memory_order_release);
  FutexWakeAll(&peer_event_);
}

void Channel::Close() {
  if (closed_) return;
  closed_ = true;
  WaitSet::ChannelClosing(this);  // the sets we are in never touch us again
  stop_.store(true, std::memory_order_release);
  if (monitored_) internal::Monitor::Process().Remove(this);  // no tick runs after this

  std::lock_guard<std::mutex> lock(mu_);
  // No call runs any more: the write side cannot publish into the segments we left.
  ReleaseLeftSegments(MonotonicNowNs(), /*force=*/true);
  WakeLocalWaiters(current_.get());
  if (writer_.attachment != nullptr) writer_.attachment->producer.Flush();
  if (current_ != nullptr) {
    Segment& segment = current_->segment;
    RoleControl& me = segment.header()->roles[static_cast<int>(role_)];
    me.state.store(0, std::memory_order_release);
    me.pid.store(0, std::memory_order_release);
    me.represented_state.store(0, std::memory_order_relaxed);  // relaxed: see PublishRepresentedState
    me.kernel_watch.store(0, std::memory_order_relaxed);       // relaxed: the state store tells the rest
    me.monitor_tid.store(0, std::memory_order_relaxed);
    AnnounceToMonitors(segment, name_);  // the peer's monitor looks now
    // Remove the name while still holding the master lock, so we never remove a successor's segment.
    if (options_.auto_cleanup && role_ == Role::kMaster) segment.UnlinkNameIfThis();
  }
  writer_.attachment.reset();
  reader_.attachment.reset();
  current_.reset();  // closes the descriptor, which releases the role lock
}

// ---------------------------------------------------------------------------------------------------------
// Heartbeat, liveness and reconnection.

std::int64_t Channel::OnTick(std::int64_t now, unsigned events, internal::TickHints& hints) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::int64_t next = Tick(now, events);
  // The two heartbeat lines: ours (stored every tick, read by the peer in between) and the peer's.
  if (current_ != nullptr) {
    const SegmentHeader* h = current_->segment.header();
    hints.write_line = &h->roles[static_cast<int>(role_)];
    hints.read_line = &h->roles[static_cast<int>(Other(role_))];
  } else {
    hints = {};
  }
  return next;
}

void Channel::InlineTick() {
  // use_threads == false: the heartbeat advances on every call, the liveness check when it is due.
  if (!mu_.try_lock()) return;  // the other side's thread is ticking right now
  const std::int64_t now = MonotonicNowNs();
  if (current_ != nullptr) {
    current_->segment.header()->roles[static_cast<int>(role_)].heartbeat.store(++heartbeat_,
                                                                               std::memory_order_relaxed);
    if (now >= next_tick_ns_) next_tick_ns_ = Tick(now, 0);
  }
  mu_.unlock();
}

std::int64_t Channel::BeatIntervalNs() const {
  // Often enough for the stricter of the two stale thresholds, with room for a late tick or two.
  std::int64_t stale_ms = options_.stale_threshold_ms;
  const std::uint32_t peer_stale_ms =
      current_->segment.header()->roles[static_cast<int>(Other(role_))].stale_threshold_ms.load(
          std::memory_order_relaxed);
  if (peer_stale_ms != 0) stale_ms = std::min<std::int64_t>(stale_ms, peer_stale_ms);
  std::int64_t interval = stale_ms * kNsPerMs / 4;
  if (options_.heartbeat_interval_ms > 0) {
    interval = std::min(interval, std::int64_t{options_.heartbeat_interval_ms} * kNsPerMs);
  }
  return std::max(interval, kNsPerMs);
}

bool Channel::ShouldCheckLock(std::int64_t now, unsigned events, std::uint64_t epoch,
                              std::uint32_t peer_role_state) const {
  if (!monitored_) return true;  // driven by calls: no hints, as cheap as the caller makes it
  if (now - last_lock_check_ns_ >= kLockBackstopNs) return true;
  // A holder announces itself by bumping attach_epoch after it takes the lock: a new peer, or a restarted
  // one, always shows here first.
  if (epoch != lock_checked_epoch_) return true;
  const PeerState state = evidence_state_;  // the lock is evidence about the process, not what it represents
  if (state == PeerState::kAbsent || state == PeerState::kDead) return false;
  // A peer that leaves cleanly (Close, or a move to a new segment) marks its role vacant; one that dies is
  // reported by its pidfd, and by the close of its descriptor when the file still has its name; without a
  // pidfd, poll.
  return peer_role_state == 0 ||
         (events & (internal::kWatchedPidExited | internal::kFileClosed | internal::kFileTouched)) != 0 ||
         !pid_watched_;
}

void Channel::UpdatePidWatch(PeerState state, std::uint64_t epoch, bool exited_but_held) {
  if (!monitored_) return;
  internal::Monitor& monitor = internal::Monitor::Process();
  // The process we watched exited yet the role is still held by the same attachment: its published pid
  // does not name the holder (a child that inherited the descriptor, or a peer that lies). Poll it.
  if (exited_but_held) pid_untrusted_epoch_ = epoch;
  const RoleControl& them = current_->segment.header()->roles[static_cast<int>(Other(role_))];
  const auto pid = static_cast<pid_t>(them.pid.load(std::memory_order_acquire));
  const bool trusted = (state == PeerState::kAlive || state == PeerState::kUnresponsive) && pid > 1 &&
                       pid != own_pid_ && pid_untrusted_epoch_ != epoch && OwnPidNamespace() != 0 &&
                       them.pid_namespace.load(std::memory_order_relaxed) == OwnPidNamespace();
  if (!trusted) {
    if (pid_watched_) monitor.UnwatchPid(this);
    pid_watched_ = false;
    watched_pid_ = 0;
    return;
  }
  if (pid_watched_ && watched_pid_ == pid) return;
  pid_watched_ = monitor.WatchPid(this, pid);
  watched_pid_ = pid_watched_ ? pid : 0;
}

void Channel::UpdateKernelBeat(PeerState evidence, std::uint64_t epoch, std::int64_t now) {
  if (!monitored_) return;
  internal::Monitor& monitor = internal::Monitor::Process();
  RoleControl& me = current_->segment.header()->roles[static_cast<int>(role_)];
  const RoleControl& them = current_->segment.header()->roles[static_cast<int>(Other(role_))];
  // Our monitor thread, for a peer that can watch it (Tick runs on it). Relaxed, like the other words a
  // holder publishes about itself: each is read on its own.
  const pid_t tid = internal::CurrentThreadId();
  if (tid != monitor_tid_published_) {
    me.monitor_tid.store(static_cast<std::uint32_t>(tid), std::memory_order_relaxed);
    monitor_tid_published_ = tid;
  }
  // The peer's monitor thread: watchable when its pid names it here (pid_watched_: the same pid namespace,
  // a trusted pid, a pidfd) and it published one. A thread of another process is never under
  // /proc/PID/task/, so a wrong tid can only fail the watch.
  const auto peer_tid = static_cast<pid_t>(them.monitor_tid.load(std::memory_order_relaxed));
  const bool watchable = pid_watched_ && peer_tid > 0 &&
                         (evidence == PeerState::kAlive || evidence == PeerState::kUnresponsive);
  if (!watchable) {
    StopKernelWatch();
  } else if (thread_watch_epoch_ != epoch || thread_watch_tid_ != peer_tid) {
    // Tried once per peer attachment and thread: one that cannot be watched (a thread that is not the
    // peer's, no descriptor left) is not tried again on every tick; the peer's beats serve instead.
    thread_watched_ = monitor.WatchThread(this, watched_pid_, peer_tid,
                                          std::int64_t{options_.stale_threshold_ms} * kNsPerMs);
    thread_watch_epoch_ = epoch;
    thread_watch_tid_ = peer_tid;
  } else if (thread_watched_ && !monitor.ThreadProgressOf(this).readable) {
    StopKernelWatch();
  }
  const std::uint64_t word = thread_watched_ ? EncodeKernelWatch(own_attach_epoch_, epoch) : 0;
  if (word != kernel_watch_published_) {
    me.kernel_watch.store(word, std::memory_order_relaxed);  // relaxed: a word that checks itself (layout.h)
    kernel_watch_published_ = word;
    if (word == 0) {
      // The peer may be beating once a second: give it a whole threshold from now, and make its monitor
      // look at once, so that it beats at its full pace again long before that.
      peer_heartbeat_change_ns_ = now;
      AnnounceToMonitors(current_->segment, name_);
    }
  }
  // Whether the peer watches ours; if so our monitor thread must keep moving at our beat pace. Without
  // inotify we would not learn at once that the peer stopped watching, so we keep beating in full then.
  // (A killed peer leaves its word behind: only a peer that holds its role watches anything.)
  watched_by_peer_ = monitor.names_watched() &&
                     (evidence == PeerState::kAlive || evidence == PeerState::kUnresponsive) &&
                     them.kernel_watch.load(std::memory_order_relaxed) == EncodeKernelWatch(epoch, own_attach_epoch_);
  monitor.KeepMoving(this, watched_by_peer_ ? BeatIntervalNs() : 0);
}

void Channel::StopKernelWatch() {
  if (!thread_watched_) return;
  internal::Monitor::Process().UnwatchThread(this);
  thread_watched_ = false;  // (the attachment and thread stay remembered: not tried again, see above)
}

std::int64_t Channel::Tick(std::int64_t now, unsigned events) {
  if (current_ == nullptr) return now + kLockBackstopNs;
  ReleaseLeftSegments(now, /*force=*/false);
  Segment& segment = current_->segment;
  SegmentHeader* h = segment.header();
  const Role peer = Other(role_);
  const RoleControl& them = h->roles[static_cast<int>(peer)];
  // Relaxed: the peer only needs to see the counter move, not order it against anything.
  h->roles[static_cast<int>(role_)].heartbeat.store(++heartbeat_, std::memory_order_relaxed);
  const std::uint64_t hb = them.heartbeat.load(std::memory_order_relaxed);
  const std::uint64_t epoch = them.attach_epoch.load(std::memory_order_acquire);
  const std::uint32_t peer_role_state = them.state.load(std::memory_order_acquire);
  const PeerState old_state = peer_state();
  const PeerState old_evidence = evidence_state_;
  if ((events & internal::kWatchedPidExited) != 0) pid_watched_ = false;  // the monitor dropped the watch

  const bool check_lock = ShouldCheckLock(now, events, epoch, peer_role_state);
  // A truncation of the file that no access has run into yet. Blocked sides look at the trailer at every
  // wait slice themselves (WaitOnRing, AwaitPeer); this catches it for the next call within a backstop
  // interval, and wakes our blocked sides. (Our wake may land on the guard's private zero pages, not on the
  // word a side sleeps on; the side then wakes at its next slice, kWaitCheckIntervalNs.)
  if (check_lock && !segment.truncated() && segment.CheckTruncation()) {
    WakeLocalWaiters(current_.get());
    peer_event_.fetch_add(1, std::memory_order_release);  // ends an AwaitPeer wait too
    FutexWakeAll(&peer_event_);
  }
  bool exited_but_held = false;
  if (check_lock) {
    const bool locked = IsRoleLockedByOther(segment.fd(), peer);
    exited_but_held = locked && peer_locked_ && epoch == lock_checked_epoch_ &&
                      (events & internal::kWatchedPidExited) != 0;
    peer_locked_ = locked;
    last_lock_check_ns_ = now;
    lock_checked_epoch_ = epoch;
  }
  const bool locked = peer_locked_;
  // A holder announces itself by bumping attach_epoch right after it takes the lock (TakeRoleControl), so
  // every attached holder's epoch is at least 1. A lock held with epoch 0, or with the epoch of the holder
  // we saw die, belongs to a process still attaching, or to one that only decides about the segment
  // (Segment::Acquire holds a dead master's lock while it replaces the segment): not a peer yet. Waiting for
  // the epoch also makes an arrival count once, not once for the lock and again for the epoch.
  const bool announced = epoch != 0 && !(old_evidence == PeerState::kDead && epoch == peer_attach_epoch_seen_);
  PeerState evidence;
  bool restarted = false;
  if (!locked || !announced) {
    evidence = peer_ever_seen_ ? PeerState::kDead : PeerState::kAbsent;
  } else {
    // With the peer's monitor thread watched, its moves are its beats: it beats here once a second, and we
    // look here about as rarely, so seeing a beat says little about when it was made.
    const bool by_thread = thread_watched_ && thread_watch_epoch_ == epoch && epoch == peer_attach_epoch_seen_;
    if (!peer_ever_seen_ || hb != peer_heartbeat_seen_ || epoch != peer_attach_epoch_seen_) {
      restarted = peer_ever_seen_ && epoch != peer_attach_epoch_seen_;
      peer_heartbeat_seen_ = hb;
      peer_attach_epoch_seen_ = epoch;
      if (!by_thread) peer_heartbeat_change_ns_ = now;
    }
    peer_ever_seen_ = true;
    if (by_thread) {
      const internal::ThreadProgress progress = internal::Monitor::Process().ThreadProgressOf(this);
      if (progress.readable && progress.last_move_ns > peer_heartbeat_change_ns_) {
        peer_heartbeat_change_ns_ = progress.last_move_ns;
      }
    }
    const bool stale = now - peer_heartbeat_change_ns_ > std::int64_t{options_.stale_threshold_ms} * kNsPerMs;
    evidence = stale ? PeerState::kUnresponsive : PeerState::kAlive;
  }
  evidence_state_ = evidence;
  // What we report: our evidence, or worse if the peer stands for someone (a bridge) who is worse off.
  const PeerState state = CombineRepresented(evidence, them, epoch);
  if (state == PeerState::kDead || restarted) gone_since_alive_ = true;
  if (state != old_state || restarted) {
    // A return counts once, however it came back (a represented far application may pass through kAbsent
    // or kUnresponsive on its way from kDead to kAlive, while its bridge restarts or relinks).
    if (state == PeerState::kAlive && gone_since_alive_) {
      gone_since_alive_ = false;
      reconnect_count_.fetch_add(1, std::memory_order_relaxed);
    }
    if (state != PeerState::kAlive && old_state == PeerState::kAlive) {
      peer_gone_since_ns_.store(now, std::memory_order_relaxed);
    }
    peer_state_.store(static_cast<int>(state), std::memory_order_release);
    peer_event_.fetch_add(1, std::memory_order_release);
    FutexWakeAll(&peer_event_);
    WakeLocalWaiters(current_.get());
  }
  // From here on, the mechanics follow our own evidence about the peer process.
  UpdatePidWatch(evidence, epoch, exited_but_held);
  UpdateKernelBeat(evidence, epoch, now);

  // The name: a master re-creates it if it was removed; a slave without a master follows a new one. With
  // inotify the monitor says when the name changed; without, look every reconnect_retry_interval_ms.
  const std::int64_t retry_ns = std::int64_t{options_.reconnect_retry_interval_ms} * kNsPerMs;
  const bool names_watched = monitored_ && internal::Monitor::Process().names_watched();
  const bool name_event = (events & internal::kNameChanged) != 0;
  const bool retry_due = now - last_reattach_try_ns_ >= retry_ns;
  bool name_polled = false;
  if (role_ == Role::kSlave && (evidence == PeerState::kDead || evidence == PeerState::kAbsent)) {
    // (Not only on events: a new master's segment may be there before it can be adopted.)
    if (name_event || retry_due) {
      last_reattach_try_ns_ = now;
      TryReattach();
    }
    name_polled = true;
  } else if (role_ == Role::kMaster) {
    if (name_event) name_retry_pending_ = true;
    if (name_retry_pending_ && (name_event || retry_due)) {
      last_reattach_try_ns_ = now;
      name_retry_pending_ = RecreateIfUnlinked();  // true: still without its name, try again later
    }
    if (!names_watched) name_retry_pending_ = true;
    name_polled = name_retry_pending_;
  }

  if ((events & (internal::kFileOpened | internal::kFileTouched)) != 0 && evidence != PeerState::kAlive) {
    arrival_window_end_ns_ = now + kArrivalWindowNs;
  }
  std::int64_t next = now + BeatIntervalNs();
  // Both sides watch each other's monitor thread: nobody needs our beats here, and the monitor ticks us
  // when the peer's thread goes still or moves again, or its process exits (pidfd). Look once a second,
  // and when the thread has gone still, when our own stale threshold will have passed. (A side given a
  // heartbeat_interval_ms keeps beating at that pace: someone asked for the counter to move so.)
  if (thread_watched_ && watched_by_peer_ && evidence == PeerState::kAlive && options_.heartbeat_interval_ms == 0) {
    next = now + kLockBackstopNs;
    if (internal::Monitor::Process().ThreadProgressOf(this).still) {
      next = std::min(next, peer_heartbeat_change_ns_ + std::int64_t{options_.stale_threshold_ms} * kNsPerMs + kNsPerMs);
    }
  }
  // No peer: nobody needs our beats until one arrives, and an arrival announces itself (TouchForMonitors,
  // an inotify event that ticks us at once). Without inotify, keep looking at the beat interval.
  if ((evidence == PeerState::kAbsent || evidence == PeerState::kDead) && names_watched) {
    next = now + kLockBackstopNs;
  }
  // Every millisecond while it matters: a frozen peer may resume, a peer may be arriving, a left segment
  // waits for our write side to leave it.
  // (A represented change needs no polling: its writer touches the file, SetRepresentedPeerState.)
  if (evidence == PeerState::kUnresponsive || now < arrival_window_end_ns_ || !left_.empty()) {
    next = std::min(next, now + kNsPerMs);
  }
  // A peer that marked its role vacant (Close) holds the lock until it closes its descriptor, and nothing
  // may announce that moment (its name is already gone, or it is in this process, which has no pidfd to
  // watch): look every millisecond for a while.
  if (locked && peer_role_state == 0 && evidence == PeerState::kAlive) {
    if (leaving_seen_ns_ == 0) leaving_seen_ns_ = now;
    if (now - leaving_seen_ns_ < kArrivalWindowNs) next = std::min(next, now + kNsPerMs);
  } else {
    leaving_seen_ns_ = 0;
  }
  if (name_polled) next = std::min(next, last_reattach_try_ns_ + retry_ns);
  // Driven by calls (no monitor): the calls pay for the checks, and nothing else would notice a change
  // sooner, so by default look every millisecond, as the callers' pace allows.
  if (!monitored_ && options_.heartbeat_interval_ms == 0) next = std::min(next, now + kNsPerMs);
  return std::max(next, now + kNsPerMs / 4);
}

bool Channel::TryReattach() {
  // The master may have been replaced by a new segment under the same name (a clean exit with
  // auto_cleanup, a takeover that changed the ring shape, or a master re-creating a removed name). Same
  // segment, or none: keep waiting for a master here.
  if (current_->segment.name_state() != Segment::NameState::kOther) return false;
  if (options_.max_reconnect_attempts != 0 && reattach_attempts_ >= options_.max_reconnect_attempts) return false;
  ++reattach_attempts_;
  AcquireOptions request;
  request.role = AcquireRole::kSlave;
  request.allow_other_owner = options_.allow_other_owner;
  request.deadline = Deadline::Past();  // the next tick looks again
  absl::StatusOr<AcquiredSegment> acquired = Segment::Acquire(name_, request);
  if (!acquired.ok()) return false;
  Adopt(std::move(acquired->segment));
  return true;
}

bool Channel::RecreateIfUnlinked() {
  // Someone removed our name (`rm /dev/shm/eshm_<name>`, a cleanup script): no new slave could find us.
  // Create a fresh segment of the same shape under the name and move there; the slave sees this master's
  // lock go on the old segment and follows by inode.
  if (current_->segment.name_state() != Segment::NameState::kAbsent) return false;  // nothing to do
  const Segment& old = current_->segment;
  AcquireOptions request;
  request.role = AcquireRole::kMaster;
  request.create_only = true;  // if another process created the name first, it is that name's master
  request.shape.m2s_capacity = old.ring_capacity(Direction::kMasterToSlave);
  request.shape.s2m_capacity = old.ring_capacity(Direction::kSlaveToMaster);
  request.shape.max_message_bytes = old.max_message_bytes();
  request.shape.mode = options_.mode;
  absl::StatusOr<AcquiredSegment> acquired = Segment::Acquire(name_, request);
  // create_only: a name another process created meanwhile is its own; nothing more to do then either.
  if (!acquired.ok()) return !absl::IsAlreadyExists(acquired.status());
  Adopt(std::move(acquired->segment));
  return false;
}

void Channel::Adopt(Segment segment) {
  // Leave the old segment visibly (ReleaseLeftSegments: the role vacant there, its lock released) as soon as
  // our write side cannot publish there any more, so the peer learns that we are gone from it; not before,
  // or a write in progress could land after the peer has drained the old segment and left it.
  left_.push_back(current_);
  WakeLocalWaiters(current_.get());  // sides blocked on the old rings move over

  auto attachment = std::make_shared<Attachment>(std::move(segment));
  TakeRoleControl(attachment->segment);
  Segment& s = attachment->segment;
  attachment->producer = s.MakeProducer(out_);
  attachment->consumer = s.MakeConsumer(in_);
  attachment->generation = generation_.load(std::memory_order_relaxed) + 1;
  max_message_bytes_.store(s.max_message_bytes(), std::memory_order_relaxed);
  // A new segment: no peer seen on it yet. (Counting the reconnect here, not again when the peer shows.)
  peer_ever_seen_ = false;
  evidence_state_ = PeerState::kAbsent;
  gone_since_alive_ = false;
  peer_state_represented_.store(false, std::memory_order_relaxed);
  peer_state_.store(static_cast<int>(PeerState::kAbsent), std::memory_order_release);
  peer_heartbeat_change_ns_ = MonotonicNowNs();
  peer_locked_ = false;
  lock_checked_epoch_ = ~std::uint64_t{0};  // look at the new segment's lock at the next tick
  arrival_window_end_ns_ = MonotonicNowNs() + kArrivalWindowNs;
  reattach_attempts_ = 0;
  current_ = std::move(attachment);
  // Release: pairs with the acquire in SyncSide.
  generation_.store(current_->generation, std::memory_order_release);
  // The monitor's half of the writer_busy_ handshake: after this, a write-side call the barrier did not
  // catch in progress reads the new generation.
  left_ordered_ = internal::LightSideReady() && internal::HeavyFence();
  left_since_ns_ = MonotonicNowNs();
  ReleaseLeftSegments(left_since_ns_, /*force=*/false);
  reconnect_count_.fetch_add(1, std::memory_order_relaxed);
  peer_event_.fetch_add(1, std::memory_order_release);
  FutexWakeAll(&peer_event_);
}

void Channel::ReleaseLeftSegments(std::int64_t now, bool force) {
  if (left_.empty()) return;
  // Acquire (both): pair with the write side's releases in SwitchSide and ~WriterCall, so everything it
  // published in the old segments happens-before the peer can see our role there released.
  const bool moved = current_ != nullptr && writer_generation_.load(std::memory_order_acquire) == current_->generation;
  const bool idle = !writer_busy_.load(std::memory_order_acquire) &&
                    (left_ordered_ || now - left_since_ns_ >= kUnorderedMoveGraceNs);
  if (!force && !moved && !idle) return;
  for (const std::shared_ptr<Attachment>& left : left_) {
    RoleControl& me = left->segment.header()->roles[static_cast<int>(role_)];
    me.state.store(0, std::memory_order_release);
    me.pid.store(0, std::memory_order_release);
    me.represented_state.store(0, std::memory_order_relaxed);  // relaxed: see PublishRepresentedState
    UnlockRole(left->segment.fd(), role_);
    internal::TouchForMonitors(left->segment.fd());
  }
  left_.clear();
}

void Channel::TakeRoleControl(Segment& segment) {
  RoleControl& me = segment.header()->roles[static_cast<int>(role_)];
  heartbeat_ = me.heartbeat.load(std::memory_order_relaxed);
  own_pid_ = getpid();
  // Relaxed/release: observers read these with acquire; nothing else depends on their order. What we tell
  // the peer (our threshold, our pid namespace) comes before the epoch that announces us.
  me.stale_threshold_ms.store(static_cast<std::uint32_t>(options_.stale_threshold_ms), std::memory_order_relaxed);
  me.pid_namespace.store(OwnPidNamespace(), std::memory_order_relaxed);
  me.pid.store(static_cast<std::uint32_t>(own_pid_), std::memory_order_relaxed);
  // A killed predecessor may have left what it represented: cleared before the epoch announces us (its tag
  // would not match our epoch anyway; see layout.h).
  me.represented_state.store(0, std::memory_order_relaxed);
  represented_published_ = 0;
  // Likewise what it said about its monitor thread and ours (a peer also checks the epochs in the latter).
  me.monitor_tid.store(0, std::memory_order_relaxed);
  me.kernel_watch.store(0, std::memory_order_relaxed);
  monitor_tid_published_ = 0;
  kernel_watch_published_ = 0;
  watched_by_peer_ = false;
  me.heartbeat.store(++heartbeat_, std::memory_order_relaxed);
  own_attach_epoch_ = me.attach_epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
  me.state.store(1, std::memory_order_release);
  PublishRepresentedState(segment);  // what we stand for (if anything) comes along to a new segment
  // The peer's monitor may be sleeping long (no peer to watch): tell it we are here.
  AnnounceToMonitors(segment, name_);
}

bool Channel::PublishRepresentedState(Segment& segment) {
  const std::uint32_t word = represented_ == 0 ? 0 : EncodeRepresentedState(represented_ - 1, own_attach_epoch_);
  if (word == represented_published_) return false;
  // Relaxed, here and at every store of the word: it is self-describing (its tag names the attachment that
  // wrote it, which the reader checks against the attach_epoch it loaded with acquire in Tick), and nothing
  // else is read on its strength, so it needs no order against our other stores. Its partner is the
  // relaxed load in CombineRepresented; what makes the peer look promptly is the touch that follows.
  segment.header()->roles[static_cast<int>(role_)].represented_state.store(word, std::memory_order_relaxed);
  represented_published_ = word;
  return true;
}

void Channel::SetRepresentedPeerState(std::optional<PeerState> state) {
  const int value = state.has_value() ? static_cast<int>(*state) : -1;
  std::lock_guard<std::mutex> lock(mu_);
  represented_ = value >= 0 && value <= 3 ? static_cast<std::uint32_t>(value) + 1 : 0;
  if (current_ == nullptr) return;  // closed
  // The peer's monitor may sleep up to a beat interval (or a second, with no peer to watch): wake it.
  if (PublishRepresentedState(current_->segment)) AnnounceToMonitors(current_->segment, name_);
}

namespace {
// How bad a state is for the one who waits on the peer.
int Severity(PeerState state) {
  switch (state) {
    case PeerState::kAlive:
      return 0;
    case PeerState::kUnresponsive:
      return 1;
    case PeerState::kAbsent:
      return 2;
    case PeerState::kDead:
      return 3;
  }
  return 3;
}
}  // namespace

PeerState Channel::CombineRepresented(PeerState evidence, const RoleControl& them, std::uint64_t epoch) {
  PeerState state = evidence;
  // Only an attached holder speaks for anyone: a dead or absent one is worse than anything it could say.
  if (evidence == PeerState::kAlive || evidence == PeerState::kUnresponsive) {
    // Relaxed: pairs with the relaxed stores in PublishRepresentedState (the tag, checked against `epoch`,
    // says whose word it is; see there).
    const int said = DecodeRepresentedState(them.represented_state.load(std::memory_order_relaxed), epoch);
    if (said >= 0 && Severity(static_cast<PeerState>(said)) > Severity(evidence)) state = static_cast<PeerState>(said);
  }
  // Relaxed: only PeerGoneError's wording reads it.
  peer_state_represented_.store(state != evidence, std::memory_order_relaxed);
  return state;
}

void Channel::WakeLocalWaiters(const Attachment* attachment) {
  // Wake our own sleepers (the reader on the incoming ring's data word, the writer on the outgoing ring's
  // space word) so they re-examine the peer state. FUTEX_WAKE needs no change of value.
  // Bump each word first: a side between reading the word and entering FUTEX_WAIT then returns at once
  // instead of sleeping through a wake that came too early. Release pairs with the waiter's acquire.
  if (attachment == nullptr) return;
  for (std::atomic<std::uint32_t>* word : {&attachment->segment.ring_control(in_)->wait.data_futex,
                                           &attachment->segment.ring_control(out_)->wait.space_futex}) {
    word->fetch_add(1, std::memory_order_release);
    FutexWakeAll(word);
  }
}

void Channel::SwitchSide(Side& side) {
  std::shared_ptr<Attachment> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_ == nullptr) return;
    left = std::move(side.attachment);
    side.attachment = current_;
    side.generation = current_->generation;
    // Release: pairs with the acquire in ReleaseLeftSegments; whatever the write side published in the
    // segment it leaves comes first.
    if (&side == &writer_) writer_generation_.store(side.generation, std::memory_order_release);
  }
  if (&side != &writer_ || left == nullptr || left == side.attachment) return;
  // An open claim stays where it was made, mapped, until Commit or Abort; the staged messages come along.
  if (claim_.data != nullptr && claim_.attachment == left.get()) claim_.left_behind = left;
  CarryStaged(*left);
}

void Channel::CarryStaged(Attachment& left) {
  RingProducer& from = left.producer;
  // Nothing of a claim is staged: it ends from its own memory (Commit). Giving its room back leaves exactly
  // the staged batch at the producer's tail.
  if (from.has_claim()) from.Abort();
  const std::uint64_t staged = from.staged_bytes();
  if (staged == 0) return;
  std::vector<std::vector<std::byte>> messages;
  const bool whole = internal::CopyStagedMessages(*left.segment.ring_control(out_), left.segment.ring_data(out_),
                                                  left.segment.ring_capacity(out_), staged, from.max_message_bytes(),
                                                  &messages);
  // Still staged, in order, ahead of anything newer: the write side's next kNow write or Flush publishes
  // them, as it would have in the old segment. The old producer is never used again, so they are not sent
  // twice.
  RingProducer& to = writer_.attachment->producer;
  std::size_t carried = 0;
  while (carried < messages.size() && messages[carried].size() <= to.max_message_bytes() &&
         to.TryWrite(messages[carried], Publish::kDeferred)) {
    ++carried;
  }
  lost_ += messages.size() - carried + (whole ? 0 : 1);
}

IoResult Channel::ReportLost() {
  lost_reported_.store(lost_, std::memory_order_relaxed);
  lost_ = 0;
  return IoResult::kLost;
}

absl::Status Channel::PeerGoneError() const {
  const PeerState state = peer_state();
  const char* peer = RoleName(Other(role_));
  if (state != PeerState::kAlive && peer_state_represented_.load(std::memory_order_relaxed)) {
    // The process in the peer role is fine; the endpoint it stands for (across an eshm-bridge) is not.
    return absl::UnavailableError(absl::StrFormat(
        "channel '%s': the %s relays another endpoint (eshm-bridge) and reports it %s%s", name(), peer,
        PeerStateName(state),
        state == PeerState::kUnresponsive ? " (the far application is stopped, or the bridges' link is down)" : ""));
  }
  switch (state) {
    case PeerState::kAbsent:
      return absl::UnavailableError(
          absl::StrFormat("channel '%s': no %s has attached yet", name(), peer));
    case PeerState::kUnresponsive:
      return absl::UnavailableError(absl::StrFormat(
          "channel '%s': the %s is unresponsive (no heartbeat for over %d ms)", name(), peer,
          options_.stale_threshold_ms));
    case PeerState::kDead:
      return absl::UnavailableError(absl::StrFormat("channel '%s': the %s has exited", name(), peer));
    case PeerState::kAlive:
      break;
  }
  return absl::OkStatus();
}

absl::Status Channel::AwaitPeer(const Side& side, Deadline deadline, absl::FunctionRef<bool()> ready) {
  if (options_.disconnect_behavior == DisconnectBehavior::kImmediately) return PeerGoneError();
  // kOnTimeout gives a peer that went away (exited or unresponsive) reconnect_wait_ms to come back, counted
  // from when this call first sees it gone. A peer that has not attached yet has not gone away: it is
  // waited for as long as the call's own deadline allows, as kNever does.
  std::optional<Deadline> reconnect;
  const std::uint64_t generation = generation_.load(std::memory_order_acquire);
  for (;;) {
    if (closed_ || stop_.load(std::memory_order_acquire)) return StoppedError();
    if (options_.wait_check) ESHM_RETURN_IF_ERROR(options_.wait_check());
    if (!options_.use_threads) InlineTick();
    const std::uint32_t event = peer_event_.load(std::memory_order_acquire);
    if (!PeerGone() || generation_.load(std::memory_order_acquire) != generation) return absl::OkStatus();
    const Segment& segment = side.attachment->segment;
    if (segment.truncated() || !segment.TrailerIntact()) return absl::OkStatus();  // the next try reports it
    // A peer can attach, write (or read) and leave between two ticks, never seen alive: what it left in
    // the ring still counts.
    if (ready()) return absl::OkStatus();
    if (options_.disconnect_behavior == DisconnectBehavior::kOnTimeout && !reconnect.has_value() &&
        peer_state() != PeerState::kAbsent) {
      reconnect = Deadline::AfterMs(options_.reconnect_wait_ms);
    }
    const bool reconnect_limited = reconnect.has_value() && reconnect->monotonic_ns() < deadline.monotonic_ns();
    const Deadline limit = reconnect_limited ? *reconnect : deadline;
    if (limit.Expired()) {
      if (!reconnect_limited) {
        return absl::DeadlineExceededError(
            absl::StrFormat("channel '%s': the deadline passed while waiting for a %s to attach", name(),
                            RoleName(Other(role_))));
      }
      absl::Status gone = PeerGoneError();
      return absl::UnavailableError(absl::StrFormat("%s; it did not come back within reconnect_wait_ms (%d ms)",
                                                    gone.message(), options_.reconnect_wait_ms));
    }
    // Without the monitor nobody else ticks: wake up every millisecond to do it.
    const std::int64_t slice_ns = options_.use_threads ? kWaitCheckIntervalNs : kNsPerMs;
    FutexWait(&peer_event_, event, limit.CappedAfterNs(slice_ns));
  }
}

bool Channel::ReadReady() {
  if (generation_.load(std::memory_order_acquire) != reader_.generation) return true;
  Attachment& a = *reader_.attachment;
  return a.consumer.HasData() || a.segment.truncated();
}

bool Channel::WriteReady(std::size_t size) {
  if (generation_.load(std::memory_order_acquire) != writer_.generation) return true;
  Attachment& a = *writer_.attachment;
  return a.producer.Fits(size) || a.segment.truncated();
}

absl::Status Channel::StoppedError() const {
  return absl::CancelledError(absl::StrFormat("channel '%s' is shutting down (Shutdown or Close was called)", name()));
}

absl::Status Channel::WaitOnRing(const Side& side, absl::FunctionRef<absl::Status(WaitCheck)> wait) {
  bool look_again = false;
  // The caller's check is for slow things (a binding takes its interpreter's lock in it): at most every
  // kWaitCheckIntervalNs, although the ring asks every few microseconds while it polls.
  std::int64_t next_user_check = options_.wait_check ? MonotonicNowNs() + kWaitCheckIntervalNs : 0;
  // A Shutdown before the wait began: its wake is already spent.
  if (stop_.load(std::memory_order_acquire)) return StoppedError();
  const absl::Status status = wait([&]() -> absl::Status {
    if (!options_.use_threads) InlineTick();
    // Acquire: pairs with the release of the word bump in Shutdown's wake.
    if (stop_.load(std::memory_order_acquire)) return StoppedError();
    if (next_user_check != 0 && MonotonicNowNs() >= next_user_check) {
      ESHM_RETURN_IF_ERROR(options_.wait_check());
      next_user_check = MonotonicNowNs() + kWaitCheckIntervalNs;
    }
    // Only this side's own attachment: the other side's thread may be replacing its own right now. The
    // trailer too (one load): a waiting side notices a truncation by itself, not only through the tick.
    const Segment& segment = side.attachment->segment;
    look_again = generation_.load(std::memory_order_acquire) != side.generation || PeerGone() ||
                 segment.truncated() || !segment.TrailerIntact();
    // Any error ends the ring's wait; look_again says this one is not a failure.
    return look_again ? absl::AbortedError("look again") : absl::OkStatus();
  });
  return look_again ? absl::OkStatus() : status;
}

// ---------------------------------------------------------------------------------------------------------
// Write side.

absl::Status Channel::Write(std::span<const std::byte> message, Deadline deadline, Publish publish) {
  if (closed_) return StatusOf(IoResult::kClosed);
  WriterCall call(*this);
  for (;;) {
    const IoResult result = TryWrite(message, publish);
    switch (result) {
      case IoResult::kOk:
        return absl::OkStatus();
      case IoResult::kWouldBlock:
        break;
      case IoResult::kTooLarge:
        return StatusOf(IoResult::kTooLarge);
      case IoResult::kClosed:
      case IoResult::kCorrupt:
      case IoResult::kPeerGone:
      case IoResult::kBufferTooSmall:
      case IoResult::kLost:
        return StatusOf(result, writer_);
    }
    deadline = deadline.Started();  // once, at the first wait
    if (PeerGone()) {
      // The ring is full and nobody is reading it: whether to wait is the disconnect behaviour's call.
      ESHM_RETURN_IF_ERROR(
          AwaitPeer(writer_, deadline, [&] { return writer_.attachment->producer.Fits(message.size()); }));
      continue;
    }
    ESHM_RETURN_IF_ERROR(WaitOnRing(writer_, [&](WaitCheck check) {
      return writer_.attachment->producer.WaitForSpace(message.size(), options_.wait, deadline, check);
    }));
  }
}

absl::StatusOr<std::size_t> Channel::WriteBatch(std::span<const std::span<const std::byte>> messages,
                                                Deadline deadline) {
  WriterCall call(*this);
  deadline = deadline.Started();  // one deadline for the whole batch
  std::size_t written = 0;
  absl::Status status;
  for (const std::span<const std::byte>& message : messages) {
    status = Write(message, deadline, Publish::kDeferred);
    if (!status.ok()) break;
    ++written;
  }
  const IoResult flushed = Flush();
  if (status.ok() && flushed == IoResult::kLost) status = StatusOf(IoResult::kLost, writer_);
  if (status.code() == absl::StatusCode::kDataLoss) {
    // Whatever was written: the dropped messages may be among this batch's.
    return absl::DataLossError(absl::StrFormat("WriteBatch stopped after %d of %d messages: %s", written,
                                               messages.size(), status.message()));
  }
  if (!status.ok() && written == 0) return status;
  return written;
}

std::byte* Channel::TryClaim(std::size_t size) {
  if (closed_ || claim_.data != nullptr) return nullptr;
  WriterCall call(*this);
  if (!options_.use_threads) InlineTick();
  SyncSide(writer_);
  if (writer_.attachment->segment.truncated()) return nullptr;
  if (options_.disconnect_behavior == DisconnectBehavior::kImmediately && PeerGone()) return nullptr;
  std::byte* data = writer_.attachment->producer.TryClaim(size);
  if (data != nullptr) claim_ = OpenClaim{data, size, writer_.attachment.get(), nullptr};
  return data;
}

absl::StatusOr<std::byte*> Channel::Claim(std::size_t size, Deadline deadline) {
  if (closed_) return StatusOf(IoResult::kClosed);
  if (claim_.data != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrFormat("channel '%s': a claim is already open: Commit or Abort it first", name()));
  }
  WriterCall call(*this);
  for (;;) {
    if (std::byte* data = TryClaim(size); data != nullptr) return data;
    // Why not, in TryWrite's order (TryClaim synced the side).
    if (size > writer_.attachment->producer.max_message_bytes()) return StatusOf(IoResult::kTooLarge);
    if (writer_.attachment->segment.truncated()) return StatusOf(IoResult::kCorrupt, writer_);
    deadline = deadline.Started();  // once, at the first wait
    if (PeerGone()) {
      if (options_.disconnect_behavior == DisconnectBehavior::kImmediately) {
        return StatusOf(IoResult::kPeerGone, writer_);
      }
      ESHM_RETURN_IF_ERROR(AwaitPeer(writer_, deadline, [&] { return writer_.attachment->producer.Fits(size); }));
      continue;
    }
    // Room for a claim of `size` is room for a message of `size`: the same record, the same padding.
    ESHM_RETURN_IF_ERROR(WaitOnRing(writer_, [&](WaitCheck check) {
      return writer_.attachment->producer.WaitForSpace(size, options_.wait, deadline, check);
    }));
  }
}

std::shared_ptr<void> Channel::PinClaimMemory() const {
  if (claim_.data == nullptr) return nullptr;
  if (claim_.left_behind != nullptr) return claim_.left_behind;
  if (writer_.attachment.get() == claim_.attachment) return writer_.attachment;
  return nullptr;  // not reached: a move of the write side sets left_behind
}

IoResult Channel::Commit(std::size_t size, Publish publish) {
  if (closed_) return IoResult::kClosed;
  if (claim_.data == nullptr) return IoResult::kOk;
  WriterCall call(*this);
  SyncSide(writer_);  // first: a move now keeps the claim's memory mapped (claim_.left_behind)
  const OpenClaim claim = std::exchange(claim_, OpenClaim{});
  RingProducer& producer = writer_.attachment->producer;
  const bool here = claim.attachment == writer_.attachment.get();
  if (lost_ != 0) {
    // Messages before this one were dropped at a move: this one is not sent after them, out of order.
    if (here) producer.Abort();
    return ReportLost();
  }
  if (here) {
    producer.Commit(size, publish);
    return IoResult::kOk;
  }
  // Claimed in a segment this side has left (the claim's room there was given back when it moved): send its
  // bytes here, behind the staged messages carried over.
  const std::span<const std::byte> message(claim.data, std::min(size, claim.capacity));
  if (message.size() <= producer.max_message_bytes() && producer.TryWrite(message, publish)) return IoResult::kOk;
  lost_ = 1;
  return ReportLost();
}

void Channel::Abort() {
  const OpenClaim claim = std::exchange(claim_, OpenClaim{});
  // A claim left behind by a move has no room to give back there any more.
  if (claim.data != nullptr && writer_.attachment != nullptr && claim.attachment == writer_.attachment.get()) {
    writer_.attachment->producer.Abort();
  }
}

IoResult Channel::Flush() {
  if (closed_) return IoResult::kClosed;
  WriterCall call(*this);
  SyncSide(writer_);
  writer_.attachment->producer.Flush();
  return lost_ != 0 ? ReportLost() : IoResult::kOk;
}

// ---------------------------------------------------------------------------------------------------------
// Read side.

// A truncation of the segment file shows on the read path in three ways, and each is checked: a page past
// the new end faults (the SIGBUS guard marks the segment, truncated()); the tick's fstat marks it; and a
// page partly cut reads zeros without a fault, which only the trailer's canary tells (TrailerIntact, one
// load: Segment::TrailerIntact argues why one load after the copy suffices). So the canary is loaded after
// each message is copied, before it is reported read (Release), and whenever the ring reads empty (its
// next record may be what was zeroed).

IoResult Channel::ReadOutcome(ReadResult result) const {
  switch (result) {
    case ReadResult::kOk:
      return IoResult::kOk;
    case ReadResult::kCorrupt:
      return IoResult::kCorrupt;
    case ReadResult::kBufferTooSmall:
      return IoResult::kBufferTooSmall;
    case ReadResult::kEmpty:
      break;
  }
  // Empty: its next record may be what a truncation zeroed.
  if (!reader_.attachment->segment.TrailerIntact()) return IoResult::kCorrupt;
  if (options_.disconnect_behavior == DisconnectBehavior::kImmediately && PeerGone()) return IoResult::kPeerGone;
  return IoResult::kWouldBlock;
}

IoResult Channel::TryPeek(std::span<const std::byte>* message) {
  if (closed_) return IoResult::kClosed;
  if (!options_.use_threads) InlineTick();
  SyncSide(reader_);
  const Segment& segment = reader_.attachment->segment;
  if (segment.truncated()) return IoResult::kCorrupt;
  const IoResult result = ReadOutcome(reader_.attachment->consumer.TryPeek(message));
  // Refuse at once a message a truncation has already reached; what happens to the view later, Release
  // tells.
  if (result == IoResult::kOk && !segment.TrailerIntact()) return IoResult::kCorrupt;
  return result;
}

IoResult Channel::Release() {
  if (reader_.attachment == nullptr) return IoResult::kClosed;
  Attachment& attachment = *reader_.attachment;
  // After the caller's last read of the view: what it read is whole if the trailer still is. If not, the
  // message stays unreleased; the segment is lost anyway.
  if (attachment.segment.truncated() || !attachment.segment.TrailerIntact()) return IoResult::kCorrupt;
  attachment.consumer.Release();
  return IoResult::kOk;
}

absl::Status Channel::AwaitMessage(Deadline deadline) {
  if (PeerGone()) {
    // Anything the peer published before it went has been delivered by now (the try came first).
    return AwaitPeer(reader_, deadline, [&] { return reader_.attachment->consumer.HasData(); });
  }
  absl::Status status = WaitOnRing(reader_, [&](WaitCheck check) {
    return reader_.attachment->consumer.WaitForData(options_.wait, deadline, check);
  });
  if (status.code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::DeadlineExceededError(absl::StrFormat("channel '%s': no message arrived before the deadline", name()));
  }
  return status;
}

absl::StatusOr<std::span<const std::byte>> Channel::Peek(Deadline deadline) {
  for (;;) {
    std::span<const std::byte> message;
    const IoResult result = TryPeek(&message);
    if (result == IoResult::kOk) return message;
    if (result != IoResult::kWouldBlock) return StatusOf(result, reader_);
    deadline = deadline.Started();  // once, at the first wait
    ESHM_RETURN_IF_ERROR(AwaitMessage(deadline));
  }
}

absl::StatusOr<std::size_t> Channel::Read(std::span<std::byte> buffer, Deadline deadline) {
  for (;;) {
    std::size_t size = 0;
    const IoResult result = TryRead(buffer, &size);
    if (result == IoResult::kOk) return size;
    if (result == IoResult::kBufferTooSmall) {
      return absl::OutOfRangeError(absl::StrFormat(
          "the next message is %d bytes but the buffer holds %d; the message stays in the channel: read it with a "
          "buffer of at least %d bytes",
          size, buffer.size(), size));
    }
    if (result != IoResult::kWouldBlock) return StatusOf(result, reader_);
    deadline = deadline.Started();  // once, at the first wait
    ESHM_RETURN_IF_ERROR(AwaitMessage(deadline));
  }
}

std::optional<std::size_t> Channel::NextMessageSize() {
  std::span<const std::byte> message;
  if (TryPeek(&message) != IoResult::kOk) return std::nullopt;
  return message.size();
}

// ---------------------------------------------------------------------------------------------------------
// Observers.

absl::Status Channel::StatusOf(IoResult result) const {
  if (result != IoResult::kCorrupt) return StatusOf(result, writer_);  // only kCorrupt looks at a side
  std::lock_guard<std::mutex> lock(mu_);
  Side current;
  current.attachment = current_;
  return StatusOf(result, current);
}

absl::Status Channel::StatusOf(IoResult result, const Side& side) const {
  switch (result) {
    case IoResult::kOk:
      return absl::OkStatus();
    case IoResult::kWouldBlock:
      return absl::ResourceExhaustedError(
          absl::StrFormat("channel '%s': the ring is full (write) or empty (read) right now", name()));
    case IoResult::kTooLarge:
      return absl::InvalidArgumentError(absl::StrFormat(
          "channel '%s': message exceeds the maximum message size of %d bytes: split it, or create the channel "
          "with larger rings",
          name(), max_message_bytes()));
    case IoResult::kBufferTooSmall:
      return absl::OutOfRangeError(absl::StrFormat(
          "channel '%s': the next message is larger than the buffer; it stays in the channel", name()));
    case IoResult::kPeerGone:
      if (absl::Status gone = PeerGoneError(); !gone.ok()) return gone;
      return absl::UnavailableError(
          absl::StrFormat("channel '%s': the %s was gone (it is back now: retry)", name(), RoleName(Other(role_))));
    case IoResult::kCorrupt:
      if (side.attachment != nullptr && side.attachment->segment.truncated()) {
        return absl::DataLossError(absl::StrFormat(
            "channel '%s': another process truncated the segment file %s under this channel (or overwrote its "
            "last bytes); messages in it are lost: close and re-open the channel",
            name(), name_.path()));
      }
      return absl::DataLossError(absl::StrFormat(
          "channel '%s': the incoming ring was corrupted by the peer; close and re-open the channel", name()));
    case IoResult::kClosed:
      return absl::FailedPreconditionError(absl::StrFormat("channel '%s' is closed", name()));
    case IoResult::kLost:
      return absl::DataLossError(absl::StrFormat(
          "channel '%s': the channel moved to a new segment (its name was re-created, or a new master's segment "
          "was joined) that cannot take %d message(s) written before the move and not yet published (larger "
          "than its maximum message size of %d bytes, or more than its ring holds): they were dropped, and the "
          "call that reported this did not send its own message; send them again",
          name(), lost_reported_.load(std::memory_order_relaxed), max_message_bytes()));
  }
  return absl::UnknownError("unknown result");
}

ChannelStats Channel::stats() const {
  ChannelStats s;
  std::lock_guard<std::mutex> lock(mu_);
  if (current_ == nullptr) return s;
  const Segment& segment = current_->segment;
  const SegmentHeader* h = segment.header();
  const RoleControl& master = h->roles[static_cast<int>(Role::kMaster)];
  const RoleControl& slave = h->roles[static_cast<int>(Role::kSlave)];
  // Acquire/relaxed: these are independent snapshots for reporting.
  s.master_pid = master.state.load(std::memory_order_acquire) != 0 ? master.pid.load(std::memory_order_relaxed) : 0;
  s.slave_pid = slave.state.load(std::memory_order_acquire) != 0 ? slave.pid.load(std::memory_order_relaxed) : 0;
  const bool peer_alive = peer_state() == PeerState::kAlive;
  s.master_alive = role_ == Role::kMaster || peer_alive;
  s.slave_alive = role_ == Role::kSlave || peer_alive;
  s.master_heartbeat = master.heartbeat.load(std::memory_order_relaxed);
  s.slave_heartbeat = slave.heartbeat.load(std::memory_order_relaxed);
  s.epoch = master.attach_epoch.load(std::memory_order_relaxed);
  s.segment_epoch_ns = segment.creation_epoch_ns();
  s.reconnect_count = reconnect_count_.load(std::memory_order_relaxed);
  s.max_message_bytes = segment.max_message_bytes();
  for (const Direction d : {Direction::kMasterToSlave, Direction::kSlaveToMaster}) {
    const RingControl* ring = segment.ring_control(d);
    const std::uint64_t written = ring->producer.messages_written.load(std::memory_order_relaxed);
    const std::uint64_t read = ring->consumer.messages_read.load(std::memory_order_relaxed);
    const std::uint64_t tail = ring->producer.tail.load(std::memory_order_acquire);
    const std::uint64_t read_to = ring->consumer.head.load(std::memory_order_relaxed);
    const std::uint64_t queued_bytes = tail >= read_to ? tail - read_to : 0;
    const std::uint64_t queued_messages = written >= read ? written - read : 0;
    s.wake_syscalls += ring->wait.wake_syscalls.load(std::memory_order_relaxed);
    s.wait_syscalls += ring->wait.wait_syscalls.load(std::memory_order_relaxed);
    if (d == Direction::kMasterToSlave) {
      s.m2s_write_count = written;
      s.m2s_read_count = read;
      s.m2s_queued_bytes = queued_bytes;
      s.m2s_queued_messages = queued_messages;
      s.m2s_capacity = segment.ring_capacity(d);
    } else {
      s.s2m_write_count = written;
      s.s2m_read_count = read;
      s.s2m_queued_bytes = queued_bytes;
      s.s2m_queued_messages = queued_messages;
      s.s2m_capacity = segment.ring_capacity(d);
    }
  }
  return s;
}

}  // namespace eshm
