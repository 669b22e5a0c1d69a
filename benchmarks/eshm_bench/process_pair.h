// Two forked processes for one measurement: the memory they share, CPU pinning, a watchdog for every wait,
// and cleanup (child killed and reaped, names removed) on any error, SIGINT, SIGTERM or SIGHUP.
//
// Each run maps a fresh RunControl (MAP_SHARED | MAP_ANONYMOUS) and forks. The parent is pinned to one CPU,
// the child to another; both sides run their function; the parent reaps the child. The child never returns
// into the caller: it leaves with _exit, so no destructor or buffer of the parent's runs twice. Fork only
// while the process has a single thread (eshm channels start their monitor thread after the fork).
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_PROCESS_PAIR_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_PROCESS_PAIR_H_

#include <sched.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "benchmarks/eshm_bench/histogram.h"

namespace eshm_bench {

// Producer- and consumer-written words sit 128 bytes apart (the adjacent-line prefetcher pulls pairs).
inline constexpr std::size_t kLine = 128;

struct alignas(kLine) PaddedU32 {
  std::atomic<std::uint32_t> value{0};
};
struct alignas(kLine) PaddedU64 {
  std::atomic<std::uint64_t> value{0};
};

// An anonymous shared mapping (populated), made before a fork so that both processes see the same pages.
class SharedMapping {
 public:
  explicit SharedMapping(std::size_t bytes);
  ~SharedMapping();
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  bool ok() const { return base_ != nullptr; }
  std::byte* data() const { return static_cast<std::byte*>(base_); }

 private:
  std::size_t bytes_;
  void* base_;
};

// What the measured side (the child in streams) hands back. Written by the child before it stores
// RunControl::child_done (release); read by the parent after its acquire load of it, or after waitpid.
struct ChildReport {
  Histogram latency;
  std::uint64_t messages = 0;     // timed messages received
  std::uint64_t counted = 0;      // of those, the ones from first_ticks on (what the rate divides)
  std::uint64_t first_ticks = 0;  // send timestamp of the first timestamped timed message
  std::uint64_t last_ticks = 0;   // receive time of the last message
  char error[512] = "";
};

// Memory shared by parent and child for one run. Every flag says who writes it.
struct RunControl {
  PaddedU32 master_ready;  // child (eshm: the master) created the segment
  PaddedU32 child_ready;   // child: its end is open, pinned and about to wait for the first message
  PaddedU32 child_done;    // child: finished; its report is complete
  // Sender: index of the first timed message (warm-up ends there); UINT64_MAX until known.
  PaddedU64 first_timed;
  // Sender: how many messages the run sends in all; UINT64_MAX until the sender decides to stop. Stored
  // (release) before the last message is sent, so the receiver sees it (acquire) once it has that message:
  // the transport orders the two (the rings by their own release/acquire pairs, pipes and
  // sockets by the system calls). first_timed works the same way.
  PaddedU64 total;
  PaddedU32 futex_ping;  // floors: the raw futex ping-pong's words
  PaddedU32 futex_pong;
  ChildReport report;
};

// A spin loop or blocking wait that has to end: at the deadline (--timeout_s), or when the other
// process is gone.
class Watchdog {
 public:
  Watchdog(std::int64_t deadline_ns, pid_t peer, bool peer_is_child, bool yield_when_spinning)
      : deadline_ns_(deadline_ns), peer_(peer), peer_is_child_(peer_is_child), yield_(yield_when_spinning) {}

  // One step of a spin loop: yields on a shared CPU, looks at the clock every 1024 steps (keeping the
  // check out of the measurement). True once the wait must end.
  bool SpinExpired() {
    if (yield_) sched_yield();
    return (++polls_ & 0x3ff) == 0 && ExpiredNow();
  }
  // For waits that sleep in slices: reads the clock now, checks the peer at most every 10 ms.
  bool ExpiredNow();
  // The deadline on Clock's ticks, for a measured loop that never waits long: it compares the clock readings
  // it takes anyway with this, and asks ExpiredNow() once past it (a run longer than --timeout_s).
  std::uint64_t DeadlineTicks() const;
  absl::Status Error(const std::string& what) const;

