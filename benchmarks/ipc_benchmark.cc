// ipc_benchmark: eshm between two processes, measured in the same run as the floor it should approach.
//
// Each run forks a child after mapping the memory both sides use (an eshm Segment, or a MAP_SHARED
// anonymous area for the baselines), pins parent and child to different cores, and measures one side of a
// pair. Baseline and eshm runs alternate --repetitions times; the table shows the median of the
// repetitions and the ratio of the medians, so a noisy neighbour hurts both sides alike.
//
//   pingpong  spin round trip, 64 B and 8 B: eshm TryWrite(kNow)/TryRead vs a bare atomic ping-pong (and,
//             for information, vs an atomic ping-pong that also carries a 64 B payload); the atomic pair
//             moves to fresh lines every round trip, as a ring's records do (see PingPongSlot)
//   stream    one-way 64 B throughput: eshm Publish::kDeferred (and kNow) vs MinimalRing (minimal_ring.h;
//             also its uncached-index variant, for information)
//   large     one-way 64 KiB throughput: the same pair
//   blocking  round trip sleeping on futexes: eshm WaitStrategy::Sleep() vs a raw futex ping-pong
//   syscalls  futex calls per message in a 64 B stream with Adaptive blocking Write/Read (goal: zero)
//
// Each repetition prints how much CPU other processes took meanwhile and a short atomic ping-pong "floor"
// probed before and after it. A repetition disturbed by more than --max_noise cores of other work, or during
// which the floor moved by more than 25% (a hypervisor moving the vCPUs between cores and SMT siblings), is
// run again, up to --noisy_retries times per measurement, so neither becomes a result.
//
// Robustness: every wait has a watchdog (--timeout_s, and the peer's death), the child also has alarm()
// and PR_SET_PDEATHSIG, and the segment name is removed as soon as both processes have it mapped (and by
// the signal handler if we are interrupted before that).
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <span>
#include <string>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "benchmarks/eshm_bench/machine_info.h"
#include "benchmarks/minimal_ring.h"
#include "eshm/deadline.h"
#include "eshm/futex.h"
#include "eshm/layout.h"
#include "eshm/ring.h"
#include "eshm/segment.h"
#include "eshm/wait_strategy.h"

ABSL_FLAG(int, repetitions, 5, "runs of each baseline and each eshm variant (alternating); the median is reported");
ABSL_FLAG(std::int64_t, round_trips, 200000, "timed spin ping-pong round trips per run (plus 10% warm-up)");
ABSL_FLAG(std::int64_t, blocking_round_trips, 5000, "timed futex-sleeping round trips per run (plus 10% warm-up)");
ABSL_FLAG(std::int64_t, messages, 20000000,
          "64 B messages per stream run; the 64 KiB stream sends messages/400 (at least 1000)");
ABSL_FLAG(bool, pin, true, "pin parent and child to two different CPUs");
ABSL_FLAG(bool, spin_pause, false, "execute PAUSE in every spin-poll loop (baseline and eshm alike)");
ABSL_FLAG(bool, quick, false, "small counts and 3 repetitions for a demo of a few seconds (explicit flags win)");
ABSL_FLAG(std::string, only, "", "comma list of measurements: pingpong,stream,large,blocking,syscalls");
ABSL_FLAG(double, max_noise, 0.25,
          "a repetition during which other processes used more than this many cores (on average) is run again");
ABSL_FLAG(int, noisy_retries, 5,
          "how many disturbed repetitions (see --max_noise and the floor probe) each measurement may run again");
ABSL_FLAG(int, timeout_s, 120, "watchdog for each run: a run that takes longer is killed and reported");

namespace {

using eshm::Direction;
using eshm::Publish;
using eshm::ReadResult;

constexpr std::size_t kLine = eshm::kFalseSharingRange;
constexpr std::uint64_t kSmallRingBytes = 1 << 20;
constexpr std::uint64_t kLargeRingBytes = 4 << 20;
constexpr std::size_t kLargeMessageBytes = 64 * 1024;
constexpr double kOldLibraryMessagesPerSecond = 2.7e6;  // the previous library, 64 B one-way

bool g_spin_pause = false;
bool g_spin_yield = false;  // one CPU for both processes: a spinner must yield for its peer to run

// ---------------------------------------------------------------------------------------------------------
// Clocks and statistics

// A cheap timestamp for per-round-trip latency: the TSC (constant and invariant on this class of machine),
// converted to nanoseconds against CLOCK_MONOTONIC over each whole run.
inline std::uint64_t Ticks() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned int aux;
  return __rdtscp(&aux);  // rdtscp: waits for earlier instructions, so the round trip is complete
#else
  return static_cast<std::uint64_t>(eshm::MonotonicNowNs());
#endif
}

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0;  // nanoseconds
};

class LatencyRecorder {
 public:
  explicit LatencyRecorder(std::size_t samples) { ticks_.reserve(samples); }

  void Start() {
    start_ns_ = eshm::MonotonicNowNs();
    start_ticks_ = last_ = Ticks();
  }
  // Ends one round trip (one timestamp per round trip); keeps it unless it was warm-up.
  void Lap(bool keep) {
    const std::uint64_t now = Ticks();
    if (keep) ticks_.push_back(now - last_);
    last_ = now;
  }
  Percentiles Finish() {
    const double ns_per_tick = static_cast<double>(eshm::MonotonicNowNs() - start_ns_) /
                               static_cast<double>(std::max<std::uint64_t>(1, Ticks() - start_ticks_));
    if (ticks_.empty()) return {};
    std::sort(ticks_.begin(), ticks_.end());
    const auto at = [&](double q) {
      const std::size_t i = std::min(ticks_.size() - 1, static_cast<std::size_t>(q * ticks_.size()));
      return static_cast<double>(ticks_[i]) * ns_per_tick;
    };
    return {at(0.50), at(0.90), at(0.99)};
  }

 private:
  std::vector<std::uint64_t> ticks_;
  std::int64_t start_ns_ = 0;
  std::uint64_t start_ticks_ = 0;
  std::uint64_t last_ = 0;
};

double Median(std::vector<double> values) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// ---------------------------------------------------------------------------------------------------------
// Memory shared by parent and child for one run (a MAP_SHARED anonymous mapping made before any fork)

struct alignas(kLine) PaddedU64 {
  std::atomic<std::uint64_t> value;
};
struct alignas(kLine) PaddedU32 {
  std::atomic<std::uint32_t> value;
};

// Written by the child only, read by the parent after waitpid (which orders it).
struct alignas(kLine) ChildReport {
  std::int64_t end_ns;  // CLOCK_MONOTONIC when the child received its last message
  std::uint64_t wake_syscalls;
  std::uint64_t wait_syscalls;
  char error[512];
};

struct SharedArea {
  PaddedU32 child_ready;  // release by the child once it is pinned, faulted in and polling
  ChildReport report;
  PaddedU32 futex_ping;
  PaddedU32 futex_pong;
  eshm_bench::MinimalRingControl minimal;
  // kDataBytes follow, 128-aligned: the minimal ring's data, or the atomic ping-pongs' slots.
};
constexpr std::size_t kDataBytes = kLargeRingBytes;
constexpr std::size_t kSharedAreaBytes = sizeof(SharedArea) + kDataBytes;

std::byte* AreaData(SharedArea& area) { return reinterpret_cast<std::byte*>(&area + 1); }

// The atomic ping-pongs use a fresh slot (a ping line and a pong line) for every round trip, cycling
// through kSmallRingBytes as the records of eshm's ring do. One fixed pair would measure whichever cache
// slice its line hashes to: 260 to 370 ns from run to run here, against 316 to 328 ns cycling.
struct PingPongSlot {
  PaddedU64 ping;  // parent -> child
  PaddedU64 pong;  // child -> parent
};

// The same with a 64 B payload: a payload line followed by its flag line, in one 128-byte pair (the layout
// the adjacent-line prefetcher likes best): the floor for moving 64 B plus a "ready" word, which cannot
// share one line.
struct alignas(kLine) PayloadMailbox {
  std::byte payload[64];
  std::atomic<std::uint64_t> flag;
};
struct PayloadSlot {
  PayloadMailbox ping;
  PayloadMailbox pong;
};

