#include "benchmarks/eshm_bench/idle.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmarks/eshm_bench/process_pair.h"
#include "benchmarks/eshm_bench/timing.h"
#include "benchmarks/eshm_bench/transport.h"
#include "eshm/channel.h"
#include "eshm/segment.h"

namespace eshm_bench {
namespace {

// What one side's process sends back through its pipe.
struct SideReport {
  double cpu_percent = 0;
  double open_s = 0;
  double close_s = 0;
  int peers_alive = 0;
  char error[256] = "";
};

double Seconds() { return static_cast<double>(Clock::MonotonicNs()) / 1e9; }

bool WriteAll(int fd, const void* data, std::size_t size) {
  return write(fd, data, size) == static_cast<ssize_t>(size);
}

// One side: opens its channels (the masters, with peers, wait until every slave is alive), says so (a byte on
// `ready`), waits for the go (a byte on `go`), measures its CPU over the window; a slave then waits for a
// second byte (the masters have looked at it); it closes its channels and reports on `ready`.
[[noreturn]] void RunSide(const std::string& prefix, int channels, double window_s, bool master, bool peers,
                          int ready, int go) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  SideReport report;
  eshm::ChannelOptions options;
  options.role = master ? eshm::ChannelRole::kMaster : eshm::ChannelRole::kSlave;
  options.m2s_capacity = options.s2m_capacity = 4096;
  options.max_reconnect_attempts = 600;
  options.reconnect_retry_interval_ms = 50;
  std::vector<std::unique_ptr<eshm::Channel>> open;
  double start = Seconds();
  for (int i = 0; i < channels && report.error[0] == '\0'; ++i) {
    absl::StatusOr<std::unique_ptr<eshm::Channel>> channel = eshm::Channel::Open(absl::StrCat(prefix, "_", i), options);
    if (channel.ok()) {
      open.push_back(*std::move(channel));
    } else {
      std::snprintf(report.error, sizeof(report.error), "%s", channel.status().ToString().c_str());
    }
  }
  report.open_s = Seconds() - start;
  // With peers, the masters wait (up to 60 s) until every slave is seen alive: the window measures pairs.
  const double wait_until = Seconds() + 60;
  while (master && peers && report.error[0] == '\0' && Seconds() < wait_until &&
         !std::all_of(open.begin(), open.end(), [](const auto& c) { return c->IsRemoteAlive(); })) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  char byte = 'o';
  if (!WriteAll(ready, &byte, 1) || read(go, &byte, 1) != 1) _exit(3);
  if (report.error[0] == '\0') {
    const double cpu0 = CpuSeconds(), wall0 = Seconds();
    absl::SleepFor(absl::Seconds(window_s));
    report.cpu_percent = 100.0 * (CpuSeconds() - cpu0) / (Seconds() - wall0);
    for (const auto& channel : open) report.peers_alive += channel->IsRemoteAlive() ? 1 : 0;
  }
  // The slaves close only once the masters have looked at them (a second byte on `go`).
  if (!master && read(go, &byte, 1) != 1) _exit(3);
  start = Seconds();
  open.clear();  // closes them
  report.close_s = Seconds() - start;
  _exit(WriteAll(ready, &report, sizeof(report)) ? 0 : 3);
}

struct Side {
  pid_t pid = -1;
  int ready = -1;  // read end: the side's byte, then its report
  int go = -1;     // write end
  int helper_slot = -1;
};

absl::StatusOr<Side> StartSide(const std::string& prefix, int channels, double window_s, bool master, bool peers) {
  int ready[2], go[2];
  if (pipe(ready) != 0 || pipe(go) != 0) return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    setpgid(0, 0);  // a group of its own: a signal's handler stops it as a helper (StopGroup)
    close(ready[0]);
    close(go[1]);
    RunSide(prefix, channels, window_s, master, peers, ready[1], go[0]);
  }
  setpgid(pid, pid);  // also here: whichever of the two runs first, the group exists before a signal
  close(ready[1]);
  close(go[0]);
  return Side{pid, ready[0], go[1], RegisterHelperProcess(pid)};
}

