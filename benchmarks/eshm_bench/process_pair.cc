#include "benchmarks/eshm_bench/process_pair.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "benchmarks/eshm_bench/timing.h"

namespace eshm_bench {

namespace {

// Signal-handler state: plain globals, read with async-signal-safe calls only.
volatile sig_atomic_t g_child_pid = 0;
volatile sig_atomic_t g_child_is_group = 0;  // RunProgram's child leads a process group: kill all of it
constexpr int kCleanupSlots = 16;
struct CleanupSlot {
  // Set once path, first and count are written; lock-free, so the signal handler may read it.
  std::atomic<bool> used{false};
  char path[256];
  int first;  // with count > 0: the names path<first> .. path<first + count - 1>
  int count;
};
static_assert(std::atomic<bool>::is_always_lock_free);
CleanupSlot g_cleanup[kCleanupSlots];

// Removes a slot's files. Async-signal-safe: no allocation, no formatting library.
void UnlinkSlot(const CleanupSlot& slot) {
  if (slot.count <= 0) {
    unlink(slot.path);
    return;
  }
  char name[sizeof(slot.path) + 12];
  const std::size_t length = std::strlen(slot.path);
  std::memcpy(name, slot.path, length);
  for (int i = slot.first; i < slot.first + slot.count; ++i) {
    char digits[12];
    int n = 0;
    for (int v = i; n == 0 || v > 0; v /= 10) digits[n++] = static_cast<char>('0' + v % 10);
    for (int k = 0; k < n; ++k) name[length + k] = digits[n - 1 - k];
    name[length + n] = '\0';
    unlink(name);
  }
}
constexpr int kHelperSlots = 4;
volatile sig_atomic_t g_helper_pids[kHelperSlots] = {};  // each leads a process group; 0 = free slot

}  // namespace

void StopGroup(pid_t pid) {
  kill(-pid, SIGTERM);
  for (int i = 0; i < 200 && waitpid(pid, nullptr, WNOHANG) == 0; ++i) {
    const timespec ten_ms{0, 10'000'000};
    nanosleep(&ten_ms, nullptr);
  }
  kill(-pid, SIGKILL);
  waitpid(pid, nullptr, 0);  // if the loop has not reaped it
}

namespace {

void OnFatalSignal(int signal_number) {
  const pid_t child = g_child_pid;
  if (child > 0 && g_child_is_group) {
    StopGroup(child);  // a program: it removes what it created
  } else if (child > 0) {
    kill(child, SIGKILL);  // the pair's child: its names are registered here
    waitpid(child, nullptr, 0);  // reap it: an orphaned zombie would be left to init
  }
  // Helpers too, and before the names go: a helper holding a master role would re-create its removed name.
  for (const auto& helper : g_helper_pids) {
    if (helper > 0) StopGroup(helper);
  }
  static const char kMessage[] = "\neshm-bench: stopped by a signal; child killed, segments removed\n";
  if (write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1) < 0) {
    // Nothing else to do in a signal handler.
  }
  // The names go last, right before the exit: this process's monitor thread learns of a master's removed
  // name from inotify at once and re-creates it, so nothing may run between the unlinks and the exit. (A
  // sanitizer's _exit runs its own finalization first, hence exit_group by raw syscall: it ends every
  // thread at once.)
  for (const CleanupSlot& slot : g_cleanup) {
    // acquire: pairs with the release store in RegisterCleanupPath; the slot's fields are complete.
    if (slot.used.load(std::memory_order_acquire)) UnlinkSlot(slot);
  }
  syscall(SYS_exit_group, 128 + signal_number);
  _exit(128 + signal_number);  // not reached
}

constexpr int kFatalSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGALRM};

void RestoreDefaultSignals() {
  for (const int s : kFatalSignals) signal(s, SIG_DFL);
}

std::int64_t NowNs() { return static_cast<std::int64_t>(Clock::MonotonicNs()); }

