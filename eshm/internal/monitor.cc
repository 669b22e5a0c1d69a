#include "eshm/internal/monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>

#include "eshm/deadline.h"
#include "eshm/internal/proc_status.h"
#include "eshm/segment_name.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace eshm::internal {
namespace {

// epoll tags: the two fixed descriptors, and pidfds tagged with their pid.
constexpr std::uint64_t kEventTag = 0;
constexpr std::uint64_t kInotifyTag = 1;
constexpr std::uint64_t kPidTagBit = std::uint64_t{1} << 32;

// When a client wants its next tick at `next`, run it at the last multiple of its interval (next - now) at
// or before then, which is always after `now`: clients with the same interval tick together, one batch
// (one wake-up of the thread) per period, and none ticks later than it asked. A client ticked out of step
// (by an event, or when it was added) ticks once early and is in step again.
std::int64_t Batched(std::int64_t now, std::int64_t next) {
  const std::int64_t grid = std::max<std::int64_t>(next - now, 1);
  return next - next % grid;
}

// How many ticks ahead the lines a tick will miss on are prefetched: far enough for a miss (a line another
// core wrote) to complete during the ticks before it, near enough that the lines are still there.
constexpr std::size_t kPrefetchAhead = 4;

constexpr unsigned kNameEvents = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO;

}  // namespace

pid_t CurrentThreadId() {
  thread_local const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  return tid;
}

void TouchForMonitors(int fd) {
  // Setting the times to now needs write access only (not ownership), which every side has.
  (void)futimens(fd, nullptr);
}

void TouchNameForMonitors(const char* path) { (void)utimensat(AT_FDCWD, path, nullptr, 0); }

Monitor& Monitor::Process() {
  static Monitor* const monitor = [] {
    auto* m = new Monitor();
    // A forked child has none of the parent's threads and must not share its epoll set (an epoll instance
    // is shared across fork): it starts with an empty monitor of its own. The locks are held across fork
    // so the child never inherits one taken.
    pthread_atfork(
        [] {
          Monitor& p = Process();
          p.lifecycle_mu_.lock();
          p.mu_.lock();
        },
        [] {
          Monitor& p = Process();
          p.mu_.unlock();
          p.lifecycle_mu_.unlock();
        },
        [] {
          Monitor& p = Process();
          p.mu_.unlock();
          p.lifecycle_mu_.unlock();
          p.ResetAfterFork();
        });
    return m;
  }();
  return *monitor;
}

Monitor::Monitor() { OpenDescriptors(); }

void Monitor::OpenDescriptors() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ >= 0 && event_fd_ >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kEventTag;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev);
  }
  inotify_fd_ = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (inotify_fd_ >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kInotifyTag;
    if (epoll_fd_ < 0 || inotify_add_watch(inotify_fd_, kSegmentDirectory, kNameEvents | IN_OPEN | IN_CLOSE | IN_ATTRIB) < 0 ||
        epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, inotify_fd_, &ev) != 0) {
      close(inotify_fd_);
      inotify_fd_ = -1;
    }
  }
}

void Monitor::ResetAfterFork() {
  // thread_ names a thread that does not exist here: forget it without joining.
  if (thread_.joinable()) thread_.detach();
  for (auto& [pid, watch] : pids_) close(watch.fd);
  pids_.clear();
  for (auto& [key, watch] : threads_) close(watch.fd);
  threads_.clear();
  keep_moving_.clear();
  entries_.clear();
  schedule_.clear();
  batch_.clear();
  names_.clear();
  stop_ = false;
  for (int* fd : {&epoll_fd_, &event_fd_, &inotify_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
  OpenDescriptors();
}

void Monitor::WakeThread() {
  const std::uint64_t one = 1;
  // Nonblocking: a full counter already means "wake up".
  (void)!write(event_fd_, &one, sizeof(one));
}

void Monitor::Add(MonitorClient* client, std::string_view file_name) {
  std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& entry = entries_[client];
    entry.client = client;
    entry.file_name = std::string(file_name);
    entry.events = kNameChanged;  // the first tick looks at the name
    Schedule(entry, MonotonicNowNs());
    names_.emplace(entry.file_name, client);
  }
  if (!thread_.joinable()) {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
    thread_ = std::thread([this] { Run(); });
    // Named by its creator, so the name is there by the time Add returns (what top -H and /proc show).
    pthread_setname_np(thread_.native_handle(), kMonitorThreadName);
  } else {
    WakeThread();
  }
}

void Monitor::Remove(MonitorClient* client) {
  std::lock_guard<std::mutex> lifecycle(lifecycle_mu_);
  bool last = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = entries_.find(client);
    if (it == entries_.end()) return;  // never added, or added before a fork
    tick_done_.wait(lock, [&] { return !it->second.running; });  // its batch may still run others' ticks
    UnwatchPidLocked(client, it->second);
    UnwatchThreadLocked(client, it->second);
    SetKeepMovingLocked(it->second, 0);
    if (it->second.scheduled) Unschedule(it->second);
    auto [begin, end] = names_.equal_range(it->second.file_name);
    for (auto n = begin; n != end; ++n) {
      if (n->second == client) {
        names_.erase(n);
        break;
      }
    }
    entries_.erase(it);
    last = entries_.empty();
    if (last) stop_ = true;
  }
  if (last && thread_.joinable()) {
    WakeThread();
    thread_.join();
  }
}

