// The C ABI (eshm.h) over eshm::Channel.
//
// Every exported function validates its arguments before touching them, never lets a C++ exception cross
// the boundary, and reports failures as an ESHM_ERROR_* code plus a thread-local message. The non-blocking
// hot-path results (ESHM_ERROR_NO_DATA, ESHM_ERROR_RING_FULL) record a static message, so polling costs no
// allocation or formatting.
//
// Threading (the contract is in eshm.h). eshm::Channel lets one thread at a time use each side; a handle
// lets any number, by serializing each side with its own SideLock: write-side calls take the writer's,
// read-side calls the reader's, so a writing and a reading thread still run in parallel. Non-blocking calls
// only try the lock (another thread holding it is reported as a full ring / no data: that thread is
// writing or reading right now). Blocking calls wait for it in slices of kSliceNs, looking at `closing`
// between slices, and then wait for the channel in one call. eshm_close sets `closing` and shuts the channel
// down (Channel::Shutdown ends its waits at once), then waits for every call in progress to leave before it
// frees the handle.
//
// Wait sets (eshm_waitset_*) run an eshm::WaitSet, which looks at its members' ring ends and so must only
// hold members whose sides the waiting thread holds. A wait therefore proceeds in rounds: under the set's
// mutex it takes, without waiting, the sides of every member it waits on, keeps in the engine the members
// whose sides it got and takes out the others (polled again every kLeftOutPollNs), runs the engine's Wait,
// and gives every side back before it reports. Whatever must end a round early (eshm_close of a member, a
// blocking call waiting for a side the round holds, eshm_waitset_remove, eshm_waitset_wake) calls the
// engine's Wake. Who learns what:
//  - a handle lists the sets it is in (eshm_handle::wait_sets, under WaitSetMembershipMutex()); eshm_close
//    marks itself closed in each of them and wakes them before it waits for its sides, so a round ends at
//    once, gives the sides back, and never dereferences the handle again (a closed member is known by its
//    pointer only);
//  - a blocking call that finds its side busy wakes the sets of its handle, and a round leaves out a side
//    that has waiters (HandleSide::waiting), so the call gets its turn at once.
// Lock order: WaitSetMembershipMutex(), then a set's mu, then the engine's own locks.
#include "eshm/eshm.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/internal/result_code.h"
#include "eshm/internal/side_lock.h"
#include "eshm/layout.h"
#include "eshm/segment.h"
#include "eshm/segment_name.h"
#include "eshm/wait_set.h"

// The ABI is frozen by these: a change here is a change for every binding.
static_assert(sizeof(eshm_config) == 96, "eshm_config layout changed");
static_assert(offsetof(eshm_config, m2s_capacity) == 40, "eshm_config layout changed");
static_assert(offsetof(eshm_config, spin_ns) == 64, "eshm_config layout changed");
static_assert(offsetof(eshm_config, mode) == 80, "eshm_config layout changed");
static_assert(offsetof(eshm_config, allow_sleep) == 84, "eshm_config layout changed");
static_assert(offsetof(eshm_config, allow_other_owner) == 88, "eshm_config layout changed");
static_assert(sizeof(eshm_stats) == 168, "eshm_stats layout changed");
static_assert(offsetof(eshm_stats, master_heartbeat) == 24, "eshm_stats layout changed");
static_assert(offsetof(eshm_stats, segment_epoch_ns) == 160, "eshm_stats layout changed");
static_assert(ESHM_ROLE_MASTER == static_cast<int>(eshm::ChannelRole::kMaster));
static_assert(ESHM_ROLE_SLAVE == static_cast<int>(eshm::ChannelRole::kSlave));
static_assert(ESHM_ROLE_AUTO == static_cast<int>(eshm::ChannelRole::kAuto));
static_assert(ESHM_PEER_ABSENT == static_cast<int>(eshm::PeerState::kAbsent));
static_assert(ESHM_PEER_ALIVE == static_cast<int>(eshm::PeerState::kAlive));
static_assert(ESHM_PEER_UNRESPONSIVE == static_cast<int>(eshm::PeerState::kUnresponsive));
static_assert(ESHM_PEER_DEAD == static_cast<int>(eshm::PeerState::kDead));
static_assert(ESHM_DISCONNECT_IMMEDIATELY == static_cast<int>(eshm::DisconnectBehavior::kImmediately));
static_assert(ESHM_DISCONNECT_ON_TIMEOUT == static_cast<int>(eshm::DisconnectBehavior::kOnTimeout));
static_assert(ESHM_DISCONNECT_NEVER == static_cast<int>(eshm::DisconnectBehavior::kNever));
static_assert(ESHM_WAIT_READABLE == eshm::WaitSet::kReadable);
static_assert(ESHM_WAIT_WRITABLE == eshm::WaitSet::kWritable);
static_assert(ESHM_WAIT_PEER_CHANGED == eshm::WaitSet::kPeerChanged);
static_assert(ESHM_WAIT_CLOSED == eshm::WaitSet::kClosed);
// A pointer and two 32-bit words, no padding: 16 bytes on 64-bit targets, 12 on 32-bit ones.
static_assert(sizeof(eshm_ready) == sizeof(void*) + 8, "eshm_ready layout changed");
static_assert(offsetof(eshm_ready, events) == sizeof(void*), "eshm_ready layout changed");
static_assert(offsetof(eshm_ready, reserved0) == sizeof(void*) + 4, "eshm_ready layout changed");

namespace {

// One side (writing or reading) of a handle. Each on its own cache lines: a writing and a reading thread
// take their locks in parallel without sharing a line.
struct alignas(128) HandleSide {
  eshm::internal::SideLock lock;
  // Threads waiting for `lock` (the slow path only). eshm_close waits until this is 0. Touched with seq_cst:
  // a waiter increments it and then reads `closing`; eshm_close sets `closing` and then reads this (Dekker):
  // either the waiter sees `closing`, or eshm_close sees the waiter.
  std::atomic<int> waiting{0};
};

}  // namespace

struct eshm_handle {
  // Distinguishes a live handle from a zeroed or closed one in the common mistakes (not a guarantee: a
  // freed handle is undefined behaviour). Relaxed: it orders nothing.
  static constexpr std::uint64_t kMagic = 0x454c444e41484d53ull;  // "SMHANDLE"
  std::atomic<std::uint64_t> magic{kMagic};
  std::unique_ptr<eshm::Channel> channel;
  // Set by eshm_close (seq_cst, see HandleSide::waiting): calls in progress leave, calls that find it set
  // return ESHM_ERROR_CLOSED. A call that holds its side reads it with acquire (nothing else hangs on it: one
  // that misses it is waited for, and notices it between slices).
  std::atomic<bool> closing{false};
  // Calls in progress that take no side (eshm_get_stats, ...), for eshm_close to wait for. seq_cst, as
  // HandleSide::waiting.
  std::atomic<int> observers{0};
  HandleSide writer;
  HandleSide reader;
  // The wait sets this handle is a member of (eshm_waitset_add); guarded by WaitSetMembershipMutex().
  // eshm_close marks itself closed in each.
  std::vector<eshm_waitset*> wait_sets;
  // wait_sets.size(), written under that mutex, read without it (seq_cst, see HandleSide::waiting): a call
  // that finds its side busy wakes the sets only if there are any.
  std::atomic<std::size_t> wait_set_count{0};
};

struct eshm_waitset {
  // As eshm_handle::kMagic.
  static constexpr std::uint64_t kMagic = 0x5453544941574d53ull;  // "SMWAITST"

  struct Member {
    eshm_handle* handle;     // compared always; dereferenced only under mu while !closed
    eshm::Channel* channel;  // the engine's key for it; dereferenced by the engine only
    unsigned interest;
    std::size_t write_size;
    int seen_peer_state;        // while out of the engine: the peer state already accounted for
    bool closed = false;        // eshm_close was called on the handle (set under mu, by eshm_close)
    bool in_engine = false;     // a member of `engine` now
    bool peer_changed = false;  // a change of the peer not reported yet
    std::uint64_t last_reported = 0;  // the wait (reports) that last reported it
  };

