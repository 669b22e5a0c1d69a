// One liveness thread per process, shared by every channel that asks for one.
//
// Each open channel must beat its heartbeat and look at its peer a few times per stale threshold. A thread
// per channel waking every millisecond made idle processes burn whole cores (1,000 channels: both cores).
// Here one thread serves them all, and sleeps in between on what the kernel can tell it:
//  * a timer: every client says when it next wants a tick, and the tick is moved earlier onto a grid of its
//    interval, so channels with the same interval tick in one batch per period instead of one wake-up each;
//  * pidfds (one per distinct peer process, whatever the number of channels to it): a peer's exit wakes
//    its channels at once, so death is seen without polling the role lock;
//  * inotify on the segment directory: a name created, removed or renamed (a master re-creating its
//    segment, a new master for a slave to follow) or a segment file opened (a peer arriving) wakes the
//    channels of that name, and so does a side's announcement (TouchForMonitors) and a close of it (a peer exiting closes its descriptor, which catches
//    a death the pidfd cannot: a peer whose pid means nothing here).
//  * the peers' monitor threads (WatchThread): one read of a thread's voluntary context switches per
//    quarter threshold tells whether its process is still scheduled, for all the channels to it, so that
//    neither side beats in every segment (RoleControl::monitor_tid in layout.h; Channel::UpdateKernelBeat).
// Everything the kernel says is a hint: the client re-checks the authoritative evidence (its role lock,
// the file at its name) when woken, and falls back to polling where a hint is unavailable (no pidfd, a peer
// in another pid namespace, no inotify).
//
// The thread exists only while there are clients: the last Remove joins it, so a process that closed all
// its channels is single-threaded again (and may fork safely). In a forked child the monitor starts empty.
#ifndef ESHM_INTERNAL_MONITOR_H_
#define ESHM_INTERNAL_MONITOR_H_

#include <sys/types.h>

#include <climits>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace eshm::internal {

// The monitor thread's name (/proc/PID/task/TID/comm, top -H).
inline constexpr char kMonitorThreadName[] = "eshm-monitor";

// Why a client is ticked early; OnTick receives the events gathered since its last tick.
enum MonitorEvent : unsigned {
  kWatchedPidExited = 1u << 0,  // the process WatchPid named has exited
  kNameChanged = 1u << 1,       // the client's file name was created, removed or renamed
  kFileOpened = 1u << 2,        // someone opened a file under the client's name
  kFileClosed = 1u << 3,        // someone closed one (a process exiting closes its descriptors)
  kFileTouched = 1u << 4,       // its times were set: a peer announcing its arrival or departure
  kThreadChanged = 1u << 5,     // the thread WatchThread named went still, moved again, or became unreadable
};

// What the monitor last learned about a thread WatchThread named.
struct ThreadProgress {
  bool readable = false;           // false: the thread is gone or its status cannot be read
  bool still = false;              // it has not slept (moved) for the stale time the client gave
  std::int64_t last_move_ns = 0;   // when its count of voluntary context switches was last seen to grow
};

// The id of the calling thread (gettid), cached per thread.
pid_t CurrentThreadId();

// Makes the monitors watching `fd`'s file look now (an inotify IN_ATTRIB on its name): a side that takes or
// leaves its role calls it, so a peer's monitor need not poll to notice. Needs only write access.
void TouchForMonitors(int fd);
// The same through the file's name. For a segment its master created unnamed and then linked (O_TMPFILE),
// inotify reports a touch through the descriptor under the unnamed file's own name ("#<inode>"), which no
// monitor watches; a touch through the name reaches them. Needs only write access; a hint like the other.
void TouchNameForMonitors(const char* path);

// What a client's next tick will touch first that another process writes meanwhile (a channel: its own and
// its peer's heartbeat lines). Those are cache misses every tick; the monitor prefetches them a few clients
// ahead within a batch, so that a batch's misses overlap instead of adding up. Only a hint: an address that
// is stale or unmapped by then costs nothing (a prefetch never faults).
struct TickHints {
  const void* write_line = nullptr;  // prefetched for writing
  const void* read_line = nullptr;
};

class MonitorClient {
 public:
  // Runs on the monitor thread, never concurrently with itself, without the monitor's lock held. Returns the
  // monotonic time (ns) of the next tick it wants. `hints` persist between ticks; the client updates them.
  virtual std::int64_t OnTick(std::int64_t now_ns, unsigned events, TickHints& hints) = 0;

 protected:
  ~MonitorClient() = default;
};

class Monitor {
 public:
  // The process's monitor (never destroyed: channels may close during static destruction).
  static Monitor& Process();

  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Registers `client`, watching `file_name` in kSegmentDirectory, and ticks it at once. Starts the thread.
  void Add(MonitorClient* client, std::string_view file_name);
  // After this returns, `client`'s OnTick is not running and never runs again. The last client's removal
  // joins the thread.
  void Remove(MonitorClient* client);