void Monitor::Schedule(Entry& entry, std::int64_t due_ns) {
  std::vector<Entry*>& due = schedule_[due_ns];
  entry.due = due_ns;
  entry.index = due.size();
  entry.scheduled = true;
  due.push_back(&entry);
}

void Monitor::Unschedule(Entry& entry) {
  auto bucket = schedule_.find(entry.due);
  std::vector<Entry*>& due = bucket->second;
  // Swap-remove: the last entry takes this one's place.
  due[entry.index] = due.back();
  due[entry.index]->index = entry.index;
  due.pop_back();
  if (due.empty()) schedule_.erase(bucket);
  entry.scheduled = false;
}

void Monitor::Reschedule(Entry& entry, std::int64_t due_ns) {
  // Only the monitor thread reschedules (for events), and never while a batch runs: a client is scheduled.
  if (!entry.scheduled || entry.due <= due_ns) return;  // already due by then
  Unschedule(entry);
  Schedule(entry, due_ns);
}

bool Monitor::WatchPid(MonitorClient* client, pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(client);
  if (it == entries_.end() || pid <= 0) return false;
  Entry& entry = it->second;
  if (entry.pid == pid) return true;
  UnwatchPidLocked(client, entry);
  auto watch = pids_.find(pid);
  if (watch == pids_.end()) {
    const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return false;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kPidTagBit | static_cast<std::uint32_t>(pid);
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      return false;
    }
    watch = pids_.emplace(pid, PidWatch{fd, {}}).first;
  }
  watch->second.clients.push_back(client);
  entry.pid = pid;
  return true;
}

void Monitor::UnwatchPid(MonitorClient* client) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(client);
  if (it != entries_.end()) UnwatchPidLocked(client, it->second);
}

void Monitor::UnwatchPidLocked(MonitorClient* client, Entry& entry) {
  if (entry.pid == 0) return;
  auto watch = pids_.find(entry.pid);
  entry.pid = 0;
  if (watch == pids_.end()) return;
  std::vector<MonitorClient*>& clients = watch->second.clients;
  clients.erase(std::remove(clients.begin(), clients.end(), client), clients.end());
  if (clients.empty()) {
    close(watch->second.fd);  // also leaves the epoll set
    pids_.erase(watch);
  }
}

bool Monitor::WatchThread(MonitorClient* client, pid_t pid, pid_t tid, std::int64_t still_after_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(client);
  if (it == entries_.end() || pid <= 0 || tid <= 0 || still_after_ns <= 0) return false;
  Entry& entry = it->second;
  UnwatchThreadLocked(client, entry);
  const std::pair<pid_t, pid_t> key{pid, tid};
  auto watch = threads_.find(key);
  const std::int64_t now = MonotonicNowNs();
  if (watch == threads_.end()) {
    const int fd = OpenThreadStatus(pid, tid);
    if (fd < 0) return false;
    ThreadWatch fresh;
    fresh.fd = fd;
    if (!ReadVoluntarySwitches(fd, &fresh.switches)) {
      close(fd);
      return false;
    }
    // Moving as far as anyone knows: seen now, and the count says nothing more until it changes.
    fresh.progress = ThreadProgress{true, false, now};
    fresh.next_read_ns = INT64_MAX;
    watch = threads_.emplace(key, std::move(fresh)).first;
  } else if (!watch->second.progress.readable) {
    return false;
  }
  watch->second.clients.emplace_back(client, still_after_ns);
  watch->second.next_read_ns = std::min(watch->second.next_read_ns, now + std::max<std::int64_t>(still_after_ns / 4, 1'000'000));
  entry.thread = key;
  WakeThread();  // its next read may be due before the thread's current sleep ends
  return true;
}