template <typename Slot>
Slot& SlotFor(SharedArea& area, std::uint64_t round_trip) {
  static_assert(kSmallRingBytes % sizeof(Slot) == 0 && kSmallRingBytes <= kDataBytes);
  // The data is zeroed shared memory, which is what a zero-initialized Slot holds.
  return reinterpret_cast<Slot*>(AreaData(area))[round_trip % (kSmallRingBytes / sizeof(Slot))];
}

// Maps every page of [p, p + bytes) into this process before timing starts. A forked child inherits
// shared mappings without page-table entries, so its first touch of each page would otherwise fault.
void Prefault(const void* p, std::size_t bytes) {
  const volatile std::byte* bytes_p = static_cast<const volatile std::byte*>(p);
  for (std::size_t i = 0; i < bytes; i += 4096) (void)bytes_p[i];
}

// ---------------------------------------------------------------------------------------------------------
// CPU pinning

struct CpuPlan {
  bool pinned = false;
  bool single_cpu = false;
  int parent_cpu = -1;
  int child_cpu = -1;
  std::string note;
};

CpuPlan PlanCpus(bool want_pin) {
  CpuPlan plan;
  cpu_set_t allowed;
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
    }
  }
  plan.single_cpu = cpus.size() < 2;
  if (plan.single_cpu) {
    plan.note =
        "UNPINNED: only one CPU is available, so both processes share it and every spin loop yields; the "
        "spin results are meaningless";
  } else if (!want_pin) {
    plan.note = "unpinned (--pin=false)";
  } else {
    plan.pinned = true;
    plan.parent_cpu = cpus[0];
    plan.child_cpu = cpus[1];
    plan.note = absl::StrFormat("pinned: parent on CPU %d, child on CPU %d", plan.parent_cpu, plan.child_cpu);
  }
  return plan;
}

bool PinSelf(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return sched_setaffinity(0, sizeof(one), &one) == 0;
}

// ---------------------------------------------------------------------------------------------------------
// Cleanup on signals: plain globals, because the handler may only make async-signal-safe calls.

volatile sig_atomic_t g_child_pid = 0;
char g_segment_path[128] = "";  // "/dev/shm/eshm_<name>" while a benchmark segment has a name

void OnFatalSignal(int signal_number) {
  if (g_child_pid > 0) {
    kill(g_child_pid, SIGKILL);
    waitpid(g_child_pid, nullptr, 0);  // reap it: an orphaned zombie would be left to init
  }
  if (g_segment_path[0] != '\0') unlink(g_segment_path);
  static const char kMessage[] = "\nipc_benchmark: stopped by a signal; child killed, segment removed\n";
  if (write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1) < 0) {
    // Nothing else to do in a signal handler.
  }
  _exit(128 + signal_number);
}

constexpr int kFatalSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGALRM};

void InstallSignalHandlers() {
  struct sigaction action {};
  action.sa_handler = OnFatalSignal;
  sigemptyset(&action.sa_mask);
  for (const int s : kFatalSignals) sigaction(s, &action, nullptr);
}

void RestoreDefaultSignals() {
  for (const int s : kFatalSignals) signal(s, SIG_DFL);
}

// A uniquely named segment whose name lives only until both processes have mapped it.
class BenchSegment {
 public:
  static absl::StatusOr<BenchSegment> Create(std::uint64_t capacity) {
    const std::string name = absl::StrCat("bench_", getpid());
    const std::string path = eshm::Segment::PathFor(name);
    std::snprintf(g_segment_path, sizeof(g_segment_path), "%s", path.c_str());
    (void)eshm::Segment::Unlink(name);  // left over from a killed run with our pid, if any
    absl::StatusOr<eshm::Segment> segment = eshm::Segment::Create(name, eshm::SegmentOptions{capacity, capacity});
    if (!segment.ok()) {
      g_segment_path[0] = '\0';
      return segment.status();
    }
    return BenchSegment(*std::move(segment));
  }
  BenchSegment(BenchSegment&& other) noexcept
      : segment_(std::move(other.segment_)), linked_(std::exchange(other.linked_, false)) {}
  BenchSegment& operator=(BenchSegment&&) = delete;
  ~BenchSegment() { Unlink(); }

  eshm::Segment& segment() { return segment_; }
  void Unlink() {
    if (!linked_) return;
    (void)eshm::Segment::Unlink(segment_.name());
    g_segment_path[0] = '\0';
    linked_ = false;
  }

 private:
  explicit BenchSegment(eshm::Segment segment) : segment_(std::move(segment)) {}
  eshm::Segment segment_;
  bool linked_ = true;
};

// ---------------------------------------------------------------------------------------------------------
// Watchdog: no wait in this benchmark outlives --timeout_s or the other process.

class Watchdog {
 public:
  Watchdog(std::int64_t deadline_ns, pid_t peer, bool peer_is_child)
      : deadline_ns_(deadline_ns), peer_(peer), peer_is_child_(peer_is_child) {}

  // For spin loops: looks at the clock once every 64k polls, which keeps it out of the measurement.
  bool Expired() { return (++polls_ & 0xffff) == 0 && ExpiredNow(); }

  // For loops that sleep: a clock read each call, the peer check at most every 10 ms.
  bool ExpiredNow() {
    const std::int64_t now = eshm::MonotonicNowNs();
    if (now >= deadline_ns_) {
      reason_ = "timed out (see --timeout_s)";
      return true;
    }
    if (now - last_peer_check_ns_ < 10'000'000) return false;
    last_peer_check_ns_ = now;
    if (PeerGone()) {
      reason_ = peer_is_child_ ? "the child process exited" : "the parent process exited";
      return true;
    }
    return false;
  }

  // A WaitCheck for eshm's blocking calls.
  absl::Status Check() { return ExpiredNow() ? Error("blocking wait") : absl::OkStatus(); }
  absl::Status Error(const std::string& what) const {
    return absl::DeadlineExceededError(absl::StrCat(what, ": ", reason_));
  }
  eshm::Deadline deadline() const { return eshm::Deadline::AtMonotonicNs(deadline_ns_); }