  std::atomic<std::uint64_t> magic{kMagic};
  eshm::WaitSet engine;
  std::mutex mu;
  std::vector<Member> members;  // guarded by mu
  // Guarded by mu: the index in `members` of each member in the engine, rebuilt when `index_stale`.
  std::unordered_map<const eshm::Channel*, std::size_t> index;
  bool index_stale = false;
  // Guarded by mu: scratch for a round's report, (index in members, events).
  std::vector<std::pair<std::size_t, unsigned>> report;
  std::uint64_t reports = 0;  // guarded by mu: waits that reported something
  // A thread is in eshm_waitset_wait (acquire/release: the flag hands the set's round state over).
  std::atomic<bool> waiting{false};
  // eshm_waitset_wake: the current or next wait returns. Release/acquire: nothing else hangs on it.
  std::atomic<bool> wake_requested{false};
};

namespace {

// A call waiting for its side looks at `closing` this often: the longest eshm_close waits for it to leave.
constexpr std::int64_t kSliceNs = 50'000'000;

// The config of headers before 2.1: everything up to allow_sleep. Still accepted, and what the exported
// eshm_config_init (not the macro) fills.
constexpr std::uint32_t kConfigV1Bytes = offsetof(eshm_config, allow_other_owner);

// Struct sizes above this are certainly garbage (an uninitialized struct_size), not a newer header.
constexpr std::uint32_t kMaxStructSize = 64 * 1024;

// The sizes an eshm_config can have: an older header's, this one's, or a newer (larger) one's.
bool IsConfigSize(std::size_t size) {
  return size == kConfigV1Bytes || (size >= sizeof(eshm_config) && size <= kMaxStructSize);
}

// ---- The thread's last error ----

struct LastError {
  std::string text;
  const char* fixed = nullptr;  // when set, the message (static storage); `text` is stale
};
thread_local LastError t_last_error;

// Records a static message. Never allocates.
int Fail(int code, const char* fixed_message) noexcept {
  t_last_error.fixed = fixed_message;
  return code;
}

// Records a formatted message. Never throws: out of memory degrades to a static message.
int Fail(int code, std::string_view message) noexcept {
  try {
    t_last_error.text.assign(message.data(), message.size());
    t_last_error.fixed = nullptr;
  } catch (...) {
    t_last_error.fixed = "eshm: out of memory while recording an error message";
  }
  return code;
}

template <typename... Args>
int Failf(int code, const absl::FormatSpec<Args...>& format, const Args&... args) noexcept {
  try {
    return Fail(code, absl::StrFormat(format, args...));
  } catch (...) {
    return Fail(code, "eshm: out of memory while formatting an error message");
  }
}

// Runs `body`, turning any exception into ESHM_ERROR_INTERNAL: nothing may unwind into C.
template <typename Body>
int Guarded(const char* function, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Failf(ESHM_ERROR_INTERNAL, "%s: out of memory", function);
  } catch (const std::exception& e) {
    return Failf(ESHM_ERROR_INTERNAL, "%s: unexpected exception: %s", function, e.what());
  } catch (...) {
    return Failf(ESHM_ERROR_INTERNAL, "%s: unexpected exception", function);
  }
}

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// ---- Status -> result code ----

using eshm::internal::Operation;
using eshm::internal::ResultCodeFor;

eshm::ChannelRole ChannelRoleOf(eshm::Role role) {
  return role == eshm::Role::kMaster ? eshm::ChannelRole::kMaster : eshm::ChannelRole::kSlave;
}

// The result code of a failed call on an open channel (eshm/internal/result_code.h).
int CodeFor(const absl::Status& status, Operation op, const eshm::Channel& ch) {
  return ResultCodeFor(status, op, ChannelRoleOf(ch.role()));
}

int FailStatus(const char* function, int code, const absl::Status& status) noexcept {
  try {
    return Fail(code, absl::StrCat(function, ": ", status.message()));
  } catch (...) {
    return Fail(code, "eshm: out of memory while recording an error message");
  }
}

// ---- Argument checks ----