void Monitor::UnwatchThread(MonitorClient* client) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(client);
  if (it != entries_.end()) UnwatchThreadLocked(client, it->second);
}

void Monitor::UnwatchThreadLocked(MonitorClient* client, Entry& entry) {
  if (entry.thread.first == 0) return;
  auto watch = threads_.find(entry.thread);
  entry.thread = {0, 0};
  if (watch == threads_.end()) return;
  auto& clients = watch->second.clients;
  clients.erase(std::remove_if(clients.begin(), clients.end(), [&](const auto& c) { return c.first == client; }),
                clients.end());
  if (clients.empty()) {
    close(watch->second.fd);
    threads_.erase(watch);
  }
}

ThreadProgress Monitor::ThreadProgressOf(MonitorClient* client) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(client);
  if (it == entries_.end() || it->second.thread.first == 0) return {};
  auto watch = threads_.find(it->second.thread);
  return watch == threads_.end() ? ThreadProgress{} : watch->second.progress;
}

void Monitor::KeepMoving(MonitorClient* client, std::int64_t interval_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(client);
  if (it != entries_.end()) SetKeepMovingLocked(it->second, interval_ns);
}

void Monitor::SetKeepMovingLocked(Entry& entry, std::int64_t interval_ns) {
  if (entry.keep_moving_ns == interval_ns) return;
  if (entry.keep_moving_ns != 0) keep_moving_.erase(keep_moving_.find(entry.keep_moving_ns));
  entry.keep_moving_ns = interval_ns;
  if (interval_ns != 0) keep_moving_.insert(interval_ns);
}

void Monitor::ReadThreads(std::int64_t now) {
  for (auto& [key, watch] : threads_) {
    if (watch.next_read_ns > now || !watch.progress.readable) continue;
    std::int64_t still_after = INT64_MAX;
    for (const auto& [client, ns] : watch.clients) still_after = std::min(still_after, ns);
    watch.next_read_ns = now + std::max<std::int64_t>(still_after / 4, 1'000'000);
    const ThreadProgress before = watch.progress;
    std::uint64_t switches = 0;
    if (!ReadVoluntarySwitches(watch.fd, &switches)) {
      watch.progress.readable = false;
    } else if (switches != watch.switches) {
      watch.switches = switches;
      watch.progress.last_move_ns = now;
      watch.progress.still = false;
    } else if (now - watch.progress.last_move_ns > still_after) {
      watch.progress.still = true;
    }
    // A still thread is read every millisecond, so that its process's return is seen at once (as a channel
    // looks at an unresponsive peer's heartbeat every millisecond).
    if (watch.progress.still) watch.next_read_ns = now + 1'000'000;
    if (watch.progress.readable == before.readable && watch.progress.still == before.still) continue;
    for (const auto& [client, ns] : watch.clients) {
      auto it = entries_.find(client);
      if (it == entries_.end()) continue;
      it->second.events |= kThreadChanged;
      Reschedule(it->second, now);
    }
  }
}

std::int64_t Monitor::NextThreadRead() const {
  std::int64_t next = INT64_MAX;
  for (const auto& [key, watch] : threads_) {
    if (watch.progress.readable) next = std::min(next, watch.next_read_ns);
  }
  return next;
}

void Monitor::HandlePidExit(pid_t pid) {
  auto watch = pids_.find(pid);
  if (watch == pids_.end()) return;
  const std::int64_t now = MonotonicNowNs();
  for (MonitorClient* client : watch->second.clients) {
    auto it = entries_.find(client);
    if (it == entries_.end()) continue;
    it->second.pid = 0;  // an exited process stays readable: watch it no more
    it->second.events |= kWatchedPidExited;
    Reschedule(it->second, now);
  }
  close(watch->second.fd);
  pids_.erase(watch);
}

