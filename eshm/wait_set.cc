#include "eshm/wait_set.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "eshm/channel.h"
#include "eshm/internal/asymmetric_fence.h"

namespace eshm {
namespace {

// Guards every set's membership and every channel's list of sets, so that a channel closing and a set
// being destroyed never race. Taken before a set's own mutex.
std::mutex& MembershipMutex() {
  static std::mutex* const mu = new std::mutex();
  return *mu;
}

// Polls between looks at the deadline and the check, as ring waits do.
constexpr std::uint32_t kPollsPerCheck = 64;
// How long a sleep lasts when some members cannot be slept on (more words than one FUTEX_WAITV takes, or a
// kernel without it): they are looked at this often.
constexpr std::int64_t kPolledMemberSliceNs = 1'000'000;

absl::Status NoCheck() { return absl::OkStatus(); }

}  // namespace

WaitSet::WaitSet(WaitStrategy strategy) : strategy_(strategy) {}

WaitSet::~WaitSet() {
  std::lock_guard<std::mutex> membership(MembershipMutex());
  std::lock_guard<std::mutex> lock(mu_);
  for (const Entry& e : entries_) {
    if (e.closed) continue;
    std::vector<WaitSet*>& sets = e.channel->wait_sets_;
    sets.erase(std::remove(sets.begin(), sets.end(), this), sets.end());
  }
}

absl::Status WaitSet::Add(Channel* channel, unsigned interest, std::size_t write_size) {
  if (channel == nullptr) return absl::InvalidArgumentError("WaitSet::Add: the channel is null");
  if (interest == 0 || (interest & ~(kReadable | kWritable)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "WaitSet::Add: interest is 0x%x; use kReadable, kWritable or both (peer changes and closing are always "
        "reported)",
        interest));
  }
  if ((interest & kWritable) != 0 && write_size > channel->max_message_bytes()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "WaitSet::Add: channel '%s' never takes a %d-byte message (its maximum is %d), so it would never be "
        "writable",
        channel->name(), write_size, channel->max_message_bytes()));
  }
  {
    std::lock_guard<std::mutex> membership(MembershipMutex());
    if (channel->closed_) {
      return absl::FailedPreconditionError(
          absl::StrFormat("WaitSet::Add: channel '%s' is closed", channel->name()));
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (const Entry& e : entries_) {
      if (e.channel == channel) {
        return absl::AlreadyExistsError(absl::StrFormat(
            "WaitSet::Add: channel '%s' is already in this set%s", channel->name(),
            e.closed ? " (closed; remove it first)" : ": change what it waits for with Remove and Add"));
      }
    }
    entries_.push_back(Entry{channel, interest, write_size,
                             channel->peer_event_.load(std::memory_order_acquire)});
    channel->wait_sets_.push_back(this);
  }
  Poke();
  return absl::OkStatus();
}

absl::Status WaitSet::Remove(const Channel* channel) {
  {
    std::lock_guard<std::mutex> membership(MembershipMutex());
    std::lock_guard<std::mutex> lock(mu_);
    auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.channel == channel; });
    if (it == entries_.end()) return absl::NotFoundError("WaitSet::Remove: the channel is not in this set");
    if (!it->closed) {
      // Its ring ends belong to the waiting thread: a sleep flag armed for us stays raised, and costs its
      // peer one wake-up call at most.
      std::vector<WaitSet*>& sets = it->channel->wait_sets_;
      sets.erase(std::remove(sets.begin(), sets.end(), this), sets.end());
    }
    entries_.erase(it);
  }
  Poke();
  return absl::OkStatus();
}

std::size_t WaitSet::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

void WaitSet::ChannelClosing(Channel* channel) {
  std::lock_guard<std::mutex> membership(MembershipMutex());
  for (WaitSet* set : channel->wait_sets_) {
    {
      std::lock_guard<std::mutex> lock(set->mu_);
      for (Entry& e : set->entries_) {
        if (e.channel == channel) e.closed = true;  // its raised sleep flags stay: a harmless extra wake
      }
    }
    set->Poke();
  }
  channel->wait_sets_.clear();
}

void WaitSet::Wake() {
  wake_requested_.store(true, std::memory_order_release);
  Poke();
}

void WaitSet::Poke() {
  // Release: a Wait that sees the new value sees the membership change that came before it.
  wake_word_.fetch_add(1, std::memory_order_release);
  FutexWakeAll(&wake_word_);
}

void WaitSet::CollectLocked(std::vector<Ready>* ready) {
  ++reports_;
  const std::size_t n = entries_.size();
  for (std::size_t k = 0; k < n; ++k) {
    Entry& e = entries_[(first_ + k) % n];
    unsigned events = 0;
    // Acquire: pairs with Shutdown's release (a member being closed on another thread).
    if (e.closed || e.channel->stop_.load(std::memory_order_acquire)) {
      events = kClosed;
    } else {
      Channel& ch = *e.channel;
      if ((e.interest & kReadable) != 0 && ch.ReadReady()) events |= kReadable;
      if ((e.interest & kWritable) != 0 && ch.WriteReady(e.write_size)) events |= kWritable;
      // Acquire: pairs with the monitor's release when it changes the peer state.
      const std::uint32_t peer_event = ch.peer_event_.load(std::memory_order_acquire);
      if (peer_event != e.peer_event) {
        e.peer_event = peer_event;
        events |= kPeerChanged;
      }
    }
    if (events != 0) ready->push_back(Ready{e.channel, events});
    // Recency of data (not of peer changes, which a flapping peer could make frequent) decides which
    // members a sleep arms when not all fit.
    if ((events & (kReadable | kWritable)) != 0) e.last_ready = reports_;
  }
  if (n != 0) first_ = (first_ + 1) % n;
}

