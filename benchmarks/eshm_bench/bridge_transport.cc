// eshm across hosts, measured on one: the child is the master of channel A, the parent the slave of channel
// B, and two eshm-bridge processes join A and B over tcp://127.0.0.1 (docs/bridge.md): bridge A is A's
// slave and listens, bridge B is B's master (it creates B) and connects. (No master in the parent, as in the
// eshm transport: eshm-bench's signal handler removes the names and exits, and a master's monitor thread in
// the parent would re-create its removed name in between.) Every message crosses two rings, two
// bridges' windows and a TCP connection each way. The Endpoints are the eshm transport's (spin: TryWrite/
// TryRead; blocking: Write/Read with the spec's wait strategy).
//
// Prepare starts both bridges (each in a process group of its own, told to stop when eshm-bench dies),
// Open waits until each side's channel reports its peer alive, which through a bridge means the far
// application (Channel::SetRepresentedPeerState): the whole path is up. Cleanup stops the bridges (SIGTERM,
// then SIGKILL) and removes both segments, both state files and the bridges' logs.
//
// The eshm-bridge binary: $ESHM_BRIDGE, else the one in eshm-bench's runfiles, else eshm-bridge on PATH.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "benchmarks/eshm_bench/transport.h"
#include "eshm/channel.h"
#include "eshm/segment.h"
#include "eshm/wait_strategy.h"

namespace eshm_bench {
namespace {

std::string FindBridgeBinary() {
  if (const char* given = std::getenv("ESHM_BRIDGE"); given != nullptr && *given != '\0') return given;
  std::vector<std::string> candidates;
  if (const char* runfiles = std::getenv("RUNFILES_DIR"); runfiles != nullptr) {
    candidates.push_back(absl::StrCat(runfiles, "/eshm/tools/eshm-bridge"));
  }
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) candidates.push_back(absl::StrCat(std::string(self, static_cast<std::size_t>(n)), ".runfiles/eshm/tools/eshm-bridge"));
  for (const std::string& candidate : candidates) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "eshm-bridge";  // execvp searches PATH
}

// The last lines of a bridge's log, for an error message.
std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > 5) lines.erase(lines.begin());
  }
  return lines.empty() ? "(empty log)" : absl::StrJoin(lines, " | ");
}

// Starts `argv` with stdout and stderr into `log`, in a process group of its own; it gets SIGTERM when this
// process dies however it dies (a signal eshm-bench handles kills it first: RegisterHelperProcess).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the parent died before the line above
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    execvp(args[0], args.data());
    _exit(127);
  }
  setpgid(pid, pid);  // also here: whichever runs first, the group exists before a signal needs it
  return pid;
}

// Stops a bridge: SIGTERM (it stops cleanly), SIGKILL after a second.
void Stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) return;
    const timespec ten_ms{0, 10'000'000};
    nanosleep(&ten_ms, nullptr);
  }
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

class BridgeTransport final : public Transport {
 public:
  ~BridgeTransport() override { Cleanup(); }

  std::string name() const override { return "bridge"; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spec_ = spec;
    const std::string base = UniqueName();
    name_a_ = base + "_ba";
    name_b_ = base + "_bb";
    for (const char side : {'a', 'b'}) {
      state_[side - 'a'] = absl::StrCat("/dev/shm/", base, "_bridge_", std::string(1, side), ".state");
      log_[side - 'a'] = absl::StrCat("/dev/shm/", base, "_bridge_", std::string(1, side), ".log");
    }
    for (const std::string& path : {eshm::Segment::PathFor(name_a_), eshm::Segment::PathFor(name_b_), state_[0],
                                    state_[1], log_[0], log_[1]}) {
      slots_.push_back(RegisterCleanupPath(path));
    }
    absl::StatusOr<int> port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    const std::string endpoint = absl::StrCat("tcp://127.0.0.1:", *port);
    const std::string binary = FindBridgeBinary();
    const std::string ring = absl::StrCat(RingBytesFor(spec));
    // (The bridges' own channels call a peer unresponsive after 1 s, as the measured ends do: this VM can
    // stall a process for milliseconds.)
    absl::StatusOr<pid_t> a = Spawn({binary, name_a_, "--role=slave", "--listen", endpoint,
                                     absl::StrCat("--state_file=", state_[0]), "--stale_threshold_ms=1000"},
                                    log_[0]);
    if (!a.ok()) return a.status();
    bridge_[0] = *a;
    helper_slots_.push_back(RegisterHelperProcess(*a));
    absl::StatusOr<pid_t> b = Spawn({binary, name_b_, "--role=master", "--connect", endpoint,
                                     absl::StrCat("--state_file=", state_[1]), absl::StrCat("--ring_bytes=", ring),
                                     "--stale_threshold_ms=1000"},
                                    log_[1]);
    if (!b.ok()) return b.status();
    bridge_[1] = *b;
    helper_slots_.push_back(RegisterHelperProcess(*b));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl&, Watchdog& watchdog) override {
    eshm::ChannelOptions options = EshmChannelOptions(spec_, parent);
    options.reconnect_retry_interval_ms = 100;
    options.max_reconnect_attempts = 100;  // the slave waits up to 10 s for bridge B to create its channel
    absl::StatusOr<std::unique_ptr<eshm::Channel>> channel =
        eshm::Channel::Open(parent ? name_b_ : name_a_, options);
    if (!channel.ok()) return Failed(channel.status());
    eshm::Channel* c = channel->get();
    // Alive through a bridge is the far application alive: both bridges and the link are up.
    if (!watchdog.SleepUntil([c] { return c->IsRemoteAlive(); })) {
      return Failed(watchdog.Error(absl::StrCat("waiting for the far end through the bridges (peer ",
                                                eshm::PeerStateName(c->peer_state()), ")")));
    }
    return MakeEshmChannelEndpoint(*std::move(channel), spec_, watchdog);
  }

  void Cleanup() override {
    for (pid_t& pid : bridge_) {
      Stop(pid);
      pid = 0;
    }
    for (const int slot : helper_slots_) UnregisterHelperProcess(slot);
    helper_slots_.clear();
    for (const std::string& name : {name_a_, name_b_}) {
      if (!name.empty()) (void)eshm::Segment::Unlink(name);
    }
    for (const std::string& path : {state_[0], state_[1], log_[0], log_[1]}) {
      if (!path.empty()) unlink(path.c_str());
    }
    for (const int slot : slots_) UnregisterCleanupPath(slot);
    slots_.clear();
  }

 private:
  // `status` with what the bridges said (their logs are removed at Cleanup).
  absl::Status Failed(const absl::Status& status) const {
    return absl::Status(status.code(), absl::StrCat(status.message(), "; bridge A: ", Tail(log_[0]),
                                                    "; bridge B: ", Tail(log_[1])));
  }

  TransportSpec spec_;
  std::string name_a_;
  std::string name_b_;
  std::string state_[2];
  std::string log_[2];
  pid_t bridge_[2] = {0, 0};
  std::vector<int> slots_;
  std::vector<int> helper_slots_;
};

}  // namespace

std::unique_ptr<Transport> MakeBridgeTransport() { return std::make_unique<BridgeTransport>(); }

}  // namespace eshm_bench