// Reads exactly `size` bytes within `timeout_s`; false if the side exits, fails or hangs first.
bool ReadWithin(int fd, void* data, std::size_t size, int timeout_s) {
  const std::uint64_t deadline_ns = Clock::MonotonicNs() + std::uint64_t{1'000'000'000} * timeout_s;
  for (std::size_t got = 0; got < size;) {
    const std::uint64_t now = Clock::MonotonicNs();
    pollfd readable = {fd, POLLIN, 0};
    if (now >= deadline_ns || poll(&readable, 1, static_cast<int>((deadline_ns - now) / 1'000'000) + 1) < 0) {
      if (now < deadline_ns && errno == EINTR) continue;
      return false;
    }
    if (readable.revents == 0) continue;
    const ssize_t n = read(fd, static_cast<char*>(data) + got, size - got);
    if (n == 0 || (n < 0 && errno != EINTR)) return false;  // the side exited without reporting
    got += n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  return true;
}

}  // namespace

absl::StatusOr<IdleResult> MeasureIdle(int channels, double window_s, bool peers, int timeout_s) {
  const std::string prefix = UniqueName();
  // A signal stops the sides and removes their channels (the masters' segments, `prefix`_0 ...).
  const int names = RegisterCleanupPath(eshm::Segment::PathFor(prefix + "_"), 0, channels);
  std::vector<Side> sides;
  absl::Status status = absl::OkStatus();
  for (const bool master : {true, false}) {
    if (!master && !peers) break;
    absl::StatusOr<Side> side = StartSide(prefix, channels, window_s, master, peers);
    if (!side.ok()) {
      status = side.status();
      break;
    }
    sides.push_back(*side);
  }
  std::vector<SideReport> reports(sides.size());
  char byte = 0;
  for (const Side& side : sides) {
    if (status.ok() && !ReadWithin(side.ready, &byte, 1, timeout_s)) {
      status = absl::DeadlineExceededError(
          absl::StrCat("opening ", channels, " channels took over ", timeout_s, " s (or a side failed)"));
    }
  }
  if (status.ok()) {
    std::this_thread::sleep_for(std::chrono::seconds(1));  // let the monitors settle (peers find each other)
    for (const Side& side : sides) WriteAll(side.go, "g", 1);
    for (std::size_t i = 0; i < sides.size(); ++i) {
      if (i == 1) WriteAll(sides[i].go, "c", 1);  // the masters have reported: the slaves may close
      // The window, then --timeout_s to close the channels and report.
      const int report_s = timeout_s + static_cast<int>(window_s) + 1;
      if (status.ok() && !ReadWithin(sides[i].ready, &reports[i], sizeof(SideReport), report_s)) {
        status = absl::DeadlineExceededError(absl::StrCat("an idle process did not report within ", report_s, " s"));
      }
    }
  }
  for (const Side& side : sides) {
    if (!status.ok()) kill(side.pid, SIGKILL);
    waitpid(side.pid, nullptr, 0);
    UnregisterHelperProcess(side.helper_slot);
    close(side.ready);
    close(side.go);
  }
  if (!status.ok()) {
    RemoveCleanupPath(names);  // killed sides closed nothing
    return status;
  }
  UnregisterCleanupPath(names);  // the masters removed their segments when they closed them
  for (const SideReport& r : reports) {
    if (r.error[0] != '\0') return absl::InternalError(r.error);
  }
  IdleResult result;
  result.channels = channels;
  result.masters_cpu_percent = reports[0].cpu_percent;
  result.open_s = reports[0].open_s;
  result.close_s = reports[0].close_s;
  if (peers) {
    result.slaves_cpu_percent = reports[1].cpu_percent;
    result.open_s = std::max(result.open_s, reports[1].open_s);
    result.close_s = std::max(result.close_s, reports[1].close_s);
    result.peers_alive = reports[0].peers_alive;
  }
  return result;
}

void PrintIdle(std::FILE* out, const std::vector<IdleResult>& results, double window_s, bool peers) {
  std::fprintf(out, "idle channels: per count a fresh process opens N masters (4 KiB rings)%s; after 1 s each "
               "process's CPU time is measured over %.1f s, then it closes them\n",
               peers ? " and another their N slaves" : ", no peer", window_s);
  std::fprintf(out, "  %8s %14s %13s %9s %10s %12s\n", "channels", "masters CPU %", "slaves CPU %", "open (s)",
               "close (s)", "peers alive");
  for (const IdleResult& r : results) {
    std::fprintf(out, "  %8d %14.2f %13s %9.3f %10.3f %12s\n", r.channels, r.masters_cpu_percent,
                 peers ? absl::StrFormat("%.2f", r.slaves_cpu_percent).c_str() : "-", r.open_s, r.close_s,
                 peers ? absl::StrCat(r.peers_alive, "/", r.channels).c_str() : "-");
  }
}

}  // namespace eshm_bench