[[noreturn]] void RunChild(const PairConfig& config, RunControl& control, pid_t parent, std::int64_t deadline_ns,
                           const SideFn& child) {
  RestoreDefaultSignals();
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the parent
  if (getppid() != parent) _exit(3);
  alarm(static_cast<unsigned>(config.timeout_s + 10));  // backstop behind the watchdog
  absl::Status status = absl::OkStatus();
  if (config.pinned) status = PinSelf(config.child_cpu);
  Watchdog watchdog(deadline_ns, parent, /*peer_is_child=*/false, config.spin_yield);
  if (status.ok()) status = child(control, watchdog);
  if (!status.ok()) {
    std::snprintf(control.report.error, sizeof(control.report.error), "%s", status.ToString().c_str());
  }
  _exit(status.ok() ? 0 : 1);  // _exit: the parent's buffers and destructors are not ours to run
}

absl::Status Reap(const RunControl& control, pid_t pid, bool kill_first) {
  if (kill_first) kill(pid, SIGKILL);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return absl::OkStatus();
  if (kill_first) return absl::OkStatus();  // the parent side's error is the one to report
  if (WIFEXITED(wstatus)) {
    return absl::InternalError(
        absl::StrCat("child failed: ", control.report.error[0] != '\0' ? control.report.error : "(no message)"));
  }
  return absl::InternalError(
      absl::StrCat("child killed by signal ", WTERMSIG(wstatus), " (", strsignal(WTERMSIG(wstatus)), ")"));
}

}  // namespace

SharedMapping::SharedMapping(std::size_t bytes)
    : bytes_(bytes),
      base_(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)) {
  if (base_ == MAP_FAILED) base_ = nullptr;
}

SharedMapping::~SharedMapping() {
  if (base_ != nullptr) munmap(base_, bytes_);
}

bool Watchdog::ExpiredNow() {
  const std::int64_t now = NowNs();
  if (now >= deadline_ns_) {
    reason_ = "timed out (see --timeout_s)";
    return true;
  }
  if (now - last_peer_check_ns_ < 10'000'000) return false;
  last_peer_check_ns_ = now;
  // A peer that has just sent its last message and exited is not a failure: the caller may not have polled
  // since. So the peer must be seen gone at two checks (10 ms apart), with polls in between.
  if (!PeerGone()) {
    peer_gone_checks_ = 0;
    return false;
  }
  if (++peer_gone_checks_ < 2) return false;
  reason_ = peer_is_child_ ? "the child process exited" : "the parent process exited";
  return true;
}

std::uint64_t Watchdog::DeadlineTicks() const {
  const std::int64_t left_ns = std::max<std::int64_t>(0, deadline_ns_ - NowNs());
  return Clock::Ticks() + Clock::FromNs(static_cast<double>(left_ns));
}

absl::Status Watchdog::Error(const std::string& what) const {
  return absl::DeadlineExceededError(absl::StrCat(what, ": ", reason_));
}

bool Watchdog::SleepUntil(const std::function<bool()>& ready) {
  while (!ready()) {
    if (ExpiredNow()) return ready();
    usleep(100);
  }
  return true;
}

bool Watchdog::PeerGone() const {
  if (!peer_is_child_) return getppid() != peer_;
  siginfo_t info{};
  // WNOWAIT: look without reaping; RunPair reaps.
  return waitid(P_PID, static_cast<id_t>(peer_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != 0;
}

absl::Status PinSelf(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (sched_setaffinity(0, sizeof(one), &one) != 0) {
    return absl::InternalError(absl::StrCat("sched_setaffinity(CPU ", cpu, "): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::vector<int> AllowedCpus() {
  std::vector<int> cpus;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  }
  return cpus;
}

absl::Status RunPair(const PairConfig& config, const SideFn& parent, const SideFn& child, ChildReport* report) {
  const SharedMapping mapping(sizeof(RunControl));
  if (!mapping.ok()) return absl::InternalError(absl::StrCat("mmap: ", std::strerror(errno)));
  RunControl& control = *new (mapping.data()) RunControl();
  // Relaxed: written before the fork, which orders them before anything the child does.
  control.first_timed.value.store(UINT64_MAX, std::memory_order_relaxed);
  control.total.value.store(UINT64_MAX, std::memory_order_relaxed);
  std::fflush(stdout);
  std::fflush(stderr);
  const std::int64_t deadline_ns = NowNs() + std::int64_t{config.timeout_s} * 1'000'000'000;
  const pid_t parent_pid = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) RunChild(config, control, parent_pid, deadline_ns, child);

  g_child_pid = pid;
  alarm(static_cast<unsigned>(config.timeout_s + 30));  // backstop: the handler kills the child and exits
  Watchdog watchdog(deadline_ns, pid, /*peer_is_child=*/true, config.spin_yield);
  absl::Status status = parent(control, watchdog);
  const absl::Status reaped = Reap(control, pid, /*kill_first=*/!status.ok());
  alarm(0);
  g_child_pid = 0;
  if (!status.ok()) return status;
  if (!reaped.ok()) return reaped;
  if (report != nullptr) *report = control.report;
  return absl::OkStatus();
}

absl::StatusOr<pid_t> StartProgram(const std::vector<std::string>& argv, int output_fd, int death_signal) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    RestoreDefaultSignals();
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, death_signal);
    if (getppid() != parent) _exit(127);  // the parent died before the line above
    dup2(output_fd, STDOUT_FILENO);
    dup2(output_fd, STDERR_FILENO);
    execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);  // also here: whichever of the two runs first, the group exists before a signal
  return pid;
}