bool WaitSet::ArmLocked(std::vector<FutexWaiter>* words) {
  // The members ready most recently first, as many as one kernel sleep takes; the rest stay unarmed (their
  // writers and readers then make no wake-up calls for us) and are looked at when the sleep slice ends.
  arm_order_.resize(entries_.size());
  for (std::size_t i = 0; i < entries_.size(); ++i) arm_order_[i] = i;
  if (entries_.size() * 2 + words->size() > kMaxFutexWaiters) {
    std::stable_sort(arm_order_.begin(), arm_order_.end(), [&](std::size_t a, std::size_t b) {
      return entries_[a].last_ready > entries_[b].last_ready;
    });
  }
  bool heavy = false;
  for (const std::size_t i : arm_order_) {
    Entry& e = entries_[i];
    if (e.closed) continue;
    const std::size_t needed = ((e.interest & kReadable) != 0 ? 1 : 0) + ((e.interest & kWritable) != 0 ? 1 : 0);
    if (words->size() + needed > kMaxFutexWaiters) {
      all_armed_ = false;
      continue;
    }
    Channel& ch = *e.channel;
    if ((e.interest & kReadable) != 0) {
      const ArmedSleep arm = ch.reader_.attachment->consumer.ArmSleep();
      e.read_armed = true;
      heavy |= arm.heavy;
      words->push_back(FutexWaiter{arm.word, arm.seen});
    }
    if ((e.interest & kWritable) != 0) {
      const ArmedSleep arm = ch.writer_.attachment->producer.ArmSleep(e.write_size);
      e.write_armed = true;
      heavy |= arm.heavy;
      words->push_back(FutexWaiter{arm.word, arm.seen});
    }
  }
  return heavy;
}

void WaitSet::EndSleepsLocked(bool slept) {
  for (Entry& e : entries_) {
    if (e.closed) continue;
    if (e.read_armed) e.channel->reader_.attachment->consumer.EndSleep(slept);
    if (e.write_armed) e.channel->writer_.attachment->producer.EndSleep(slept);
    e.read_armed = e.write_armed = false;
  }
}

absl::Status WaitSet::Wait(Deadline deadline, std::vector<Ready>* ready) { return Wait(deadline, ready, NoCheck); }

absl::Status WaitSet::Wait(Deadline deadline, std::vector<Ready>* ready, WaitCheck check) {
  ready->clear();
  if (waiting_.exchange(true, std::memory_order_acquire)) {
    return absl::FailedPreconditionError(
        "WaitSet::Wait: another thread is waiting on this set; a set has one waiter at a time");
  }
  struct Done {
    std::atomic<bool>& flag;
    ~Done() { flag.store(false, std::memory_order_release); }
  } done{waiting_};

  Backoff backoff(strategy_);
  std::vector<FutexWaiter> words;
  for (std::uint32_t polls = 1;; ++polls) {
    const std::uint32_t seen = wake_word_.load(std::memory_order_acquire);
    {
      std::lock_guard<std::mutex> lock(mu_);
      CollectLocked(ready);
    }
    if (!ready->empty() || wake_requested_.exchange(false, std::memory_order_acq_rel)) return absl::OkStatus();
    deadline = deadline.Started();  // once, at the first wait
    if (backoff.Pause()) {
      if (polls % kPollsPerCheck != 0) continue;
      if (deadline.Expired()) return absl::OkStatus();
      if (absl::Status status = check(); !status.ok()) return status;
      continue;
    }
    if (deadline.Expired()) return absl::OkStatus();

    // Asleep: arm every member, fence once for all, look once more, then sleep on all the words.
    words.clear();
    words.push_back(FutexWaiter{&wake_word_, seen});
    std::unique_lock<std::mutex> lock(mu_);
    all_armed_ = true;
    if (ArmLocked(&words)) internal::HeavyFence();
    CollectLocked(ready);
    if (!ready->empty()) {
      EndSleepsLocked(false);
      return absl::OkStatus();
    }
    lock.unlock();  // Add, Remove and Close may run now; they poke wake_word_
    FutexResult result = FutexWaitAny(words, deadline.CappedAfterNs(all_armed_ ? kWaitCheckIntervalNs
                                                                               : kPolledMemberSliceNs));
    if (result == FutexResult::kNotSupported) {
      result = FutexWait(&wake_word_, seen, deadline.CappedAfterNs(kPolledMemberSliceNs));
    }
    lock.lock();
    EndSleepsLocked(result != FutexResult::kValueChanged);
    lock.unlock();
    if (absl::Status status = check(); !status.ok()) return status;
  }
}

}  // namespace eshm