 private:
  bool PeerGone() const {
    if (!peer_is_child_) return getppid() != peer_;
    siginfo_t info{};
    // WNOWAIT: look without reaping; RunPair reaps.
    return waitid(P_PID, static_cast<id_t>(peer_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != 0;
  }

  std::int64_t deadline_ns_;
  pid_t peer_;
  bool peer_is_child_;
  std::uint32_t polls_ = 0;
  std::int64_t last_peer_check_ns_ = 0;
  std::string reason_ = "no reason";
};

// Polls `ready` until it returns true; false if the watchdog fires first.
template <typename Ready>
bool SpinUntil(Watchdog& watchdog, Ready&& ready) {
  while (!ready()) {
    if (g_spin_pause) eshm::CpuRelax();
    if (g_spin_yield) sched_yield();
    if (watchdog.Expired()) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Running one measurement as a parent/child pair

struct Env {
  CpuPlan cpus;
  int timeout_s;
};

// One side of a run. `area` is fresh for every run, so the baselines, like eshm's new segment, get new
// physical pages each time (which cache slice a line lives in moves latency by tens of nanoseconds).
using Side = std::function<absl::Status(SharedArea& area, Watchdog& watchdog)>;

class SharedMapping {
 public:
  // MAP_SHARED before the fork: parent and child see the same pages, as with a segment.
  SharedMapping()
      : base_(mmap(nullptr, kSharedAreaBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0)) {
    if (base_ != MAP_FAILED) new (base_) SharedArea();
  }
  ~SharedMapping() {
    if (base_ != MAP_FAILED) munmap(base_, kSharedAreaBytes);
  }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;

  bool ok() const { return base_ != MAP_FAILED; }
  SharedArea& area() const { return *static_cast<SharedArea*>(base_); }

 private:
  void* base_;
};

void MarkChildReady(SharedArea& area) {
  // release: pairs with the parent's acquire in RunPair; the child's setup is done before it starts.
  area.child_ready.value.store(1, std::memory_order_release);
}

[[noreturn]] void RunChild(const Env& env, SharedArea& area, pid_t parent, std::int64_t deadline_ns,
                           const Side& child) {
  RestoreDefaultSignals();
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the parent
  if (getppid() != parent) _exit(3);
  alarm(static_cast<unsigned>(env.timeout_s + 10));  // backstop behind the watchdog
  absl::Status status = absl::OkStatus();
  if (env.cpus.pinned && !PinSelf(env.cpus.child_cpu)) {
    status = absl::InternalError(absl::StrCat("sched_setaffinity(child): ", std::strerror(errno)));
  }
  Watchdog watchdog(deadline_ns, parent, /*peer_is_child=*/false);
  if (status.ok()) status = child(area, watchdog);
  if (!status.ok()) {
    std::snprintf(area.report.error, sizeof(area.report.error), "%s", status.ToString().c_str());
  }
  _exit(status.ok() ? 0 : 1);  // _exit: the parent's buffers and destructors are not ours to run
}

absl::Status ReapChild(const SharedArea& area, pid_t pid, bool kill_first) {
  if (kill_first) kill(pid, SIGKILL);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return absl::OkStatus();
  if (kill_first) return absl::OkStatus();  // the parent side's error is the one to report
  if (WIFEXITED(wstatus)) {
    return absl::InternalError(
        absl::StrCat("child failed: ", area.report.error[0] != '\0' ? area.report.error : "(no message)"));
  }
  return absl::InternalError(absl::StrCat("child killed by signal ", WTERMSIG(wstatus), " (",
                                          strsignal(WTERMSIG(wstatus)), ")"));
}

// Forks; the child runs `child`, the parent waits until the child marks itself ready and runs `parent`.
// `segment`, if given, loses its name as soon as both processes have it mapped. Returns what the child
// reported.
absl::StatusOr<ChildReport> RunPair(const Env& env, const Side& parent, const Side& child, BenchSegment* segment) {
  const SharedMapping mapping;
  if (!mapping.ok()) return absl::InternalError(absl::StrCat("mmap: ", std::strerror(errno)));
  SharedArea& area = mapping.area();
  std::fflush(stdout);
  std::fflush(stderr);
  const std::int64_t deadline_ns = eshm::MonotonicNowNs() + std::int64_t{env.timeout_s} * 1'000'000'000;
  const pid_t parent_pid = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) RunChild(env, area, parent_pid, deadline_ns, child);

  g_child_pid = pid;
  alarm(static_cast<unsigned>(env.timeout_s + 30));  // backstop: the handler kills the child and exits
  if (segment != nullptr) segment->Unlink();
  Watchdog watchdog(deadline_ns, pid, /*peer_is_child=*/true);
  absl::Status status = absl::OkStatus();
  // acquire: pairs with MarkChildReady.
  if (!SpinUntil(watchdog, [&] { return area.child_ready.value.load(std::memory_order_acquire) != 0; })) {
    status = watchdog.Error("waiting for the child to start");
  }
  if (status.ok()) status = parent(area, watchdog);
  const absl::Status reaped = ReapChild(area, pid, /*kill_first=*/!status.ok());
  alarm(0);
  g_child_pid = 0;
  if (!status.ok()) return status;
  if (!reaped.ok()) return reaped;
  return area.report;
}

// ---------------------------------------------------------------------------------------------------------
// Messages (at least 8 bytes): a sequence number at both ends of each, so a reader cannot skip, reorder or
// tear messages unnoticed.

void Stamp(std::span<std::byte> message, std::uint64_t sequence) {
  std::memcpy(message.data(), &sequence, sizeof(sequence));
  std::memcpy(message.data() + message.size() - sizeof(sequence), &sequence, sizeof(sequence));
}

absl::Status CheckMessage(std::span<const std::byte> message, std::size_t size, std::size_t expected_size,
                          std::uint64_t expected_sequence) {
  std::uint64_t first = 0, last = 0;
  if (size == expected_size) {
    std::memcpy(&first, message.data(), sizeof(first));
    std::memcpy(&last, message.data() + size - sizeof(last), sizeof(last));
    if (first == expected_sequence && last == expected_sequence) return absl::OkStatus();
  }
  return absl::DataLossError(absl::StrFormat("message %d: got %d bytes with sequence %d/%d, expected %d bytes",
                                             expected_sequence, size, first, last, expected_size));
}

// ---------------------------------------------------------------------------------------------------------
// (a) Spin round trip

struct PingPongCounts {
  std::int64_t warmup;
  std::int64_t timed;
  std::int64_t total() const { return warmup + timed; }
};

PingPongCounts CountsFor(std::int64_t timed) { return {std::max<std::int64_t>(100, timed / 10), timed}; }

absl::StatusOr<Percentiles> RunAtomicPingPong(const Env& env, PingPongCounts counts) {
  Percentiles result;
  const Side child = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    Prefault(AreaData(area), kSmallRingBytes);
    MarkChildReady(area);
    for (std::uint64_t i = 1; i <= static_cast<std::uint64_t>(counts.total()); ++i) {
      PingPongSlot& slot = SlotFor<PingPongSlot>(area, i);
      // acquire: pairs with the parent's release store of ping (a message's bytes would be visible).
      if (!SpinUntil(watchdog, [&] { return slot.ping.value.load(std::memory_order_acquire) == i; })) {
        return watchdog.Error("atomic ping-pong echo");
      }
      // release: pairs with the parent's acquire load of pong.
      slot.pong.value.store(i, std::memory_order_release);
    }
    return absl::OkStatus();
  };
  const Side parent = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    Prefault(AreaData(area), kSmallRingBytes);
    LatencyRecorder recorder(static_cast<std::size_t>(counts.timed));
    recorder.Start();
    for (std::uint64_t i = 1; i <= static_cast<std::uint64_t>(counts.total()); ++i) {
      PingPongSlot& slot = SlotFor<PingPongSlot>(area, i);
      // release: pairs with the child's acquire load of ping.
      slot.ping.value.store(i, std::memory_order_release);
      // acquire: pairs with the child's release store of pong.
      if (!SpinUntil(watchdog, [&] { return slot.pong.value.load(std::memory_order_acquire) == i; })) {
        return watchdog.Error("atomic ping-pong");
      }
      recorder.Lap(i > static_cast<std::uint64_t>(counts.warmup));
    }
    result = recorder.Finish();
    return absl::OkStatus();
  };
  if (absl::StatusOr<ChildReport> report = RunPair(env, parent, child, nullptr); !report.ok()) {
    return report.status();
  }
  return result;
}

absl::StatusOr<Percentiles> RunAtomicPayloadPingPong(const Env& env, PingPongCounts counts) {
  constexpr std::size_t kBytes = sizeof(PayloadMailbox::payload);
  Percentiles result;
  const Side child = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    std::byte echo[kBytes];
    Prefault(AreaData(area), kSmallRingBytes);
    MarkChildReady(area);
    for (std::uint64_t i = 1; i <= static_cast<std::uint64_t>(counts.total()); ++i) {
      PayloadSlot& slot = SlotFor<PayloadSlot>(area, i);
      // acquire: pairs with the parent's release store of the flag; the payload is complete.
      if (!SpinUntil(watchdog, [&] { return slot.ping.flag.load(std::memory_order_acquire) == i; })) {
        return watchdog.Error("atomic payload ping-pong echo");
      }
      std::memcpy(echo, slot.ping.payload, kBytes);
      std::memcpy(slot.pong.payload, echo, kBytes);
      // release: pairs with the parent's acquire load; the reply payload is written first.
      slot.pong.flag.store(i, std::memory_order_release);
    }
    return absl::OkStatus();
  };
  const Side parent = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    Prefault(AreaData(area), kSmallRingBytes);
    std::vector<std::byte> message(kBytes, std::byte{0x5a});
    std::vector<std::byte> reply(kBytes);
    LatencyRecorder recorder(static_cast<std::size_t>(counts.timed));
    recorder.Start();
    for (std::uint64_t i = 1; i <= static_cast<std::uint64_t>(counts.total()); ++i) {
      Stamp(message, i);
      PayloadSlot& slot = SlotFor<PayloadSlot>(area, i);
      std::memcpy(slot.ping.payload, message.data(), kBytes);
      // release: pairs with the child's acquire load of the flag.
      slot.ping.flag.store(i, std::memory_order_release);
      // acquire: pairs with the child's release store; the reply payload is complete.
      if (!SpinUntil(watchdog, [&] { return slot.pong.flag.load(std::memory_order_acquire) == i; })) {
        return watchdog.Error("atomic payload ping-pong");
      }
      std::memcpy(reply.data(), slot.pong.payload, kBytes);
      recorder.Lap(i > static_cast<std::uint64_t>(counts.warmup));
      if (absl::Status s = CheckMessage(reply, kBytes, kBytes, i); !s.ok()) return s;
    }
    result = recorder.Finish();
    return absl::OkStatus();
  };
  if (absl::StatusOr<ChildReport> report = RunPair(env, parent, child, nullptr); !report.ok()) {
    return report.status();
  }
  return result;
}