// Returns ESHM_SUCCESS if `handle` can be used, else records why.
int CheckHandle(const char* function, const eshm_handle* handle) {
  if (handle == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: handle is NULL", function);
  if (handle->magic.load(std::memory_order_relaxed) != eshm_handle::kMagic || handle->channel == nullptr) {
    return Failf(ESHM_ERROR_INVALID_PARAM,
                 "%s: handle is not an open eshm handle (closed already, or not from eshm_open)", function);
  }
  return ESHM_SUCCESS;
}

int CheckTimeout(const char* function, int timeout_ms) {
  if (timeout_ms >= -1) return ESHM_SUCCESS;
  return Failf(ESHM_ERROR_INVALID_PARAM,
               "%s: timeout_ms is %d; use -1 to wait forever, 0 not to wait, or a positive number of ms", function,
               timeout_ms);
}

eshm::Deadline DeadlineFor(int timeout_ms) {
  return timeout_ms < 0 ? eshm::Deadline::Infinite() : eshm::Deadline::AfterMs(timeout_ms);
}

// eshm_write's and eshm_read's one budget: started by the first wait (for the side, else in the channel), so
// a call that waits for neither never reads the clock, and one that waits for both waits timeout_ms in all.
eshm::Deadline TimeoutFor(int timeout_ms) {
  return timeout_ms < 0 ? eshm::Deadline::Infinite() : eshm::Deadline::TimeoutMs(timeout_ms);
}

int FailClosedMeanwhile(const char* function) {
  return Failf(ESHM_ERROR_CLOSED, "%s: the handle is being closed (eshm_close was called on another thread)",
               function);
}

// ---- Wait set membership ----

// Guards every handle's wait_sets and every set's members list against each other (eshm_close and
// eshm_waitset_destroy each walk the other's). Taken before a set's mu.
std::mutex& WaitSetMembershipMutex() {
  static std::mutex* const mu = new std::mutex();
  return *mu;
}

// Ends the current round of the waits on the sets `handle` is in (each starts another round at once).
void WakeWaitSetsOf(eshm_handle* handle) {
  // seq_cst: after our increment of HandleSide::waiting (Dekker with eshm_waitset_add's increment of the
  // count followed by a round's read of `waiting`): either we see the set, or the round sees our waiter.
  if (handle->wait_set_count.load(std::memory_order_seq_cst) == 0) return;
  std::lock_guard<std::mutex> membership(WaitSetMembershipMutex());
  for (eshm_waitset* set : handle->wait_sets) set->engine.Wake();
}

// Under the membership mutex: `set` leaves handle->wait_sets.
void UnlinkLocked(eshm_handle* handle, eshm_waitset* set) {
  std::vector<eshm_waitset*>& sets = handle->wait_sets;
  sets.erase(std::remove(sets.begin(), sets.end(), set), sets.end());
  handle->wait_set_count.store(sets.size(), std::memory_order_seq_cst);
}

// eshm_close: every set the handle is in marks it closed (and never dereferences it again) and ends its
// current round, which gives back the handle's sides.
void LeaveWaitSets(eshm_handle* handle) {
  std::lock_guard<std::mutex> membership(WaitSetMembershipMutex());
  for (eshm_waitset* set : handle->wait_sets) {
    {
      std::lock_guard<std::mutex> lock(set->mu);
      for (eshm_waitset::Member& m : set->members) {
        if (m.handle == handle) m.closed = true;
      }
    }
    set->engine.Wake();
  }
  handle->wait_sets.clear();
  handle->wait_set_count.store(0, std::memory_order_seq_cst);
}

// Holds one side of a handle for one call, and gives it back when the call returns.
class SideGuard {
 public:
  SideGuard(eshm_handle* handle, HandleSide& side) : handle_(handle), side_(side) {}
  SideGuard(const SideGuard&) = delete;
  SideGuard& operator=(const SideGuard&) = delete;
  ~SideGuard() {
    if (held_) side_.lock.Unlock();
  }

  // Non-blocking calls: the side if no other thread holds it. Cheap: one compare-and-swap.
  bool TryTake() {
    held_ = side_.lock.TryLock();
    return held_;
  }

  // Blocking calls: waits for the side until `deadline`, in slices, leaving early if eshm_close is called.
  // ESHM_SUCCESS once held; otherwise records why (and the caller must not touch the handle again: it may
  // be freed as soon as this returns).
  int Take(const char* function, eshm::Deadline deadline, const char* side_name) {
    if (TryTake()) return ESHM_SUCCESS;
    side_.waiting.fetch_add(1, std::memory_order_seq_cst);
    eshm_handle* const handle = handle_;
    // A wait set's round may hold the side: it lets go of it, and leaves it out while we wait (see top).
    WakeWaitSetsOf(handle);
    held_ = side_.lock.LockUntil(deadline, kSliceNs,
                                 [handle] { return handle->closing.load(std::memory_order_seq_cst); });
    const bool closing = !held_ && handle->closing.load(std::memory_order_seq_cst);
    // The last touch of the handle by a thread that did not get the side: eshm_close may free it next.
    side_.waiting.fetch_sub(1, std::memory_order_seq_cst);
    if (held_) return ESHM_SUCCESS;
    if (closing) return FailClosedMeanwhile(function);
    return Failf(ESHM_ERROR_TIMEOUT,
                 "%s: another thread kept the %s side of this handle busy until the timeout (calls on one side of "
                 "a handle take turns)",
                 function, side_name);
  }

 private:
  eshm_handle* const handle_;
  HandleSide& side_;
  bool held_ = false;
};

// Registers a call that takes no side, so that eshm_close waits for it.
class ObserverGuard {
 public:
  explicit ObserverGuard(eshm_handle* handle) : handle_(handle) {
    handle_->observers.fetch_add(1, std::memory_order_seq_cst);
    closing_ = handle_->closing.load(std::memory_order_seq_cst);
  }
  ObserverGuard(const ObserverGuard&) = delete;
  ObserverGuard& operator=(const ObserverGuard&) = delete;
  ~ObserverGuard() { handle_->observers.fetch_sub(1, std::memory_order_seq_cst); }
  bool closing() const { return closing_; }

 private:
  eshm_handle* const handle_;
  bool closing_ = false;
};

// A blocking channel call's failure: eshm_close on another thread ends it (Channel::Shutdown) with Cancelled,
// reported as the close it is.
int FailBlocked(const char* function, eshm_handle* handle, const absl::Status& status, Operation op) {
  if (status.code() == absl::StatusCode::kCancelled && handle->closing.load(std::memory_order_seq_cst)) {
    return FailClosedMeanwhile(function);
  }
  return FailStatus(function, CodeFor(status, op, *handle->channel), status);
}

bool IsPowerOfTwo(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Copies the caller's config (of any struct_size) into `out`, checking every field.
int ConfigFromC(const eshm_config* cfg, eshm::ChannelOptions* out) {
  constexpr const char* kFn = "eshm_open";
  eshm_config c;
  eshm_config_init(&c);
  if (cfg != nullptr) {
    const std::uint32_t size = cfg->struct_size;
    if (size == 0) {
      return Failf(ESHM_ERROR_NOT_INITIALIZED,
                   "%s: cfg->struct_size is 0: initialize the config with eshm_config_init(&cfg) before setting "
                   "its fields (or pass NULL for the defaults)",
                   kFn);
    }
    if (size > kMaxStructSize) {
      return Failf(ESHM_ERROR_INVALID_PARAM,
                   "%s: cfg->struct_size is %u, which no eshm_config has: the config is uninitialized or "
                   "corrupt; initialize it with eshm_config_init(&cfg)",
                   kFn, size);
    }
    if (!IsConfigSize(size)) {
      return Failf(ESHM_ERROR_INVALID_PARAM,
                   "%s: cfg->struct_size is %u, which no eshm_config has (%u bytes before eshm 2.1, %u since): "
                   "initialize the config with eshm_config_init(&cfg)",
                   kFn, size, kConfigV1Bytes, static_cast<unsigned>(sizeof(eshm_config)));
    }
    // A newer header's config: accepted only if the fields this library does not know are left zero.
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(cfg);
    for (std::uint32_t i = sizeof(eshm_config); i < size; ++i) {
      if (bytes[i] != 0) {
        return Failf(ESHM_ERROR_INVALID_PARAM,
                     "%s: cfg is %u bytes and sets fields past byte %u, which this libeshm %s does not know: "
                     "use a libeshm at least as new as your eshm.h",
                     kFn, size, static_cast<unsigned>(sizeof(eshm_config)), ESHM_VERSION_STRING);
      }
    }
    // An older header's config leaves the newer fields at their defaults.
    std::memcpy(&c, cfg, std::min<std::size_t>(size, sizeof(c)));
    c.struct_size = sizeof(c);
  }

  auto range = [&](const char* field, std::int64_t v, std::int64_t lo, std::int64_t hi, const char* what) {
    if (v >= lo && v <= hi) return ESHM_SUCCESS;
    return Failf(ESHM_ERROR_INVALID_PARAM, "%s: cfg->%s is %d; %s", kFn, field, v, what);
  };
  int rc;
  if ((rc = range("role", c.role, 0, 2, "use ESHM_ROLE_MASTER (0), ESHM_ROLE_SLAVE (1) or ESHM_ROLE_AUTO (2)")) ||
      (rc = range("disconnect_behavior", c.disconnect_behavior, 0, 2,
                  "use ESHM_DISCONNECT_IMMEDIATELY (0), ESHM_DISCONNECT_ON_TIMEOUT (1) or ESHM_DISCONNECT_NEVER (2)")) ||
      (rc = range("stale_threshold_ms", c.stale_threshold_ms, 1, INT32_MAX, "it must be positive")) ||
      (rc = range("heartbeat_interval_ms", c.heartbeat_interval_ms, 0, INT32_MAX,
                  "it must not be negative (0 = automatic)")) ||
      (rc = range("reconnect_wait_ms", c.reconnect_wait_ms, 0, INT32_MAX, "it must not be negative")) ||
      (rc = range("reconnect_retry_interval_ms", c.reconnect_retry_interval_ms, 1, INT32_MAX,
                  "it must be positive")) ||
      (rc = range("max_reconnect_attempts", c.max_reconnect_attempts, 0, INT32_MAX,
                  "it must not be negative (0 = unlimited)")) ||
      (rc = range("auto_cleanup", c.auto_cleanup, 0, 1, "use 0 or 1")) ||
      (rc = range("use_threads", c.use_threads, 0, 1, "use 0 or 1")) ||
      (rc = range("allow_sleep", c.allow_sleep, 0, 1, "use 0 or 1")) ||
      (rc = range("allow_other_owner", c.allow_other_owner, 0, 1, "use 0 or 1")) ||
      (rc = range("reserved0", c.reserved0, 0, 0, "it must be 0")) ||
      (rc = range("spin_ns", c.spin_ns, 0, INT64_MAX, "it must not be negative")) ||
      (rc = range("yield_ns", c.yield_ns, 0, INT64_MAX, "it must not be negative"))) {
    return rc;
  }
  if (c.heartbeat_interval_ms >= c.stale_threshold_ms) {
    return Failf(ESHM_ERROR_INVALID_PARAM,
                 "%s: cfg->heartbeat_interval_ms (%d) must be below cfg->stale_threshold_ms (%d), or every peer "
                 "looks stale",
                 kFn, c.heartbeat_interval_ms, c.stale_threshold_ms);
  }
  const struct {
    const char* field;
    std::uint64_t value;
  } capacities[] = {{"m2s_capacity", c.m2s_capacity}, {"s2m_capacity", c.s2m_capacity}};
  for (const auto& cap : capacities) {
    if (!IsPowerOfTwo(cap.value) || cap.value < eshm::kMinRingCapacity || cap.value > eshm::kMaxRingCapacity) {
      return Failf(ESHM_ERROR_INVALID_PARAM, "%s: cfg->%s is %u; use a power of two from %u to %u bytes", kFn,
                   cap.field, cap.value, eshm::kMinRingCapacity, eshm::kMaxRingCapacity);
    }
  }
  if ((c.mode & ~std::uint32_t{0777}) != 0 || (c.mode & 0600) != 0600) {
    return Failf(ESHM_ERROR_INVALID_PARAM,
                 "%s: cfg->mode is 0%o; use permission bits only (at most 0777), including owner read and write "
                 "(0600)",
                 kFn, c.mode);
  }

  out->role = static_cast<eshm::ChannelRole>(c.role);
  out->disconnect_behavior = static_cast<eshm::DisconnectBehavior>(c.disconnect_behavior);
  out->stale_threshold_ms = c.stale_threshold_ms;
  out->heartbeat_interval_ms = c.heartbeat_interval_ms;
  out->reconnect_wait_ms = c.reconnect_wait_ms;
  out->reconnect_retry_interval_ms = c.reconnect_retry_interval_ms;
  out->max_reconnect_attempts = c.max_reconnect_attempts;
  out->auto_cleanup = c.auto_cleanup != 0;
  out->use_threads = c.use_threads != 0;
  out->m2s_capacity = c.m2s_capacity;
  out->s2m_capacity = c.s2m_capacity;
  out->max_message_bytes = c.max_message_bytes;
  out->mode = static_cast<mode_t>(c.mode);
  out->wait.spin_ns = c.spin_ns;
  out->wait.yield_ns = c.yield_ns;
  out->wait.allow_sleep = c.allow_sleep != 0;
  out->allow_other_owner = c.allow_other_owner != 0;
  return ESHM_SUCCESS;
}

// Records why a non-blocking call returned `result` (static text on the polling paths).
int FailIo(const char* function, eshm_handle* handle, eshm::IoResult result, Operation op) {
  eshm::Channel& ch = *handle->channel;
  switch (result) {
    case eshm::IoResult::kOk:
      return ESHM_SUCCESS;
    case eshm::IoResult::kWouldBlock:
      if (op == Operation::kWrite) {
        return Fail(ESHM_ERROR_RING_FULL,
                    "eshm_try_write: the outgoing ring has no room for the message right now (the reader is "
                    "behind); retry, or use eshm_write to wait");
      }
      return Fail(ESHM_ERROR_NO_DATA, "no message is queued right now");
    default: {
      // kLost is not reached through this API, which never stages a write (each is published at once)
      // nor claims; it would be CORRUPT, as the DataLoss status of a blocking write.
      const absl::Status status = ch.StatusOf(result);
      return FailStatus(function, CodeFor(status, op, ch), status);
    }
  }
}

int FailBufferTooSmall(const char* function, std::size_t needed, std::size_t cap) {
  return Failf(ESHM_ERROR_BUFFER_TOO_SMALL,
               "%s: the next message is %u bytes but the buffer holds %u; it stays queued: read it again with a "
               "buffer of at least %u bytes (*out_len holds the size)",
               function, needed, cap, needed);
}

// The read paths: copy a peeked message out, or leave it queued if it does not fit. Release, after the
// copy, says whether the copy is whole (a truncation of the segment may have zeroed it meanwhile).
// The outcome of Channel::TryRead for the C caller: the size read, or needed (BUFFER_TOO_SMALL: the message
// stays queued), or why not. kWouldBlock is the caller's to report.
int ReadOutcome(const char* function, eshm_handle* handle, eshm::IoResult result, std::size_t size,
                std::size_t cap, std::size_t* out_len) {
  switch (result) {
    case eshm::IoResult::kOk:
      *out_len = size;
      return ESHM_SUCCESS;
    case eshm::IoResult::kBufferTooSmall:
      *out_len = size;
      return FailBufferTooSmall(function, size, cap);
    default:
      return FailIo(function, handle, result, Operation::kRead);
  }
}

std::span<std::byte> Writable(void* buf, std::size_t cap) { return {static_cast<std::byte*>(buf), cap}; }

int CheckReadArgs(const char* function, eshm_handle* handle, const void* buf, std::size_t cap,
                  const std::size_t* out_len) {
  if (int rc = CheckHandle(function, handle); rc != ESHM_SUCCESS) return rc;
  if (out_len == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: out_len is NULL", function);
  if (buf == nullptr && cap != 0) {
    return Failf(ESHM_ERROR_INVALID_PARAM, "%s: buf is NULL but cap is %u (pass cap 0 to only learn the size)",
                 function, cap);
  }
  return ESHM_SUCCESS;
}

int CheckWriteArgs(const char* function, eshm_handle* handle, const void* data, std::size_t len) {
  if (int rc = CheckHandle(function, handle); rc != ESHM_SUCCESS) return rc;
  if (data == nullptr && len != 0) {
    return Failf(ESHM_ERROR_INVALID_PARAM, "%s: data is NULL but len is %u", function, len);
  }
  return ESHM_SUCCESS;
}

std::span<const std::byte> Bytes(const void* data, std::size_t len) {
  if (len == 0) return {};
  return std::span<const std::byte>(static_cast<const std::byte*>(data), len);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Exported functions (C linkage and default visibility come from the declarations in eshm.h).

int eshm_config_init_size(eshm_config* cfg, size_t size) {
  if (cfg == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "eshm_config_init_size: cfg is NULL");
  if (!IsConfigSize(size)) {
    return Failf(ESHM_ERROR_INVALID_PARAM,
                 "eshm_config_init_size: size is %u; pass sizeof(eshm_config) (%u with this eshm.h, %u before 2.1)",
                 size, static_cast<unsigned>(sizeof(eshm_config)), kConfigV1Bytes);
  }
  const eshm::ChannelOptions d;
  eshm_config c;
  std::memset(&c, 0, sizeof(c));
  c.role = static_cast<std::int32_t>(d.role);
  c.disconnect_behavior = static_cast<std::int32_t>(d.disconnect_behavior);
  c.stale_threshold_ms = d.stale_threshold_ms;
  c.heartbeat_interval_ms = d.heartbeat_interval_ms;
  c.reconnect_wait_ms = d.reconnect_wait_ms;
  c.reconnect_retry_interval_ms = d.reconnect_retry_interval_ms;
  c.max_reconnect_attempts = d.max_reconnect_attempts;
  c.auto_cleanup = d.auto_cleanup ? 1 : 0;
  c.use_threads = d.use_threads ? 1 : 0;
  c.m2s_capacity = d.m2s_capacity;
  c.s2m_capacity = d.s2m_capacity;
  c.max_message_bytes = d.max_message_bytes;
  c.spin_ns = d.wait.spin_ns;
  c.yield_ns = d.wait.yield_ns;
  c.mode = static_cast<std::uint32_t>(d.mode);
  c.allow_sleep = d.wait.allow_sleep ? 1 : 0;
  c.allow_other_owner = d.allow_other_owner ? 1 : 0;
  // A smaller (older) config gets its prefix, a larger (newer) one zeros past ours: zero is the default
  // of every field a newer header adds.
  const std::size_t known = std::min<std::size_t>(size, sizeof(c));
  std::memcpy(cfg, &c, known);
  if (size > known) std::memset(reinterpret_cast<unsigned char*>(cfg) + known, 0, size - known);
  cfg->struct_size = static_cast<std::uint32_t>(size);
  return ESHM_SUCCESS;
}

// Parenthesized: the header's eshm_config_init macro must not expand here.
void(eshm_config_init)(eshm_config* cfg) {
  if (cfg != nullptr) eshm_config_init_size(cfg, kConfigV1Bytes);
}

int eshm_open(const char* name, const eshm_config* cfg, eshm_handle** out) {
  return Guarded("eshm_open", [&]() -> int {
    constexpr const char* kFn = "eshm_open";
    if (out == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: out is NULL", kFn);
    *out = nullptr;
    if (name == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: name is NULL", kFn);
    // Bounded: never scans far past the longest valid name.
    const std::string_view name_view(name, strnlen(name, eshm::kMaxSegmentNameLength + 1));
    // The one check of the name on this path: what follows takes the SegmentName.
    absl::StatusOr<eshm::SegmentName> valid = eshm::SegmentName::Create(name_view);
    if (!valid.ok()) {
      if (name_view.size() > eshm::kMaxSegmentNameLength) {
        return Failf(ESHM_ERROR_INVALID_PARAM, "%s: name is longer than %u characters (the limit)", kFn,
                     eshm::kMaxSegmentNameLength);
      }
      return Failf(ESHM_ERROR_INVALID_PARAM, "%s: name \"%s\": %s", kFn, absl::CHexEscape(AbslView(name_view)),
                   valid.status().message());
    }
    eshm::ChannelOptions options;
    if (int rc = ConfigFromC(cfg, &options); rc != ESHM_SUCCESS) return rc;

    absl::StatusOr<std::unique_ptr<eshm::Channel>> channel = eshm::Channel::Open(*valid, options);
    if (!channel.ok()) {
      return FailStatus(kFn, ResultCodeFor(channel.status(), Operation::kOpen, options.role), channel.status());
    }
    auto handle = std::make_unique<eshm_handle>();
    handle->channel = *std::move(channel);
    *out = handle.release();
    return ESHM_SUCCESS;
  });
}

int eshm_close(eshm_handle* handle) {
  if (handle == nullptr) return ESHM_SUCCESS;
  return Guarded("eshm_close", [&]() -> int {
    if (int rc = CheckHandle("eshm_close", handle); rc != ESHM_SUCCESS) return rc;
    // Calls in progress on other threads: one blocked in the channel returns ESHM_ERROR_CLOSED at once
    // (Shutdown), one waiting for a side gives up at once (WakeWaiters), a running one finishes. Taking both
    // sides waits for the first kind; the counters for the other two.
    handle->closing.store(true, std::memory_order_seq_cst);
    handle->channel->Shutdown();  // a call blocked in the channel returns now (Cancelled: FailBlocked)
    // A wait set's round holding our sides lets go of them at once, and never looks at us again.
    LeaveWaitSets(handle);
    for (HandleSide* side : {&handle->writer, &handle->reader}) {
      side->lock.LockUntil(eshm::Deadline::Infinite(), kSliceNs, [] { return false; });
      side->lock.WakeWaiters();
    }
    while (handle->writer.waiting.load(std::memory_order_seq_cst) != 0 ||
           handle->reader.waiting.load(std::memory_order_seq_cst) != 0 ||
           handle->observers.load(std::memory_order_seq_cst) != 0) {
      handle->writer.lock.WakeWaiters();
      handle->reader.lock.WakeWaiters();
      usleep(1000);
    }
    handle->magic.store(0, std::memory_order_relaxed);
    handle->channel->Close();
    delete handle;  // with both side locks held: nobody else uses it any more
    return ESHM_SUCCESS;
  });
}

int eshm_write(eshm_handle* handle, const void* data, size_t len, int timeout_ms) {
  return Guarded("eshm_write", [&]() -> int {
    constexpr const char* kFn = "eshm_write";
    if (int rc = CheckWriteArgs(kFn, handle, data, len); rc != ESHM_SUCCESS) return rc;
    if (int rc = CheckTimeout(kFn, timeout_ms); rc != ESHM_SUCCESS) return rc;
    SideGuard side(handle, handle->writer);
    eshm::Deadline deadline = TimeoutFor(timeout_ms);
    if (!side.TryTake()) {
      deadline = deadline.Started();
      if (int rc = side.Take(kFn, deadline, "write"); rc != ESHM_SUCCESS) return rc;
    }
    if (handle->closing.load(std::memory_order_acquire)) return FailClosedMeanwhile(kFn);
    eshm::Channel& ch = *handle->channel;
    // The common case first: there is room.
    if (ch.TryWrite(Bytes(data, len)) == eshm::IoResult::kOk) return ESHM_SUCCESS;
    const absl::Status status = ch.Write(Bytes(data, len), deadline);
    if (status.ok()) return ESHM_SUCCESS;
    return FailBlocked(kFn, handle, status, Operation::kWrite);
  });
}

int eshm_try_write(eshm_handle* handle, const void* data, size_t len) {
  return Guarded("eshm_try_write", [&]() -> int {
    constexpr const char* kFn = "eshm_try_write";
    if (int rc = CheckWriteArgs(kFn, handle, data, len); rc != ESHM_SUCCESS) return rc;
    SideGuard side(handle, handle->writer);
    if (!side.TryTake()) {
      return Fail(ESHM_ERROR_RING_FULL,
                  "eshm_try_write: another thread is writing on this handle right now (possibly waiting for room); "
                  "retry, or use eshm_write to wait your turn");
    }
    if (handle->closing.load(std::memory_order_acquire)) return FailClosedMeanwhile(kFn);
    const eshm::IoResult result = handle->channel->TryWrite(Bytes(data, len));
    if (result == eshm::IoResult::kOk) return ESHM_SUCCESS;
    return FailIo(kFn, handle, result, Operation::kWrite);
  });
}

int eshm_read(eshm_handle* handle, void* buf, size_t cap, size_t* out_len, int timeout_ms) {
  return Guarded("eshm_read", [&]() -> int {
    constexpr const char* kFn = "eshm_read";
    if (int rc = CheckReadArgs(kFn, handle, buf, cap, out_len); rc != ESHM_SUCCESS) return rc;
    *out_len = 0;
    if (int rc = CheckTimeout(kFn, timeout_ms); rc != ESHM_SUCCESS) return rc;
    SideGuard side(handle, handle->reader);
    eshm::Deadline deadline = TimeoutFor(timeout_ms);
    if (!side.TryTake()) {
      deadline = deadline.Started();
      if (int rc = side.Take(kFn, deadline, "read"); rc != ESHM_SUCCESS) return rc;
    }
    if (handle->closing.load(std::memory_order_acquire)) return FailClosedMeanwhile(kFn);
    eshm::Channel& ch = *handle->channel;
    std::size_t size = 0;
    // The common case first: a message is queued.
    const eshm::IoResult result = ch.TryRead(Writable(buf, cap), &size);
    if (result != eshm::IoResult::kWouldBlock) return ReadOutcome(kFn, handle, result, size, cap, out_len);
    absl::StatusOr<std::size_t> read = ch.Read(Writable(buf, cap), deadline);
    if (read.ok()) {
      *out_len = *read;
      return ESHM_SUCCESS;
    }
    if (read.status().code() == absl::StatusCode::kOutOfRange) {
      // Too large for the buffer: it stays queued, and this thread is its only reader.
      const std::optional<std::size_t> needed = ch.NextMessageSize();
      *out_len = needed.value_or(0);
      return FailBufferTooSmall(kFn, *out_len, cap);
    }
    return FailBlocked(kFn, handle, read.status(), Operation::kRead);
  });
}

int eshm_try_read(eshm_handle* handle, void* buf, size_t cap, size_t* out_len) {
  return Guarded("eshm_try_read", [&]() -> int {
    constexpr const char* kFn = "eshm_try_read";
    if (int rc = CheckReadArgs(kFn, handle, buf, cap, out_len); rc != ESHM_SUCCESS) return rc;
    *out_len = 0;
    SideGuard side(handle, handle->reader);
    if (!side.TryTake()) {
      return Fail(ESHM_ERROR_NO_DATA,
                  "eshm_try_read: another thread is reading on this handle right now (what arrives is its); use "
                  "eshm_read to wait your turn");
    }
    if (handle->closing.load(std::memory_order_acquire)) return FailClosedMeanwhile(kFn);
    std::size_t size = 0;
    const eshm::IoResult result = handle->channel->TryRead(Writable(buf, cap), &size);
    if (result == eshm::IoResult::kWouldBlock) {
      return Fail(ESHM_ERROR_NO_DATA, "eshm_try_read: no message is queued right now");
    }
    return ReadOutcome(kFn, handle, result, size, cap, out_len);
  });
}

int eshm_next_message_size(eshm_handle* handle, size_t* out) {
  return Guarded("eshm_next_message_size", [&]() -> int {
    constexpr const char* kFn = "eshm_next_message_size";
    if (int rc = CheckHandle(kFn, handle); rc != ESHM_SUCCESS) return rc;
    if (out == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: out is NULL", kFn);
    *out = 0;
    SideGuard side(handle, handle->reader);
    if (!side.TryTake()) {
      return Fail(ESHM_ERROR_NO_DATA,
                  "eshm_next_message_size: another thread is reading on this handle right now; the size of what "
                  "it will read is not yours to know");
    }
    if (handle->closing.load(std::memory_order_acquire)) return FailClosedMeanwhile(kFn);
    std::span<const std::byte> message;
    // The message stays peeked (not released): the next read returns it.
    const eshm::IoResult result = handle->channel->TryPeek(&message);
    if (result == eshm::IoResult::kOk) {
      *out = message.size();
      return ESHM_SUCCESS;
    }
    if (result == eshm::IoResult::kWouldBlock) {
      return Fail(ESHM_ERROR_NO_DATA, "eshm_next_message_size: no message is queued right now");
    }
    return FailIo(kFn, handle, result, Operation::kRead);
  });
}

int eshm_max_message_size(eshm_handle* handle, size_t* out) {
  return Guarded("eshm_max_message_size", [&]() -> int {
    constexpr const char* kFn = "eshm_max_message_size";
    if (int rc = CheckHandle(kFn, handle); rc != ESHM_SUCCESS) return rc;
    if (out == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: out is NULL", kFn);
    ObserverGuard observer(handle);
    if (observer.closing()) return FailClosedMeanwhile(kFn);
    // From stats(), which is thread-safe (max_message_bytes() is not: a slave's monitor thread updates it
    // when it follows its master to a new segment).
    *out = static_cast<std::size_t>(handle->channel->stats().max_message_bytes);
    return ESHM_SUCCESS;
  });
}

int eshm_flush(eshm_handle* handle) {
  return Guarded("eshm_flush", [&]() -> int {
    if (int rc = CheckHandle("eshm_flush", handle); rc != ESHM_SUCCESS) return rc;
    SideGuard side(handle, handle->writer);
    // Another thread writing now publishes as it goes (every write of this API is published at once): there is
    // nothing for this call to do.
    if (!side.TryTake()) return ESHM_SUCCESS;
    if (handle->closing.load(std::memory_order_acquire)) return FailClosedMeanwhile("eshm_flush");
    handle->channel->Flush();
    return ESHM_SUCCESS;
  });
}

int eshm_get_role(eshm_handle* handle, int* role) {
  return Guarded("eshm_get_role", [&]() -> int {
    if (int rc = CheckHandle("eshm_get_role", handle); rc != ESHM_SUCCESS) return rc;
    if (role == nullptr) return Fail(ESHM_ERROR_INVALID_PARAM, "eshm_get_role: role is NULL");
    ObserverGuard observer(handle);
    if (observer.closing()) return FailClosedMeanwhile("eshm_get_role");
    *role = handle->channel->role() == eshm::Role::kMaster ? ESHM_ROLE_MASTER : ESHM_ROLE_SLAVE;
    return ESHM_SUCCESS;
  });
}

int eshm_is_remote_alive(eshm_handle* handle) {
  return Guarded("eshm_is_remote_alive", [&]() -> int {
    if (int rc = CheckHandle("eshm_is_remote_alive", handle); rc != ESHM_SUCCESS) return rc;
    ObserverGuard observer(handle);
    if (observer.closing()) return FailClosedMeanwhile("eshm_is_remote_alive");
    return handle->channel->IsRemoteAlive() ? 1 : 0;
  });
}

int eshm_peer_state(eshm_handle* handle, int* state) {
  return Guarded("eshm_peer_state", [&]() -> int {
    constexpr const char* kFn = "eshm_peer_state";
    if (int rc = CheckHandle(kFn, handle); rc != ESHM_SUCCESS) return rc;
    if (state == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: state is NULL", kFn);
    ObserverGuard observer(handle);
    if (observer.closing()) return FailClosedMeanwhile(kFn);
    *state = static_cast<int>(handle->channel->peer_state());
    return ESHM_SUCCESS;
  });
}

int eshm_get_stats(eshm_handle* handle, eshm_stats* out) {
  return Guarded("eshm_get_stats", [&]() -> int {
    constexpr const char* kFn = "eshm_get_stats";
    if (int rc = CheckHandle(kFn, handle); rc != ESHM_SUCCESS) return rc;
    if (out == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: out is NULL", kFn);
    const std::uint32_t size = out->struct_size;
    if (size == 0) {
      return Failf(ESHM_ERROR_NOT_INITIALIZED, "%s: out->struct_size is 0: set it to sizeof(eshm_stats) first",
                   kFn);
    }
    if (size < sizeof(std::uint32_t) || size > kMaxStructSize) {
      return Failf(ESHM_ERROR_INVALID_PARAM, "%s: out->struct_size is %u; set it to sizeof(eshm_stats) (%u)", kFn,
                   size, static_cast<unsigned>(sizeof(eshm_stats)));
    }
    ObserverGuard observer(handle);
    if (observer.closing()) return FailClosedMeanwhile(kFn);
    const eshm::ChannelStats s = handle->channel->stats();
    eshm_stats c;
    std::memset(&c, 0, sizeof(c));
    c.master_pid = s.master_pid;
    c.slave_pid = s.slave_pid;
    c.master_alive = s.master_alive ? 1 : 0;
    c.slave_alive = s.slave_alive ? 1 : 0;
    c.master_heartbeat = s.master_heartbeat;
    c.slave_heartbeat = s.slave_heartbeat;
    c.m2s_write_count = s.m2s_write_count;
    c.m2s_read_count = s.m2s_read_count;
    c.s2m_write_count = s.s2m_write_count;
    c.s2m_read_count = s.s2m_read_count;
    c.epoch = s.epoch;
    c.reconnect_count = s.reconnect_count;
    c.m2s_queued_bytes = s.m2s_queued_bytes;
    c.m2s_queued_messages = s.m2s_queued_messages;
    c.s2m_queued_bytes = s.s2m_queued_bytes;
    c.s2m_queued_messages = s.s2m_queued_messages;
    c.m2s_capacity = s.m2s_capacity;
    c.s2m_capacity = s.s2m_capacity;
    c.max_message_bytes = s.max_message_bytes;
    c.wake_syscalls = s.wake_syscalls;
    c.wait_syscalls = s.wait_syscalls;
    c.segment_epoch_ns = s.segment_epoch_ns;
    // An older caller gets the prefix it knows; a newer one learns which fields were filled.
    const std::uint32_t filled = size < sizeof(c) ? size : static_cast<std::uint32_t>(sizeof(c));
    c.struct_size = filled;
    std::memcpy(out, &c, filled);
    return ESHM_SUCCESS;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Wait sets (the design is at the top of this file).

namespace {

using Member = eshm_waitset::Member;

// How often a wait looks again at the members it left out because another thread's call held their side.
constexpr std::int64_t kLeftOutPollNs = 2'000'000;

int CheckWaitSet(const char* function, const eshm_waitset* set) {
  if (set == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: set is NULL", function);
  if (set->magic.load(std::memory_order_relaxed) != eshm_waitset::kMagic) {
    return Failf(ESHM_ERROR_INVALID_PARAM,
                 "%s: set is not a live eshm wait set (destroyed already, or not from eshm_waitset_create)",
                 function);
  }
  return ESHM_SUCCESS;
}

// The sides a round holds, given back by ReleaseAll (or the destructor, on an exception).
class HeldSides {
 public:
  HeldSides() = default;
  HeldSides(const HeldSides&) = delete;
  HeldSides& operator=(const HeldSides&) = delete;
  ~HeldSides() { ReleaseAll(); }

  void Add(eshm_handle* handle, bool read, bool write) { held_.push_back(Held{handle, read, write}); }

  // The handles may be freed as soon as this returns (their eshm_close waits for these sides).
  void ReleaseAll() {
    for (const Held& h : held_) {
      if (h.write) h.handle->writer.lock.Unlock();
      if (h.read) h.handle->reader.lock.Unlock();
    }
    held_.clear();
  }

 private:
  struct Held {
    eshm_handle* handle;
    bool read;
    bool write;
  };
  std::vector<Held> held_;
};

// A side for a round: never waits, and leaves the side to a thread that waits for it.
bool TryTakeForRound(HandleSide& side) {
  // seq_cst: see WakeWaitSetsOf.
  if (side.waiting.load(std::memory_order_seq_cst) != 0) return false;
  return side.lock.TryLock();
}

// Under set->mu: gets every member ready for one round of the engine's Wait. Takes the sides of the members
// it waits on into `held`; a member whose side is busy leaves the engine (*left_out). *pending: something
// must be reported without waiting (a closed member, a peer change not reported yet). A member the engine
// refuses ends the wait with the engine's status (the caller gives the sides back).
absl::Status PrepareRoundLocked(eshm_waitset* set, HeldSides* held, bool* left_out, bool* pending) {
  for (Member& m : set->members) {
    if (m.closed) {
      if (m.in_engine) {
        // By pointer: the engine dereferences the channel only if its own Close has not run yet (then the
        // handle's eshm_close, which frees it, waits for the engine's lock to run that Close).
        (void)set->engine.Remove(m.channel);
        m.in_engine = false;
        set->index_stale = true;
      }
      *pending = true;
      continue;
    }
    if (m.peer_changed) *pending = true;
    bool read = false;
    bool write = false;
    bool busy = false;
    if ((m.interest & ESHM_WAIT_READABLE) != 0) {
      read = TryTakeForRound(m.handle->reader);
      busy = !read;
    }
    if (!busy && (m.interest & ESHM_WAIT_WRITABLE) != 0) {
      write = TryTakeForRound(m.handle->writer);
      busy = !write;
    }
    if (busy) {
      if (read) m.handle->reader.lock.Unlock();
      *left_out = true;
      if (m.in_engine) {
        (void)set->engine.Remove(m.channel);
        m.in_engine = false;
        set->index_stale = true;
        // Out of the engine its peer changes are not counted: compare the state when it comes back.
        m.seen_peer_state = static_cast<int>(m.channel->peer_state());
      }
      continue;
    }
    held->Add(m.handle, read, write);
    if (!m.in_engine) {
      if (absl::Status status = set->engine.Add(m.channel, m.interest, m.write_size); !status.ok()) {
        return absl::Status(status.code(), absl::StrFormat("member %p: %s", static_cast<void*>(m.handle),
                                                           status.message()));
      }
      m.in_engine = true;
      set->index_stale = true;
      if (static_cast<int>(m.channel->peer_state()) != m.seen_peer_state) {
        m.peer_changed = true;
        *pending = true;
      }
    }
  }
  return absl::OkStatus();
}

// Under set->mu, after the round gave its sides back: fills out[0..capacity) from the engine's report and the
// set's own (closed members first, then the engine's ready members, then peer changes not reported yet).
// When not all fit, the ready members reported least recently go first, so that every one is reported
// within a few waits. Returns how many.
std::size_t CollectLocked(eshm_waitset* set, const std::vector<eshm::WaitSet::Ready>& ready, eshm_ready* out,
                          std::size_t capacity) {
  if (set->index_stale) {
    set->index.clear();
    for (std::size_t i = 0; i < set->members.size(); ++i) {
      if (set->members[i].in_engine) set->index.emplace(set->members[i].channel, i);
    }
    set->index_stale = false;
  }
  set->report.clear();
  for (const eshm::WaitSet::Ready& r : ready) {
    const auto it = set->index.find(r.channel);
    if (it == set->index.end()) continue;  // removed (eshm_waitset_remove) during the round
    Member& m = set->members[it->second];
    if ((r.events & eshm::WaitSet::kPeerChanged) != 0) m.peer_changed = true;
    const unsigned data = r.events & (ESHM_WAIT_READABLE | ESHM_WAIT_WRITABLE);
    if (data != 0 && !m.closed) set->report.emplace_back(it->second, data);
  }
  std::size_t closed = 0;
  for (const Member& m : set->members) closed += m.closed ? 1 : 0;
  if (closed + set->report.size() > capacity) {
    std::stable_sort(set->report.begin(), set->report.end(), [set](const auto& a, const auto& b) {
      return set->members[a.first].last_reported < set->members[b.first].last_reported;
    });
  }
  const std::uint64_t this_report = ++set->reports;
  std::size_t n = 0;
  auto emit = [&](Member& m, unsigned events) {
    m.last_reported = this_report;
    if (m.closed) {
      events = ESHM_WAIT_CLOSED;
    } else if (m.peer_changed) {
      events |= ESHM_WAIT_PEER_CHANGED;
      m.peer_changed = false;
    }
    out[n].handle = m.handle;
    out[n].events = events;
    out[n].reserved0 = 0;
    ++n;
  };
  for (Member& m : set->members) {
    if (n < capacity && m.closed) emit(m, 0);
  }
  for (const auto& [i, events] : set->report) {
    if (n < capacity && !set->members[i].closed) emit(set->members[i], events);
  }
  for (Member& m : set->members) {
    if (n < capacity && !m.closed && m.peer_changed) emit(m, 0);
  }
  return n;
}

int FailWaitStatus(const char* function, const absl::Status& status) {
  // The engine's refusals of a member are its Add's: a write size the channel no longer takes
  // (InvalidArgument, MESSAGE_TOO_LARGE as for a write), or a closed channel (CLOSED).
  return FailStatus(function, ResultCodeFor(status, Operation::kWrite, eshm::ChannelRole::kMaster), status);
}

}  // namespace

int eshm_waitset_create(eshm_waitset** out) {
  return Guarded("eshm_waitset_create", [&]() -> int {
    if (out == nullptr) return Fail(ESHM_ERROR_INVALID_PARAM, "eshm_waitset_create: out is NULL");
    *out = nullptr;
    *out = new eshm_waitset();
    return ESHM_SUCCESS;
  });
}

int eshm_waitset_destroy(eshm_waitset* set) {
  if (set == nullptr) return ESHM_SUCCESS;
  return Guarded("eshm_waitset_destroy", [&]() -> int {
    constexpr const char* kFn = "eshm_waitset_destroy";
    if (int rc = CheckWaitSet(kFn, set); rc != ESHM_SUCCESS) return rc;
    if (set->waiting.load(std::memory_order_acquire)) {
      return Failf(ESHM_ERROR_INVALID_PARAM,
                   "%s: another thread is waiting on this set (eshm_waitset_wait); end that wait with "
                   "eshm_waitset_wake and destroy the set after it returned",
                   kFn);
    }
    {
      std::lock_guard<std::mutex> membership(WaitSetMembershipMutex());
      std::lock_guard<std::mutex> lock(set->mu);
      for (const Member& m : set->members) {
        if (!m.closed) UnlinkLocked(m.handle, set);
      }
      set->magic.store(0, std::memory_order_relaxed);
    }
    delete set;  // the engine leaves the channels of the members still in it
    return ESHM_SUCCESS;
  });
}

int eshm_waitset_add(eshm_waitset* set, eshm_handle* handle, uint32_t interest, size_t write_size) {
  return Guarded("eshm_waitset_add", [&]() -> int {
    constexpr const char* kFn = "eshm_waitset_add";
    if (int rc = CheckWaitSet(kFn, set); rc != ESHM_SUCCESS) return rc;
    if (int rc = CheckHandle(kFn, handle); rc != ESHM_SUCCESS) return rc;
    if (interest == 0 || (interest & ~std::uint32_t{ESHM_WAIT_READABLE | ESHM_WAIT_WRITABLE}) != 0) {
      return Failf(ESHM_ERROR_INVALID_PARAM,
                   "%s: interest is 0x%x; use ESHM_WAIT_READABLE, ESHM_WAIT_WRITABLE or both "
                   "(ESHM_WAIT_PEER_CHANGED and ESHM_WAIT_CLOSED are always reported)",
                   kFn, interest);
    }
    ObserverGuard observer(handle);
    if (observer.closing()) return FailClosedMeanwhile(kFn);
    eshm::Channel* const channel = handle->channel.get();
    if ((interest & ESHM_WAIT_WRITABLE) != 0) {
      // From stats(), which is thread-safe (see eshm_max_message_size).
      const std::uint64_t max = channel->stats().max_message_bytes;
      if (write_size > max) {
        return Failf(ESHM_ERROR_MESSAGE_TOO_LARGE,
                     "%s: write_size is %u bytes but channel '%s' takes messages of at most %u bytes, so it would "
                     "never be writable",
                     kFn, write_size, AbslView(channel->name()), max);
      }
    }
    const int peer_state = static_cast<int>(channel->peer_state());
    {
      std::lock_guard<std::mutex> membership(WaitSetMembershipMutex());
      // Under the membership mutex: an eshm_close that has not set `closing` yet will find us in wait_sets.
      if (handle->closing.load(std::memory_order_seq_cst)) return FailClosedMeanwhile(kFn);
      std::lock_guard<std::mutex> lock(set->mu);
      for (const Member& m : set->members) {
        if (m.handle != handle) continue;
        if (m.closed) {
          return Failf(ESHM_ERROR_INVALID_PARAM,
                       "%s: a closed handle at the same address (reported ESHM_WAIT_CLOSED) is still in this set; "
                       "remove it with eshm_waitset_remove first",
                       kFn);
        }
        return Failf(ESHM_ERROR_INVALID_PARAM,
                     "%s: the handle (channel '%s') is already in this set; to change what it waits for, remove it "
                     "and add it again",
                     kFn, AbslView(channel->name()));
      }
      Member m{handle, channel, interest, (interest & ESHM_WAIT_WRITABLE) != 0 ? write_size : 0, peer_state};
      set->members.push_back(m);
      handle->wait_sets.push_back(set);
      handle->wait_set_count.store(handle->wait_sets.size(), std::memory_order_seq_cst);
    }
    // A running wait starts a round that includes it.
    if (set->waiting.load(std::memory_order_seq_cst)) set->engine.Wake();
    return ESHM_SUCCESS;
  });
}

int eshm_waitset_remove(eshm_waitset* set, eshm_handle* handle) {
  return Guarded("eshm_waitset_remove", [&]() -> int {
    constexpr const char* kFn = "eshm_waitset_remove";
    if (int rc = CheckWaitSet(kFn, set); rc != ESHM_SUCCESS) return rc;
    if (handle == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: handle is NULL", kFn);
    {
      std::lock_guard<std::mutex> membership(WaitSetMembershipMutex());
      std::lock_guard<std::mutex> lock(set->mu);
      auto it = std::find_if(set->members.begin(), set->members.end(),
                             [&](const Member& m) { return m.handle == handle; });
      if (it == set->members.end()) {
        return Failf(ESHM_ERROR_NOT_FOUND, "%s: the handle is not a member of this set (never added, or removed)",
                     kFn);
      }
      if (!it->closed) UnlinkLocked(handle, set);  // not closed: eshm_close has not freed it
      if (it->in_engine) (void)set->engine.Remove(it->channel);
      set->members.erase(it);
      set->index_stale = true;
    }
    // A running wait ends its round, giving back the sides it holds (the caller may eshm_close it next).
    if (set->waiting.load(std::memory_order_seq_cst)) set->engine.Wake();
    return ESHM_SUCCESS;
  });
}

int eshm_waitset_wait(eshm_waitset* set, eshm_ready* out, size_t capacity, size_t* out_count, int timeout_ms) {
  return Guarded("eshm_waitset_wait", [&]() -> int {
    constexpr const char* kFn = "eshm_waitset_wait";
    if (out_count == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: out_count is NULL", kFn);
    *out_count = 0;
    if (int rc = CheckWaitSet(kFn, set); rc != ESHM_SUCCESS) return rc;
    if (out == nullptr) return Failf(ESHM_ERROR_INVALID_PARAM, "%s: out is NULL", kFn);
    if (capacity == 0) {
      return Failf(ESHM_ERROR_INVALID_PARAM, "%s: capacity is 0; pass an array of at least one eshm_ready", kFn);
    }
    if (int rc = CheckTimeout(kFn, timeout_ms); rc != ESHM_SUCCESS) return rc;
    // Acquire/release: the next waiter sees this one's round state (engine, members' flags) as it left it.
    if (set->waiting.exchange(true, std::memory_order_acq_rel)) {
      return Failf(ESHM_ERROR_INVALID_PARAM,
                   "%s: another thread is waiting on this set right now; a set has one waiter at a time", kFn);
    }
    struct Done {
      std::atomic<bool>& flag;
      ~Done() { flag.store(false, std::memory_order_release); }
    } done{set->waiting};

    const eshm::Deadline deadline = DeadlineFor(timeout_ms);
    HeldSides held;
    std::vector<eshm::WaitSet::Ready> ready;
    for (;;) {
      bool left_out = false;
      bool pending = false;
      {
        std::lock_guard<std::mutex> lock(set->mu);
        if (absl::Status status = PrepareRoundLocked(set, &held, &left_out, &pending); !status.ok()) {
          held.ReleaseAll();
          return FailWaitStatus(kFn, status);
        }
      }
      const eshm::Deadline round = pending    ? eshm::Deadline::Past()
                                   : left_out ? deadline.CappedAfterNs(kLeftOutPollNs)
                                              : deadline;
      const absl::Status status = set->engine.Wait(round, &ready);
      std::size_t n = 0;
      {
        std::lock_guard<std::mutex> lock(set->mu);
        held.ReleaseAll();  // first: an eshm_close may be waiting for these sides
        if (!status.ok()) return FailWaitStatus(kFn, status);
        n = CollectLocked(set, ready, out, capacity);
      }
      if (n != 0) {
        *out_count = n;
        return ESHM_SUCCESS;
      }
      if (set->wake_requested.exchange(false, std::memory_order_acq_rel)) return ESHM_SUCCESS;
      if (deadline.Expired()) return ESHM_SUCCESS;
    }
  });
}

// Async-signal-safe when it succeeds: two atomic stores and one futex system call (the engine's Wake), no
// lock, no allocation, no thread-local (eshm_last_error's storage is touched only on failure).
int eshm_waitset_wake(eshm_waitset* set) {
  if (set == nullptr) return Fail(ESHM_ERROR_INVALID_PARAM, "eshm_waitset_wake: set is NULL");
  if (set->magic.load(std::memory_order_relaxed) != eshm_waitset::kMagic) {
    return Fail(ESHM_ERROR_INVALID_PARAM,
                "eshm_waitset_wake: set is not a live eshm wait set (destroyed already, or not from "
                "eshm_waitset_create)");
  }
  set->wake_requested.store(true, std::memory_order_release);
  set->engine.Wake();
  return ESHM_SUCCESS;
}

const char* eshm_strerror(int code) {
  switch (code) {
    case ESHM_SUCCESS:
      return "success";
    case ESHM_ERROR_INVALID_PARAM:
      return "invalid parameter";
    case ESHM_ERROR_SHM_CREATE:
      return "failed to create the shared-memory segment";
    case ESHM_ERROR_SHM_ATTACH:
      return "failed to open or map the shared-memory segment";
    case ESHM_ERROR_SHM_DETACH:
      return "failed to detach the shared-memory segment (reserved)";
    case ESHM_ERROR_SHM_DELETE:
      return "failed to remove the shared-memory segment (reserved)";
    case ESHM_ERROR_MUTEX_INIT:
      return "mutex initialization failed (reserved)";
    case ESHM_ERROR_NOT_INITIALIZED:
      return "struct not initialized (struct_size is 0)";
    case ESHM_ERROR_BUFFER_TOO_SMALL:
      return "buffer too small for the next message (it stays queued)";
    case ESHM_ERROR_NO_DATA:
      return "no data available";
    case ESHM_ERROR_TIMEOUT:
      return "timed out";
    case ESHM_ERROR_MASTER_STALE:
      return "the master is gone (exited or unresponsive)";
    case ESHM_ERROR_SLAVE_STALE:
      return "the slave is gone (exited, unresponsive or not attached)";
    case ESHM_ERROR_ROLE_TAKEN:
      return "the role is held by another live process";
    case ESHM_ERROR_MESSAGE_TOO_LARGE:
      return "message larger than the channel's maximum message size";
    case ESHM_ERROR_RING_FULL:
      return "the ring is full";
    case ESHM_ERROR_CORRUPT:
      return "the shared memory is corrupt";
    case ESHM_ERROR_CLOSED:
      return "the channel is closed";
    case ESHM_ERROR_NOT_FOUND:
      return "no such channel (the master has not created it)";
    case ESHM_ERROR_PERMISSION:
      return "permission denied";
    case ESHM_ERROR_NO_SPACE:
      return "not enough shared memory";
    case ESHM_ERROR_INCOMPATIBLE:
      return "not a compatible eshm segment";
    case ESHM_ERROR_INTERNAL:
      return "internal error";
    default:
      return "unknown error code";
  }
}

const char* eshm_last_error(void) {
  const LastError& e = t_last_error;
  return e.fixed != nullptr ? e.fixed : e.text.c_str();
}

const char* eshm_version(void) { return ESHM_VERSION_STRING; }