  // Spins until `ready()`; false if the watchdog fires first.
  template <typename Ready>
  bool SpinUntil(Ready&& ready) {
    while (!ready()) {
      if (SpinExpired()) return ready();  // one last look: the peer may have delivered and gone
    }
    return true;
  }
  // Polls `ready()` with short sleeps: for waits that are not measured (start-up).
  bool SleepUntil(const std::function<bool()>& ready);

 private:
  bool PeerGone() const;

  std::int64_t deadline_ns_;
  pid_t peer_;
  bool peer_is_child_;
  bool yield_;
  std::uint32_t polls_ = 0;
  std::int64_t last_peer_check_ns_ = 0;
  int peer_gone_checks_ = 0;
  std::string reason_ = "no reason";
};

struct PairConfig {
  bool pinned = false;
  int parent_cpu = -1;
  int child_cpu = -1;
  bool spin_yield = false;  // both processes may share one CPU: spin loops must yield
  int timeout_s = 60;
};

// One side's work. `control` is fresh for the run.
using SideFn = std::function<absl::Status(RunControl& control, Watchdog& watchdog)>;

// Forks; the child runs `child`, the parent `parent`; reaps the child (killing it first if the parent side
// failed). Returns the first error; `*report` receives the child's report.
absl::Status RunPair(const PairConfig& config, const SideFn& parent, const SideFn& child, ChildReport* report);

// Starts `argv` (searched on PATH) in a process group of its own, which the processes it starts join, with its
// stdout and stderr into `output_fd`; the program gets `death_signal` when this process dies, however it dies.
absl::StatusOr<pid_t> StartProgram(const std::vector<std::string>& argv, int output_fd, int death_signal);

// Stops the process group `pid` leads: SIGTERM (a program then removes what it created, as eshm-bridge and the
// peers do), SIGKILL to the group if its leader has not exited within 2 s; reaps the leader. Async-signal-safe.
void StopGroup(pid_t pid);

// What a program run by RunProgram printed (stdout and stderr as they came), and how it ended.
struct ProgramRun {
  int exit_code = -1;  // -1: killed by a signal
  std::string output;
};

// Runs `argv` with StartProgram and captures its output. The group is killed when the program ends (what it
// left running), and stopped (StopGroup) at the deadline (an error) and by SIGINT, SIGTERM and SIGHUP.
absl::StatusOr<ProgramRun> RunProgram(const std::vector<std::string>& argv, int timeout_s);

// Pins the calling process to `cpu`; the CPUs it may run on (sched_getaffinity), ascending.
absl::Status PinSelf(int cpu);
std::vector<int> AllowedCpus();

// Files (/dev/shm/...) that a signal, or the end of the run, must remove: `path`, or with count > 0 the names
// `path`<first> .. `path`<first + count - 1> (a run's many idle channels). Fixed slots, so the signal handler
// can read them; Register returns the slot to pass to Unregister (or -1 when full). Remove removes the files
// now and frees the slot.
int RegisterCleanupPath(const std::string& path, int first = 0, int count = 0);
void UnregisterCleanupPath(int slot);
void RemoveCleanupPath(int slot);

// Processes a transport started beside the pair (eshm-bridge), each leading a process group of its own,
// that a signal must kill (with their groups) and reap before the files are removed. Fixed slots as above.
int RegisterHelperProcess(pid_t pid);
void UnregisterHelperProcess(int slot);

// SIGINT, SIGTERM, SIGHUP and SIGALRM kill and reap the pair's child, stop RunProgram's program and the helpers
// (StopGroup), remove registered files and exit 128+signal; SIGPIPE is ignored (a dead peer's pipe reports
// EPIPE instead).
void InstallSignalHandlers();

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_PROCESS_PAIR_H_