void Monitor::HandleInotify() {
  alignas(inotify_event) char buffer[16 * 1024];
  const std::int64_t now = MonotonicNowNs();
  for (;;) {
    const ssize_t n = read(inotify_fd_, buffer, sizeof(buffer));
    if (n <= 0) return;
    for (ssize_t offset = 0; offset < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
      offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      if ((event->mask & IN_Q_OVERFLOW) != 0) {
        // Events were lost: every client looks at its name.
        for (auto& [client, entry] : entries_) {
          entry.events |= kNameChanged | kFileOpened | kFileClosed | kFileTouched;
          Reschedule(entry, now);
        }
        continue;
      }
      if (event->len == 0) continue;
      const std::string_view name(event->name, strnlen(event->name, event->len));
      const unsigned what = (event->mask & kNameEvents) != 0 ? kNameChanged
                            : (event->mask & IN_OPEN) != 0   ? kFileOpened
                            : (event->mask & IN_ATTRIB) != 0 ? kFileTouched
                                                             : kFileClosed;
      auto [begin, end] = names_.equal_range(std::string(name));
      for (auto match = begin; match != end; ++match) {
        Entry& entry = entries_[match->second];
        entry.events |= what;
        Reschedule(entry, now);
      }
    }
  }
}

void Monitor::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const std::int64_t now = MonotonicNowNs();
    ReadThreads(now);  // may make clients due now
    // Every tick due now, earliest time first, a time's clients in one batch. An entry stays valid while its
    // batch runs (Remove waits for it).
    while (!stop_ && !schedule_.empty() && schedule_.begin()->first <= now) {
      batch_.swap(schedule_.begin()->second);
      schedule_.erase(schedule_.begin());
      for (Entry* entry : batch_) {
        entry->scheduled = false;
        entry->running = true;
        entry->ticking_events = std::exchange(entry->events, 0);
      }
      lock.unlock();
      // The fields written here are the monitor thread's own while `running` (mu_ hands them over).
      const std::size_t n = batch_.size();
      for (std::size_t i = 0; i < n; ++i) {
        if (i + kPrefetchAhead < n) {
          const TickHints& ahead = batch_[i + kPrefetchAhead]->hints;
          if (ahead.write_line != nullptr) __builtin_prefetch(ahead.write_line, 1);
          if (ahead.read_line != nullptr) __builtin_prefetch(ahead.read_line, 0);
        }
        Entry* entry = batch_[i];
        entry->next_ns = entry->client->OnTick(now, entry->ticking_events, entry->hints);
      }
      lock.lock();
      bool again = false;  // events came while a tick ran: it is due at once
      for (Entry* entry : batch_) {
        entry->running = false;
        again = again || entry->events != 0;
        const std::int64_t due = entry->events != 0 ? now : Batched(now, std::max(entry->next_ns, now + 1));
        Schedule(*entry, due);
      }
      batch_.clear();
      tick_done_.notify_all();
      if (again) break;  // look at the clock again before running one a second time
    }
    if (stop_) break;
    int timeout_ms = -1;
    std::int64_t wake_ns = std::min(schedule_.empty() ? INT64_MAX : schedule_.begin()->first, NextThreadRead());
    // A peer that watches this thread needs it to sleep and wake at least at its pace.
    if (!keep_moving_.empty()) wake_ns = std::min(wake_ns, MonotonicNowNs() + *keep_moving_.begin());
    if (wake_ns != INT64_MAX) {
      const std::int64_t wait_ns = wake_ns - MonotonicNowNs();
      timeout_ms = wait_ns <= 0 ? 0 : static_cast<int>(std::min<std::int64_t>((wait_ns + 999'999) / 1'000'000, INT_MAX));
    }
    lock.unlock();
    epoll_event events[64];
    const int n = epoll_wait(epoll_fd_, events, 64, timeout_ms);
    lock.lock();
    for (int i = 0; i < n; ++i) {
      const std::uint64_t tag = events[i].data.u64;
      if (tag == kEventTag) {
        std::uint64_t count;
        (void)!read(event_fd_, &count, sizeof(count));
      } else if (tag == kInotifyTag) {
        HandleInotify();
      } else if ((tag & kPidTagBit) != 0) {
        HandlePidExit(static_cast<pid_t>(tag & 0xffffffffu));
      }
    }
  }
}

}  // namespace eshm::internal
