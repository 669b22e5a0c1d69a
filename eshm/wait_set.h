// Waiting on many channels at once: until any is readable (a message is queued), writable (a message of a
// given size fits), or its peer changed state.
//
// While messages flow, Wait polls the members' rings and makes no system call. When all are idle it
// arms every member's ring as a single read or write does before it sleeps (ring.h, "Memory ordering":
// the writer or reader on the other side then wakes it) and sleeps once, on all the words together
// (FUTEX_WAITV, Linux 5.16+). A peer's death or arrival wakes it too (the monitor wakes the rings' sleepers
// when a peer changes state). Every ready member is reported by each Wait, listed from a rotating start so
// a busy member never hides the others.
//
// Falls short: one FUTEX_WAITV takes at most 128 words (one is the set's own). A larger set sleeps on the
// members that were readable or writable most recently and looks at the others every millisecond (so a
// message on a member that has been quiet longer than 127 others waits up to a millisecond more), and so
// does every set on a kernel without FUTEX_WAITV: correct, but an idle set of that size is not free.
//
// Threading. Add, Remove and Wake may be called from any thread, also while Wait runs (they end its sleep
// so it looks again). Wait runs on one thread at a time (a second concurrent Wait fails with
// FailedPrecondition), and that thread must be the one using the read side of the members it waits to
// read from, and the write side of those it waits to write to (it looks at their ring ends). A member
// closed meanwhile (Close, or its destruction) leaves the set's sleep at once and is reported kClosed until
// it is removed; the set never touches it again. A member shut down (Shutdown, on its way to Close) is
// reported kClosed too.
#ifndef ESHM_WAIT_SET_H_
#define ESHM_WAIT_SET_H_

#include "eshm/internal/require_cxx20.h"
#if ESHM_CXX20

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "eshm/deadline.h"
#include "eshm/futex.h"
#include "eshm/ring.h"
#include "eshm/wait_strategy.h"

namespace eshm {

class Channel;

class WaitSet {
 public:
  enum Event : unsigned {
    kReadable = 1u << 0,     // a message is queued (or the ring is corrupt or cut: a read reports it)
    kWritable = 1u << 1,     // a message of the member's write size fits now
    kPeerChanged = 1u << 2,  // the peer's state changed since this set last reported it: see peer_state()
    kClosed = 1u << 3,       // closed (the pointer may no longer be valid) or shut down: remove it
  };
  struct Ready {
    Channel* channel;
    unsigned events;
  };

  // `strategy`: how Wait polls before it sleeps (spin, then yield, then sleep).
  explicit WaitSet(WaitStrategy strategy = WaitStrategy::Adaptive());
  WaitSet(const WaitSet&) = delete;
  WaitSet& operator=(const WaitSet&) = delete;
  // Leaves every member. Must not run while Wait does.
  ~WaitSet();

  // Adds `channel`, waiting for what `interest` says (kReadable and/or kWritable; kPeerChanged and kClosed
  // are always reported). `write_size`: with kWritable, the size of message that must fit. InvalidArgument
  // for an empty interest or a write size the channel can never take, AlreadyExists if it is a member,
  // FailedPrecondition if it is closed.
  absl::Status Add(Channel* channel, unsigned interest, std::size_t write_size = 1);
  // NotFound if it is not a member. A closed member is removed by its pointer, never dereferenced.
  absl::Status Remove(const Channel* channel);
  std::size_t size();

  // Fills `ready` (cleared first) with every member that is ready, waiting until at least one is, until
  // `deadline` (OK, `ready` empty), or until Wake() (OK, `ready` possibly empty). `check` runs every few
  // microseconds while polling and at least every 10 ms while asleep; its error ends the wait (Python's
  // KeyboardInterrupt). FailedPrecondition if another thread is in Wait.
  absl::Status Wait(Deadline deadline, std::vector<Ready>* ready, WaitCheck check);
  absl::Status Wait(Deadline deadline, std::vector<Ready>* ready);
  // Ends the Wait in progress (or the next one) early. Any thread.
  void Wake();

 private:
  friend class Channel;
  struct Entry {
    Channel* channel;
    unsigned interest;
    std::size_t write_size;
    std::uint32_t peer_event;  // as last reported
    std::uint64_t last_ready = 0;  // the report (reports_) that last found it readable or writable
    bool closed = false;
    bool read_armed = false;
    bool write_armed = false;
  };

  // A member is closing: never touch it again, report it closed. Called by Channel::Close.
  static void ChannelClosing(Channel* channel);
  // Under mu_: appends the ready members, from a rotating start.
  void CollectLocked(std::vector<Ready>* ready);
  // Under mu_: arms every member's ring for a sleep; returns whether a heavy fence must precede the last look.
  bool ArmLocked(std::vector<FutexWaiter>* words);
  void EndSleepsLocked(bool slept);
  void Poke();

  const WaitStrategy strategy_;
  std::mutex mu_;
  std::vector<Entry> entries_;  // guarded by mu_
  std::size_t first_ = 0;       // guarded by mu_: where the next report starts
  std::uint64_t reports_ = 0;   // guarded by mu_: CollectLocked calls
  std::vector<std::size_t> arm_order_;  // guarded by mu_: scratch for ArmLocked
  bool all_armed_ = true;               // guarded by mu_: the last ArmLocked armed every member
  // Bumped (and woken) by Wake, Add, Remove and a member's Close: a sleeping Wait looks again.
  std::atomic<std::uint32_t> wake_word_{0};
  std::atomic<bool> wake_requested_{false};  // Wake(): the current or next Wait returns
  std::atomic<bool> waiting_{false};
};

}  // namespace eshm

#endif  // ESHM_CXX20
#endif  // ESHM_WAIT_SET_H_