absl::StatusOr<ProgramRun> RunProgram(const std::vector<std::string>& argv, int timeout_s) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  const absl::StatusOr<pid_t> pid = StartProgram(argv, out[1], SIGKILL);
  close(out[1]);
  if (!pid.ok()) {
    close(out[0]);
    return pid.status();
  }
  g_child_is_group = 1;
  g_child_pid = *pid;
  ProgramRun run;
  // Until the end of the output: the program, and whatever it started, have exited (or closed it).
  const std::int64_t deadline_ns = NowNs() + std::int64_t{timeout_s} * 1'000'000'000;
  bool timed_out = false;
  for (;;) {
    const std::int64_t left_ms = (deadline_ns - NowNs()) / 1'000'000;
    if ((timed_out = left_ms <= 0)) break;
    pollfd readable = {out[0], POLLIN, 0};
    const int ready = poll(&readable, 1, static_cast<int>(std::min<std::int64_t>(left_ms, 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    char buffer[4096];
    const ssize_t n = read(out[0], buffer, sizeof(buffer));
    if (n > 0) run.output.append(buffer, static_cast<std::size_t>(n));
    if (n == 0 || (n < 0 && errno != EINTR)) break;
  }
  int wstatus = 0;
  if (timed_out) {
    StopGroup(*pid);
  } else {
    while (waitpid(*pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    kill(-*pid, SIGKILL);  // whatever the program left running in its group
  }
  close(out[0]);
  g_child_pid = 0;
  g_child_is_group = 0;
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(argv[0], " did not finish within ", timeout_s, " s"));
  }
  run.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  return run;
}

int RegisterCleanupPath(const std::string& path, int first, int count) {
  for (int i = 0; i < kCleanupSlots; ++i) {
    CleanupSlot& slot = g_cleanup[i];
    // Relaxed: only this thread registers; the handler reads the flag with acquire.
    if (slot.used.load(std::memory_order_relaxed) || path.size() >= sizeof(slot.path)) continue;
    slot.first = first;
    slot.count = count;
    std::memcpy(slot.path, path.c_str(), path.size() + 1);
    // release: pairs with the handler's acquire load; it never sees a half-written slot.
    slot.used.store(true, std::memory_order_release);
    return i;
  }
  return -1;
}

void UnregisterCleanupPath(int slot) {
  // Relaxed: the handler either still removes the files or no longer does; both are right here.
  if (slot >= 0 && slot < kCleanupSlots) g_cleanup[slot].used.store(false, std::memory_order_relaxed);
}

void RemoveCleanupPath(int slot) {
  if (slot < 0 || slot >= kCleanupSlots || !g_cleanup[slot].used.load(std::memory_order_relaxed)) return;
  UnlinkSlot(g_cleanup[slot]);
  UnregisterCleanupPath(slot);
}

int RegisterHelperProcess(pid_t pid) {
  for (int i = 0; i < kHelperSlots; ++i) {
    if (g_helper_pids[i] == 0) {
      g_helper_pids[i] = pid;
      return i;
    }
  }
  return -1;
}

void UnregisterHelperProcess(int slot) {
  if (slot >= 0 && slot < kHelperSlots) g_helper_pids[slot] = 0;
}

void InstallSignalHandlers() {
  struct sigaction action {};
  action.sa_handler = OnFatalSignal;
  sigemptyset(&action.sa_mask);
  for (const int s : kFatalSignals) sigaction(s, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

}  // namespace eshm_bench