// Spins until `consumer` yields a message into `buffer`; an error for anything but a message.
absl::Status SpinRead(Watchdog& watchdog, eshm::RingConsumer& consumer, std::span<std::byte> buffer,
                      std::size_t* size) {
  ReadResult result = ReadResult::kEmpty;
  if (!SpinUntil(watchdog, [&] { return (result = consumer.TryRead(buffer, size)) != ReadResult::kEmpty; })) {
    return watchdog.Error("eshm TryRead");
  }
  if (result != ReadResult::kOk) return absl::InternalError(absl::StrCat("TryRead: ", ReadResultName(result)));
  return absl::OkStatus();
}

absl::StatusOr<Percentiles> RunEshmPingPong(const Env& env, std::size_t bytes, PingPongCounts counts) {
  absl::StatusOr<BenchSegment> bench = BenchSegment::Create(kSmallRingBytes);
  if (!bench.ok()) return bench.status();
  eshm::Segment& segment = bench->segment();
  Percentiles result;
  const Side child = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    Prefault(segment.header(), segment.size_bytes());
    eshm::RingConsumer in = segment.MakeConsumer(Direction::kMasterToSlave);
    eshm::RingProducer out = segment.MakeProducer(Direction::kSlaveToMaster);
    std::vector<std::byte> buffer(bytes);
    MarkChildReady(area);
    for (std::int64_t i = 0; i < counts.total(); ++i) {
      std::size_t size = 0;
      if (absl::Status s = SpinRead(watchdog, in, buffer, &size); !s.ok()) return s;
      if (!out.TryWrite(buffer.data(), size, Publish::kNow)) return absl::InternalError("echo: reply ring full");
    }
    return absl::OkStatus();
  };
  const Side parent = [&](SharedArea& /*area*/, Watchdog& watchdog) -> absl::Status {
    Prefault(segment.header(), segment.size_bytes());
    eshm::RingProducer out = segment.MakeProducer(Direction::kMasterToSlave);
    eshm::RingConsumer in = segment.MakeConsumer(Direction::kSlaveToMaster);
    std::vector<std::byte> message(bytes, std::byte{0x5a});
    std::vector<std::byte> reply(bytes);
    LatencyRecorder recorder(static_cast<std::size_t>(counts.timed));
    recorder.Start();
    for (std::int64_t i = 0; i < counts.total(); ++i) {
      Stamp(message, static_cast<std::uint64_t>(i));
      if (!out.TryWrite(message.data(), bytes, Publish::kNow)) return absl::InternalError("ping: ring full");
      std::size_t size = 0;
      if (absl::Status s = SpinRead(watchdog, in, reply, &size); !s.ok()) return s;
      recorder.Lap(i >= counts.warmup);
      if (absl::Status s = CheckMessage(reply, size, bytes, static_cast<std::uint64_t>(i)); !s.ok()) return s;
    }
    result = recorder.Finish();
    return absl::OkStatus();
  };
  if (absl::StatusOr<ChildReport> report = RunPair(env, parent, child, &*bench); !report.ok()) {
    return report.status();
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// (b, c) One-way streams: the parent produces, the child consumes and checks every message.

// Sends `count` stamped messages of `bytes` bytes; `try_write(message)` copies one in or returns false.
template <typename TryWrite>
absl::Status ProduceStream(Watchdog& watchdog, std::size_t bytes, std::int64_t count, TryWrite&& try_write) {
  std::vector<std::byte> message(bytes, std::byte{0x5a});
  for (std::int64_t i = 0; i < count; ++i) {
    Stamp(message, static_cast<std::uint64_t>(i));
    if (!SpinUntil(watchdog, [&] { return try_write(message); })) {
      return watchdog.Error(absl::StrCat("producer blocked at message ", i));
    }
  }
  return absl::OkStatus();
}

// Receives and checks `count` messages; `try_read(buffer, &size)` returns a ReadResult.
template <typename TryRead>
absl::Status ConsumeStream(Watchdog& watchdog, std::size_t bytes, std::int64_t count, TryRead&& try_read) {
  std::vector<std::byte> buffer(bytes);
  for (std::int64_t i = 0; i < count; ++i) {
    std::size_t size = 0;
    ReadResult result = ReadResult::kEmpty;
    if (!SpinUntil(watchdog, [&] { return (result = try_read(buffer, &size)) != ReadResult::kEmpty; })) {
      return watchdog.Error(absl::StrCat("consumer starved at message ", i));
    }
    if (result != ReadResult::kOk) return absl::InternalError(absl::StrCat("read: ", ReadResultName(result)));
    if (absl::Status s = CheckMessage(buffer, size, bytes, static_cast<std::uint64_t>(i)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

struct StreamSpec {
  std::size_t bytes;
  std::int64_t count;
  std::uint64_t capacity;
};

// Seconds from the producer's first write to the consumer's last read (one clock, two processes).
double StreamSeconds(const ChildReport& report, std::int64_t start_ns) {
  return static_cast<double>(report.end_ns - start_ns) / 1e9;
}

template <eshm_bench::IndexCaching kCaching>
absl::StatusOr<double> RunMinimalStream(const Env& env, const StreamSpec& spec) {
  std::int64_t start_ns = 0;
  const Side child = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    std::byte* data = AreaData(area);
    Prefault(data, spec.capacity);
    eshm_bench::MinimalRingConsumer<kCaching> consumer(&area.minimal, data, spec.capacity);
    MarkChildReady(area);
    const auto try_read = [&](std::span<std::byte> buffer, std::size_t* size) {
      return consumer.TryRead(buffer, size) ? ReadResult::kOk : ReadResult::kEmpty;
    };
    absl::Status s = ConsumeStream(watchdog, spec.bytes, spec.count, try_read);
    area.report.end_ns = eshm::MonotonicNowNs();
    return s;
  };
  const Side parent = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    std::byte* data = AreaData(area);
    Prefault(data, spec.capacity);
    eshm_bench::MinimalRingProducer<kCaching> producer(&area.minimal, data, spec.capacity);
    start_ns = eshm::MonotonicNowNs();
    const auto try_write = [&](std::span<const std::byte> message) {
      return producer.TryWrite(message.data(), message.size());
    };
    return ProduceStream(watchdog, spec.bytes, spec.count, try_write);
  };
  absl::StatusOr<ChildReport> report = RunPair(env, parent, child, nullptr);
  if (!report.ok()) return report.status();
  return StreamSeconds(*report, start_ns);
}

absl::StatusOr<double> RunEshmStream(const Env& env, const StreamSpec& spec, Publish publish) {
  absl::StatusOr<BenchSegment> bench = BenchSegment::Create(spec.capacity);
  if (!bench.ok()) return bench.status();
  eshm::Segment& segment = bench->segment();
  std::int64_t start_ns = 0;
  const Side child = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    Prefault(segment.header(), segment.size_bytes());
    eshm::RingConsumer consumer = segment.MakeConsumer(Direction::kMasterToSlave);
    MarkChildReady(area);
    const auto try_read = [&](std::span<std::byte> buffer, std::size_t* size) {
      return consumer.TryRead(buffer, size);
    };
    absl::Status s = ConsumeStream(watchdog, spec.bytes, spec.count, try_read);
    area.report.end_ns = eshm::MonotonicNowNs();
    return s;
  };
  const Side parent = [&](SharedArea& /*area*/, Watchdog& watchdog) -> absl::Status {
    Prefault(segment.header(), segment.size_bytes());
    eshm::RingProducer producer = segment.MakeProducer(Direction::kMasterToSlave);
    start_ns = eshm::MonotonicNowNs();
    const auto try_write = [&](std::span<const std::byte> message) { return producer.TryWrite(message, publish); };
    absl::Status s = ProduceStream(watchdog, spec.bytes, spec.count, try_write);
    producer.Flush();  // publishes the last partial batch
    return s;
  };
  absl::StatusOr<ChildReport> report = RunPair(env, parent, child, &*bench);
  if (!report.ok()) return report.status();
  return StreamSeconds(*report, start_ns);
}

// ---------------------------------------------------------------------------------------------------------
// (d) Blocking round trip

// Sleeps on `word` until it holds `value`. The baseline's whole wait path: one FUTEX_WAIT per sleep.
absl::Status FutexWaitFor(Watchdog& watchdog, const std::atomic<std::uint32_t>& word, std::uint32_t value) {
  for (;;) {
    // acquire: pairs with the waker's release store of the word.
    const std::uint32_t seen = word.load(std::memory_order_acquire);
    if (seen == value) return absl::OkStatus();
    // Slices of at most 10 ms, like eshm's blocking calls, so the watchdog is consulted.
    eshm::FutexWait(&word, seen, watchdog.deadline().CappedAfterNs(10'000'000));
    if (watchdog.ExpiredNow()) return watchdog.Error("futex ping-pong");
  }
}

void FutexStoreAndWake(std::atomic<std::uint32_t>& word, std::uint32_t value) {
  // release: pairs with the sleeper's acquire load in FutexWaitFor.
  word.store(value, std::memory_order_release);
  eshm::FutexWake(&word, 1);
}

absl::StatusOr<Percentiles> RunFutexPingPong(const Env& env, PingPongCounts counts) {
  Percentiles result;
  const Side child = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    MarkChildReady(area);
    for (std::uint32_t i = 1; i <= static_cast<std::uint32_t>(counts.total()); ++i) {
      if (absl::Status s = FutexWaitFor(watchdog, area.futex_ping.value, i); !s.ok()) return s;
      FutexStoreAndWake(area.futex_pong.value, i);
    }
    return absl::OkStatus();
  };
  const Side parent = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    LatencyRecorder recorder(static_cast<std::size_t>(counts.timed));
    recorder.Start();
    for (std::uint32_t i = 1; i <= static_cast<std::uint32_t>(counts.total()); ++i) {
      FutexStoreAndWake(area.futex_ping.value, i);
      if (absl::Status s = FutexWaitFor(watchdog, area.futex_pong.value, i); !s.ok()) return s;
      recorder.Lap(i > static_cast<std::uint32_t>(counts.warmup));
    }
    result = recorder.Finish();
    return absl::OkStatus();
  };
  if (absl::StatusOr<ChildReport> report = RunPair(env, parent, child, nullptr); !report.ok()) {
    return report.status();
  }
  return result;
}