  // From OnTick only. Ticks `client` (with kWatchedPidExited) when process `pid` exits, replacing what it
  // watched before. False when the kernel cannot watch it (no pidfd_open, no such process, out of file
  // descriptors): the client must poll.
  bool WatchPid(MonitorClient* client, pid_t pid);
  void UnwatchPid(MonitorClient* client);
  // Whether name events arrive (inotify works); if not, clients poll their names.
  bool names_watched() const { return inotify_fd_ >= 0; }

  // From OnTick only. Watches thread `tid` of process `pid` for `client` through the kernel: the thread's
  // count of voluntary context switches (/proc/PID/task/TID/status) grows each time it sleeps, so a thread
  // that sleeps and wakes periodically (a peer's monitor) shows its process is scheduled. One read per
  // thread however many clients watch it, every quarter of the smallest `still_after_ns` among them (every
  // millisecond while it is still, so that its return is seen at once); all of
  // them are ticked (kThreadChanged) when the count has not grown for that smallest time, when it grows
  // again, and when the file can no longer be read. Replaces what the client watched before. False if the
  // thread cannot be read now.
  bool WatchThread(MonitorClient* client, pid_t pid, pid_t tid, std::int64_t still_after_ns);
  void UnwatchThread(MonitorClient* client);
  ThreadProgress ThreadProgressOf(MonitorClient* client);
  // From OnTick only. While any client asks, the monitor thread sleeps at most `interval_ns` at a time, so
  // that its own count of voluntary context switches grows at that pace for peers that watch it (0: the
  // client asks no more).
  void KeepMoving(MonitorClient* client, std::int64_t interval_ns);


 private:
  struct Entry {
    MonitorClient* client = nullptr;
    std::int64_t due = 0;      // when it is scheduled (valid while scheduled)
    std::size_t index = 0;     // its place in schedule_[due] (valid while scheduled)
    bool scheduled = false;    // in schedule_; false while its tick runs
    bool running = false;      // its OnTick runs now (Remove waits for it)
    unsigned events = 0;          // gathered for its next tick
    unsigned ticking_events = 0;  // the running tick's (the monitor thread's while running)
    std::int64_t next_ns = 0;     // what the running tick asked for (likewise)
    TickHints hints;              // the client's (likewise)
    pid_t pid = 0;  // watched, 0 = none
    std::pair<pid_t, pid_t> thread{0, 0};  // watched (pid, tid), {0, 0} = none
    std::int64_t keep_moving_ns = 0;       // its KeepMoving request, 0 = none
    std::string file_name;
  };
  struct PidWatch {
    int fd = -1;
    std::vector<MonitorClient*> clients;
  };
  struct ThreadWatch {
    int fd = -1;  // /proc/PID/task/TID/status
    std::uint64_t switches = 0;
    ThreadProgress progress;
    std::int64_t next_read_ns = 0;
    std::vector<std::pair<MonitorClient*, std::int64_t>> clients;  // with their still_after_ns
  };

  Monitor();
  void Run();
  void StartLocked();
  void Schedule(Entry& entry, std::int64_t due_ns);
  void Unschedule(Entry& entry);
  void Reschedule(Entry& entry, std::int64_t due_ns);
  void HandleInotify();
  void HandlePidExit(pid_t pid);
  void UnwatchPidLocked(MonitorClient* client, Entry& entry);
  void UnwatchThreadLocked(MonitorClient* client, Entry& entry);
  void ReadThreads(std::int64_t now);  // the watched threads whose read is due
  std::int64_t NextThreadRead() const;
  void SetKeepMovingLocked(Entry& entry, std::int64_t interval_ns);
  void WakeThread();
  void OpenDescriptors();
  void ResetAfterFork();

  std::mutex lifecycle_mu_;  // serialises starting and joining the thread; taken before mu_
  std::mutex mu_;
  std::condition_variable tick_done_;
  // Elements of an unordered_map keep their addresses: the schedule points at them.
  std::unordered_map<MonitorClient*, Entry> entries_;  // guarded by mu_
  // Due time -> the clients due then. Ticks fall on one grid point per period (Batched in monitor.cc),
  // so the tree holds a handful of times however many clients there are, and a tick moves a pointer
  // between two vectors instead of rebalancing a node per client. The thread runs a whole time's clients
  // with one unlock of mu_.
  std::map<std::int64_t, std::vector<Entry*>> schedule_;  // guarded by mu_
  std::vector<Entry*> batch_;                             // the monitor thread's: the ticks running now
  std::unordered_map<pid_t, PidWatch> pids_;  // guarded by mu_
  std::map<std::pair<pid_t, pid_t>, ThreadWatch> threads_;  // guarded by mu_
  std::multiset<std::int64_t> keep_moving_;                  // the clients' KeepMoving paces; guarded by mu_
  std::unordered_multimap<std::string, MonitorClient*> names_;  // guarded by mu_
  bool stop_ = false;                 // guarded by mu_
  std::thread thread_;                // guarded by lifecycle_mu_
  int epoll_fd_ = -1;
  int event_fd_ = -1;
  int inotify_fd_ = -1;
};

}  // namespace eshm::internal

#endif  // ESHM_INTERNAL_MONITOR_H_