absl::StatusOr<Percentiles> RunEshmBlockingPingPong(const Env& env, PingPongCounts counts) {
  constexpr std::size_t kBytes = 64;
  absl::StatusOr<BenchSegment> bench = BenchSegment::Create(kSmallRingBytes);
  if (!bench.ok()) return bench.status();
  eshm::Segment& segment = bench->segment();
  const eshm::WaitStrategy sleep = eshm::WaitStrategy::Sleep();
  Percentiles result;
  const Side child = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    Prefault(segment.header(), segment.size_bytes());
    eshm::RingConsumer in = segment.MakeConsumer(Direction::kMasterToSlave);
    eshm::RingProducer out = segment.MakeProducer(Direction::kSlaveToMaster);
    std::vector<std::byte> buffer(kBytes);
    const auto check = [&] { return watchdog.Check(); };
    MarkChildReady(area);
    for (std::int64_t i = 0; i < counts.total(); ++i) {
      absl::StatusOr<std::size_t> size = in.Read(buffer, sleep, watchdog.deadline(), check);
      if (!size.ok()) return size.status();
      if (absl::Status s = out.Write(std::span<const std::byte>(buffer.data(), *size), sleep, watchdog.deadline(),
                                     Publish::kNow, check);
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  };
  const Side parent = [&](SharedArea& /*area*/, Watchdog& watchdog) -> absl::Status {
    Prefault(segment.header(), segment.size_bytes());
    eshm::RingProducer out = segment.MakeProducer(Direction::kMasterToSlave);
    eshm::RingConsumer in = segment.MakeConsumer(Direction::kSlaveToMaster);
    std::vector<std::byte> message(kBytes, std::byte{0x5a});
    std::vector<std::byte> reply(kBytes);
    const auto check = [&] { return watchdog.Check(); };
    LatencyRecorder recorder(static_cast<std::size_t>(counts.timed));
    recorder.Start();
    for (std::int64_t i = 0; i < counts.total(); ++i) {
      Stamp(message, static_cast<std::uint64_t>(i));
      if (absl::Status s = out.Write(message, sleep, watchdog.deadline(), Publish::kNow, check); !s.ok()) return s;
      absl::StatusOr<std::size_t> size = in.Read(reply, sleep, watchdog.deadline(), check);
      if (!size.ok()) return size.status();
      recorder.Lap(i >= counts.warmup);
      if (absl::Status s = CheckMessage(reply, *size, kBytes, static_cast<std::uint64_t>(i)); !s.ok()) return s;
    }
    result = recorder.Finish();
    return absl::OkStatus();
  };
  if (absl::StatusOr<ChildReport> report = RunPair(env, parent, child, &*bench); !report.ok()) {
    return report.status();
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// (e) Futex system calls in a stream whose reader stays awake

struct SyscallCount {
  std::uint64_t producer_wake = 0, producer_wait = 0;
  std::uint64_t consumer_wake = 0, consumer_wait = 0;
  std::uint64_t ring_wake = 0, ring_wait = 0;  // the ring's shared counters: both sides together
  double seconds = 0;
  std::uint64_t total() const { return ring_wake + ring_wait; }
};

absl::StatusOr<SyscallCount> RunEshmBlockingStream(const Env& env, std::int64_t count, Publish publish) {
  constexpr std::size_t kBytes = 64;
  absl::StatusOr<BenchSegment> bench = BenchSegment::Create(kSmallRingBytes);
  if (!bench.ok()) return bench.status();
  eshm::Segment& segment = bench->segment();
  const eshm::WaitStrategy adaptive = eshm::WaitStrategy::Adaptive();
  SyscallCount result;
  std::int64_t start_ns = 0;
  const Side child = [&](SharedArea& area, Watchdog& watchdog) -> absl::Status {
    Prefault(segment.header(), segment.size_bytes());
    eshm::RingConsumer consumer = segment.MakeConsumer(Direction::kMasterToSlave);
    std::vector<std::byte> buffer(kBytes);
    const auto check = [&] { return watchdog.Check(); };
    MarkChildReady(area);
    for (std::int64_t i = 0; i < count; ++i) {
      absl::StatusOr<std::size_t> size = consumer.Read(buffer, adaptive, watchdog.deadline(), check);
      if (!size.ok()) return size.status();
      if (absl::Status s = CheckMessage(buffer, *size, kBytes, static_cast<std::uint64_t>(i)); !s.ok()) return s;
    }
    area.report.end_ns = eshm::MonotonicNowNs();
    area.report.wake_syscalls = consumer.wake_syscalls();
    area.report.wait_syscalls = consumer.wait_syscalls();
    return absl::OkStatus();
  };
  const Side parent = [&](SharedArea& /*area*/, Watchdog& watchdog) -> absl::Status {
    Prefault(segment.header(), segment.size_bytes());
    eshm::RingProducer producer = segment.MakeProducer(Direction::kMasterToSlave);
    std::vector<std::byte> message(kBytes, std::byte{0x5a});
    const auto check = [&] { return watchdog.Check(); };
    start_ns = eshm::MonotonicNowNs();
    for (std::int64_t i = 0; i < count; ++i) {
      Stamp(message, static_cast<std::uint64_t>(i));
      if (absl::Status s = producer.Write(message, adaptive, watchdog.deadline(), publish, check); !s.ok()) return s;
    }
    producer.Flush();
    result.producer_wake = producer.wake_syscalls();
    result.producer_wait = producer.wait_syscalls();
    return absl::OkStatus();
  };
  absl::StatusOr<ChildReport> report = RunPair(env, parent, child, &*bench);
  if (!report.ok()) return report.status();
  const eshm::RingControl* control = segment.ring_control(Direction::kMasterToSlave);
  result.consumer_wake = report->wake_syscalls;
  result.consumer_wait = report->wait_syscalls;
  result.ring_wake = control->wait.wake_syscalls.load(std::memory_order_relaxed);
  result.ring_wait = control->wait.wait_syscalls.load(std::memory_order_relaxed);
  result.seconds = StreamSeconds(*report, start_ns);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Noise: CPU that other processes took while a repetition ran. On a two-core machine any of it comes out of
// one of our two pinned processes, so it is printed with every repetition.

struct CpuTimes {
  double busy_s = 0;   // all CPUs, all processes: user + nice + system + irq + softirq
  double steal_s = 0;  // taken by the hypervisor
  double own_s = 0;    // this process and its reaped children
  double wall_s = 0;
};

CpuTimes ReadCpuTimes() {
  CpuTimes t;
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  t.busy_s = static_cast<double>(user + nice + system + irq + softirq) / hz;
  t.steal_s = static_cast<double>(steal) / hz;
  for (const int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage u{};
    getrusage(who, &u);
    t.own_s += static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
               static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }
  t.wall_s = static_cast<double>(eshm::MonotonicNowNs()) / 1e9;
  return t;
}

class NoiseMeter {
 public:
  NoiseMeter() : start_(ReadCpuTimes()) {}
  // Average cores used by other processes, and stolen, since construction (10 ms resolution).
  std::string Summary() {
    const CpuTimes end = ReadCpuTimes();
    const double wall = std::max(1e-3, end.wall_s - start_.wall_s);
    const double others = std::max(0.0, (end.busy_s - start_.busy_s) - (end.own_s - start_.own_s)) / wall;
    const double steal = (end.steal_s - start_.steal_s) / wall;
    last_load_ = others + steal;
    return absl::StrFormat("[others %.2f cores, steal %.2f]", others, steal);
  }
  double last_load() const { return last_load_; }

 private:
  CpuTimes start_;
  double last_load_ = 0;
};

// ---------------------------------------------------------------------------------------------------------
// The results table

struct Row {
  std::string measurement;
  std::string baseline;
  std::string eshm;
  std::string ratio;
  std::string goal;
  std::string met;
};

std::string Ns(double ns) {
  return ns >= 10'000 ? absl::StrFormat("%.1f us", ns / 1000) : absl::StrFormat("%.0f ns", ns);
}
std::string MsgRate(double per_second) { return absl::StrFormat("%.2f M msg/s", per_second / 1e6); }
std::string GBps(double bytes_per_second) { return absl::StrFormat("%.2f GB/s", bytes_per_second / 1e9); }

enum class Goal { kNone, kAtMost, kAtLeast };

Row RatioRow(std::string measurement, std::string baseline, std::string eshm_value, double ratio, Goal goal,
             double goal_value) {
  Row row{std::move(measurement), std::move(baseline), std::move(eshm_value), absl::StrFormat("%.2f", ratio), "-", "-"};
  if (goal != Goal::kNone) {
    row.goal = absl::StrFormat("%s %.1f", goal == Goal::kAtMost ? "<=" : ">=", goal_value);
    const bool met = goal == Goal::kAtMost ? ratio <= goal_value : ratio >= goal_value;
    row.met = met ? "yes" : "NO";
  }
  return row;
}

void PrintTable(const std::vector<Row>& rows) {
  const Row header{"measurement", "baseline", "eshm", "ratio", "goal", "met?"};
  std::size_t w[6] = {0, 0, 0, 0, 0, 0};
  const auto widen = [&](const Row& r) {
    const std::string* cells[6] = {&r.measurement, &r.baseline, &r.eshm, &r.ratio, &r.goal, &r.met};
    for (int i = 0; i < 6; ++i) w[i] = std::max(w[i], cells[i]->size());
  };
  widen(header);
  for (const Row& r : rows) widen(r);
  const auto print = [&](const Row& r) {
    std::printf("| %-*s | %*s | %*s | %*s | %-*s | %-*s |\n", static_cast<int>(w[0]), r.measurement.c_str(),
                static_cast<int>(w[1]), r.baseline.c_str(), static_cast<int>(w[2]), r.eshm.c_str(),
                static_cast<int>(w[3]), r.ratio.c_str(), static_cast<int>(w[4]), r.goal.c_str(),
                static_cast<int>(w[5]), r.met.c_str());
  };
  print(header);
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(w[0] + 2, '-').c_str(), std::string(w[1] + 2, '-').c_str(),
              std::string(w[2] + 2, '-').c_str(), std::string(w[3] + 2, '-').c_str(),
              std::string(w[4] + 2, '-').c_str(), std::string(w[5] + 2, '-').c_str());
  for (const Row& r : rows) print(r);
}

// ---------------------------------------------------------------------------------------------------------
// Measurements: each alternates baseline and eshm runs and appends its rows.

struct Config {
  int repetitions;
  std::int64_t round_trips;
  std::int64_t blocking_round_trips;
  std::int64_t messages;
  std::int64_t large_messages;
  double max_noise;
  int noisy_retries;
  std::vector<std::string> only;
  bool Wants(const std::string& name) const {
    return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
  }
};

struct PercentileSeries {
  std::vector<double> p50, p90, p99;
  void Add(const Percentiles& p) {
    p50.push_back(p.p50);
    p90.push_back(p.p90);
    p99.push_back(p.p99);
  }
  Percentiles Medians() const { return {Median(p50), Median(p90), Median(p99)}; }
};

void AddLatencyRows(std::vector<Row>& rows, const std::string& what, const Percentiles& base,
                    const Percentiles& eshm_value, double p50_goal) {
  rows.push_back(RatioRow(what + ", p50", Ns(base.p50), Ns(eshm_value.p50), eshm_value.p50 / base.p50,
                          Goal::kAtMost, p50_goal));
  rows.push_back(RatioRow(what + ", p90", Ns(base.p90), Ns(eshm_value.p90), eshm_value.p90 / base.p90, Goal::kNone, 0));
  rows.push_back(RatioRow(what + ", p99", Ns(base.p99), Ns(eshm_value.p99), eshm_value.p99 / base.p99, Goal::kNone, 0));
}

std::string Brief(const Percentiles& p) { return absl::StrFormat("p50 %s p99 %s", Ns(p.p50), Ns(p.p99)); }

// Runs `run` (one repetition: every variant once, returning a struct with Line()) until `keep` has been given
// config.repetitions results. A repetition during which other processes took more than --max_noise cores
// is printed, dropped and run again, at most --noisy_retries times per measurement.
int g_disturbed_kept = 0;  // disturbed repetitions kept because the retries ran out

// The hardware floor right now: p50 of a short atomic ping-pong. On a virtual machine the hypervisor may
// move the two vCPUs between separate cores (~300 ns here) and SMT siblings of one core (~60 ns) at any
// time, which changes every result; probing before and after a repetition catches such a move.
absl::StatusOr<double> ProbeFloorNs(const Env& env) {
  absl::StatusOr<Percentiles> p = RunAtomicPingPong(env, PingPongCounts{2000, 20000});
  if (!p.ok()) return p.status();
  return p->p50;
}

// Runs `run` (one repetition: every variant once, returning a struct with Line()) until `keep` has been given
// config.repetitions results. A repetition is disturbed if other processes took more than --max_noise
// cores meanwhile, or if the floor probes before and after it differ by more than 25% (the vCPUs moved);
// a disturbed repetition is printed, dropped and run again, at most --noisy_retries times per measurement.
template <typename Run, typename Keep>
absl::Status Repeat(const Env& env, const Config& config, const std::string& what, Run run, Keep keep) {
  int retries_left = config.noisy_retries;
  for (int rep = 1; rep <= config.repetitions;) {
    NoiseMeter noise;
    const absl::StatusOr<double> floor_before = ProbeFloorNs(env);
    if (!floor_before.ok()) return floor_before.status();
    auto result = run();
    if (!result.ok()) return result.status();
    const absl::StatusOr<double> floor_after = ProbeFloorNs(env);
    if (!floor_after.ok()) return floor_after.status();
    const std::string summary = noise.Summary();
    const bool moved = std::max(*floor_before, *floor_after) > 1.25 * std::min(*floor_before, *floor_after);
    const bool disturbed = moved || noise.last_load() > config.max_noise;
    const bool again = disturbed && retries_left > 0;
    std::printf("  %s %d/%d: %s %s [floor %.0f -> %.0f ns]%s\n", what.c_str(), rep, config.repetitions,
                result->Line().c_str(), summary.c_str(), *floor_before, *floor_after,
                again ? " -> disturbed, dropped and run again" : (disturbed ? " -> disturbed, KEPT" : ""));
    std::fflush(stdout);
    if (again) {
      --retries_left;
      continue;
    }
    if (disturbed) ++g_disturbed_kept;
    keep(*result);
    ++rep;
  }
  return absl::OkStatus();
}

struct PingPongRep {
  Percentiles atomic, atomic64, eshm64, eshm8;
  std::string Line() const {
    return absl::StrCat("atomic ", Brief(atomic), " | atomic+64 B ", Brief(atomic64), " | eshm 64 B ", Brief(eshm64),
                        " | eshm 8 B ", Brief(eshm8));
  }
};

absl::Status MeasurePingPong(const Env& env, const Config& config, std::vector<Row>& rows) {
  const PingPongCounts counts = CountsFor(config.round_trips);
  PercentileSeries atomic, atomic64, eshm64, eshm8;
  const auto run = [&]() -> absl::StatusOr<PingPongRep> {
    absl::StatusOr<Percentiles> a = RunAtomicPingPong(env, counts);
    if (!a.ok()) return a.status();
    absl::StatusOr<Percentiles> a64 = RunAtomicPayloadPingPong(env, counts);
    if (!a64.ok()) return a64.status();
    absl::StatusOr<Percentiles> e64 = RunEshmPingPong(env, 64, counts);
    if (!e64.ok()) return e64.status();
    absl::StatusOr<Percentiles> e8 = RunEshmPingPong(env, 8, counts);
    if (!e8.ok()) return e8.status();
    return PingPongRep{*a, *a64, *e64, *e8};
  };
  const absl::Status status = Repeat(env, config, "pingpong", run, [&](const PingPongRep& r) {
    atomic.Add(r.atomic);
    atomic64.Add(r.atomic64);
    eshm64.Add(r.eshm64);
    eshm8.Add(r.eshm8);
  });
  if (!status.ok()) return status;
  AddLatencyRows(rows, "spin round trip 64 B vs atomic ping-pong", atomic.Medians(), eshm64.Medians(), 1.5);
  AddLatencyRows(rows, "spin round trip 8 B vs atomic ping-pong", atomic.Medians(), eshm8.Medians(), 1.5);
  const Percentiles payload_floor = atomic64.Medians(), e = eshm64.Medians();
  rows.push_back(RatioRow("(info) spin round trip 64 B vs atomic+64 B payload, p50", Ns(payload_floor.p50),
                          Ns(e.p50), e.p50 / payload_floor.p50, Goal::kNone, 0));
  return absl::OkStatus();
}

struct StreamRep {
  double minimal, deferred, uncached, now;  // messages per second
  std::string Line() const {
    return absl::StrCat("minimal ring ", MsgRate(minimal), " | eshm kDeferred ", MsgRate(deferred),
                        " | uncached minimal ring ", MsgRate(uncached), " | eshm kNow ", MsgRate(now));
  }
};

absl::Status MeasureStream(const Env& env, const Config& config, std::vector<Row>& rows) {
  using eshm_bench::IndexCaching;
  const StreamSpec spec{64, config.messages, kSmallRingBytes};
  const double n = static_cast<double>(spec.count);
  std::vector<double> minimal, uncached, deferred, now;
  // Baseline and eshm alternate within the repetition.
  const auto run = [&]() -> absl::StatusOr<StreamRep> {
    absl::StatusOr<double> m = RunMinimalStream<IndexCaching::kCached>(env, spec);
    if (!m.ok()) return m.status();
    absl::StatusOr<double> d = RunEshmStream(env, spec, Publish::kDeferred);
    if (!d.ok()) return d.status();
    absl::StatusOr<double> u = RunMinimalStream<IndexCaching::kUncached>(env, spec);
    if (!u.ok()) return u.status();
    absl::StatusOr<double> k = RunEshmStream(env, spec, Publish::kNow);
    if (!k.ok()) return k.status();
    return StreamRep{n / *m, n / *d, n / *u, n / *k};
  };
  const absl::Status status = Repeat(env, config, "stream 64 B", run, [&](const StreamRep& r) {
    minimal.push_back(r.minimal);
    deferred.push_back(r.deferred);
    uncached.push_back(r.uncached);
    now.push_back(r.now);
  });
  if (!status.ok()) return status;
  const double base = Median(minimal), d = Median(deferred), k = Median(now), u = Median(uncached);
  rows.push_back(RatioRow("stream 64 B, eshm kDeferred vs minimal ring", MsgRate(base), MsgRate(d), d / base,
                          Goal::kAtLeast, 1.3));
  rows.push_back(RatioRow("stream 64 B, eshm kDeferred vs old library", MsgRate(kOldLibraryMessagesPerSecond),
                          MsgRate(d), d / kOldLibraryMessagesPerSecond, Goal::kAtLeast, 10));
  rows.push_back(RatioRow("(info) stream 64 B, eshm kNow vs minimal ring", MsgRate(base), MsgRate(k), k / base,
                          Goal::kNone, 0));
  rows.push_back(RatioRow("(info) stream 64 B, eshm kDeferred vs uncached minimal ring", MsgRate(u), MsgRate(d),
                          d / u, Goal::kNone, 0));
  return absl::OkStatus();
}

struct LargeRep {
  double minimal, eshm_rate;  // bytes per second
  std::string Line() const { return absl::StrCat("minimal ring ", GBps(minimal), " | eshm ", GBps(eshm_rate)); }
};

absl::Status MeasureLarge(const Env& env, const Config& config, std::vector<Row>& rows) {
  const StreamSpec spec{kLargeMessageBytes, config.large_messages, kLargeRingBytes};
  const double bytes = static_cast<double>(spec.count) * static_cast<double>(spec.bytes);
  std::vector<double> minimal, eshm_rate;
  const auto run = [&]() -> absl::StatusOr<LargeRep> {
    absl::StatusOr<double> m = RunMinimalStream<eshm_bench::IndexCaching::kCached>(env, spec);
    if (!m.ok()) return m.status();
    absl::StatusOr<double> e = RunEshmStream(env, spec, Publish::kDeferred);
    if (!e.ok()) return e.status();
    return LargeRep{bytes / *m, bytes / *e};
  };
  const absl::Status status = Repeat(env, config, "stream 64 KiB", run, [&](const LargeRep& r) {
    minimal.push_back(r.minimal);
    eshm_rate.push_back(r.eshm_rate);
  });
  if (!status.ok()) return status;
  const double base = Median(minimal), e = Median(eshm_rate);
  rows.push_back(RatioRow("stream 64 KiB vs minimal ring", GBps(base), GBps(e), e / base, Goal::kAtLeast, 0.8));
  return absl::OkStatus();
}

struct BlockingRep {
  Percentiles futex, eshm_value;
  std::string Line() const { return absl::StrCat("raw futex ", Brief(futex), " | eshm Sleep() ", Brief(eshm_value)); }
};

absl::Status MeasureBlocking(const Env& env, const Config& config, std::vector<Row>& rows) {
  const PingPongCounts counts = CountsFor(config.blocking_round_trips);
  PercentileSeries futex, eshm_series;
  const auto run = [&]() -> absl::StatusOr<BlockingRep> {
    absl::StatusOr<Percentiles> f = RunFutexPingPong(env, counts);
    if (!f.ok()) return f.status();
    absl::StatusOr<Percentiles> e = RunEshmBlockingPingPong(env, counts);
    if (!e.ok()) return e.status();
    return BlockingRep{*f, *e};
  };
  const absl::Status status = Repeat(env, config, "blocking", run, [&](const BlockingRep& r) {
    futex.Add(r.futex);
    eshm_series.Add(r.eshm_value);
  });
  if (!status.ok()) return status;
  AddLatencyRows(rows, "blocking round trip 64 B vs raw futex ping-pong", futex.Medians(), eshm_series.Medians(), 1.2);
  return absl::OkStatus();
}

struct SyscallRep {
  SyscallCount count;
  double rate;  // messages per second
  std::string Line() const {
    const auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
    return absl::StrFormat(
        "%s; futex calls: producer %d wake + %d wait, consumer %d wake + %d wait (ring counters %d + %d)",
        MsgRate(rate), u(count.producer_wake), u(count.producer_wait), u(count.consumer_wake),
        u(count.consumer_wait), u(count.ring_wake), u(count.ring_wait));
  }
};

absl::Status MeasureSyscalls(const Env& env, const Config& config, std::vector<Row>& rows) {
  struct Variant {
    const char* name;
    Publish publish;
  };
  const double n = static_cast<double>(config.messages);
  for (const Variant& v : {Variant{"kDeferred", Publish::kDeferred}, Variant{"kNow", Publish::kNow}}) {
    std::vector<double> per_message, rates;
    std::uint64_t total = 0;
    const auto run = [&]() -> absl::StatusOr<SyscallRep> {
      absl::StatusOr<SyscallCount> c = RunEshmBlockingStream(env, config.messages, v.publish);
      if (!c.ok()) return c.status();
      return SyscallRep{*c, n / c->seconds};
    };
    const absl::Status status =
        Repeat(env, config, absl::StrCat("syscalls ", v.name), run, [&](const SyscallRep& r) {
          total += r.count.total();
          per_message.push_back(static_cast<double>(r.count.total()) / n);
          rates.push_back(r.rate);
        });
    if (!status.ok()) return status;
    const double median = Median(per_message);
    rows.push_back(Row{absl::StrFormat("futex calls/msg, 64 B Adaptive Write(%s)/Read", v.name), "-",
                       absl::StrFormat("%.2g (%d calls / %d msgs)", median, static_cast<unsigned long long>(total),
                                       static_cast<long long>(config.messages) * config.repetitions),
                       "-", "0", median == 0 ? "yes" : "NO"});
    rows.push_back(Row{"  same stream, throughput (info)", "-", MsgRate(Median(rates)), "-", "-", "-"});
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------------------
// Setup

void PrintMachineSummary(const CpuPlan& cpus) {
  const eshm_bench::MachineInfo machine = eshm_bench::ReadMachineInfo();
  std::printf("machine: %s | %d online cores (%zu allowed) | %s | clocksource %s\n", machine.cpu_model.c_str(),
              machine.logical_cpus, eshm_bench::AllowedCpus().size(), machine.kernel.c_str(),
              machine.clocksource.c_str());
  std::printf("load: %s (1/5/15-min load average; other work skews results)\n", machine.load_average.c_str());
  std::printf("setup: two processes (fork), shared memory, %s, spin-poll PAUSE %s\n", cpus.note.c_str(),
              g_spin_pause ? "on" : "off");
}

// --quick lowers the counts, except those given explicitly on the command line.
template <typename T>
T QuickDefault(const absl::Flag<T>& flag, const char* name, T quick_value) {
  const absl::CommandLineFlag* reflected = absl::FindCommandLineFlag(name);
  const bool explicit_value = reflected != nullptr && reflected->CurrentValue() != reflected->DefaultValue();
  return absl::GetFlag(FLAGS_quick) && !explicit_value ? quick_value : absl::GetFlag(flag);
}

absl::StatusOr<Config> ResolveConfig() {
  Config c;
  c.repetitions = QuickDefault(FLAGS_repetitions, "repetitions", 3);
  c.round_trips = QuickDefault(FLAGS_round_trips, "round_trips", std::int64_t{50000});
  c.blocking_round_trips = QuickDefault(FLAGS_blocking_round_trips, "blocking_round_trips", std::int64_t{2000});
  c.messages = QuickDefault(FLAGS_messages, "messages", std::int64_t{5000000});
  c.large_messages = std::max<std::int64_t>(1000, c.messages / 400);
  c.max_noise = absl::GetFlag(FLAGS_max_noise);
  c.noisy_retries = std::max(0, absl::GetFlag(FLAGS_noisy_retries));
  if (c.repetitions < 1 || c.round_trips < 1 || c.blocking_round_trips < 1 || c.messages < 1 ||
      c.blocking_round_trips > (std::int64_t{1} << 31) || absl::GetFlag(FLAGS_timeout_s) < 1) {
    return absl::InvalidArgumentError("--repetitions, counts and --timeout_s must be positive");
  }
  const std::string only = absl::GetFlag(FLAGS_only);
  for (const absl::string_view name : absl::StrSplit(only, ',', absl::SkipEmpty())) {
    if (name != "pingpong" && name != "stream" && name != "large" && name != "blocking" && name != "syscalls") {
      return absl::InvalidArgumentError(absl::StrCat("--only: unknown measurement '", name,
                                                     "'; use pingpong,stream,large,blocking,syscalls"));
    }
    c.only.emplace_back(name);
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<Config> config = ResolveConfig();
  if (!config.ok()) {
    std::fprintf(stderr, "ipc_benchmark: %s\n", config.status().ToString().c_str());
    return 2;
  }
  g_spin_pause = absl::GetFlag(FLAGS_spin_pause);
  const CpuPlan cpus = PlanCpus(absl::GetFlag(FLAGS_pin));
  g_spin_yield = cpus.single_cpu;
  PrintMachineSummary(cpus);
  if (cpus.pinned && !PinSelf(cpus.parent_cpu)) {
    std::fprintf(stderr, "ipc_benchmark: sched_setaffinity: %s\n", std::strerror(errno));
    return 2;
  }
  std::printf("counts: %d repetitions | %lld spin round trips | %lld blocking round trips | %lld x 64 B | "
              "%lld x 64 KiB (medians of repetitions below)\n",
              config->repetitions, static_cast<long long>(config->round_trips),
              static_cast<long long>(config->blocking_round_trips), static_cast<long long>(config->messages),
              static_cast<long long>(config->large_messages));
  InstallSignalHandlers();
  const Env env{cpus, absl::GetFlag(FLAGS_timeout_s)};

  struct Measurement {
    const char* name;
    absl::Status (*run)(const Env&, const Config&, std::vector<Row>&);
  };
  const Measurement measurements[] = {
      {"pingpong", MeasurePingPong}, {"stream", MeasureStream},     {"large", MeasureLarge},
      {"blocking", MeasureBlocking}, {"syscalls", MeasureSyscalls},
  };
  std::vector<Row> rows;
  bool all_ok = true;
  for (const Measurement& m : measurements) {
    if (!config->Wants(m.name)) continue;
    if (absl::Status s = m.run(env, *config, rows); !s.ok()) {
      std::printf("  %s FAILED: %s\n", m.name, s.ToString().c_str());
      all_ok = false;
    }
  }
  std::printf("\n");
  if (g_disturbed_kept > 0) {
    std::printf("WARNING: %d disturbed repetition(s) kept (other processes took more than %.2f cores, or the "
                "floor moved by more than 25%%) because --noisy_retries ran out; rerun on a quiet machine.\n\n",
                g_disturbed_kept, config->max_noise);
  }
  PrintTable(rows);
  return all_ok ? 0 : 1;
}
