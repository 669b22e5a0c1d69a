// eshm across hosts, measured on one: the child is the master of channel A, the parent the slave of channel
// B (see EshmChannelOptions), and two eshm-bridge processes join A and B over tcp://127.0.0.1 (docs/bridge.md):
// bridge A is A's slave and listens, bridge B is B's master (it creates B) and connects. Every message crosses
// two rings, two bridges' windows and a TCP connection each way; the Endpoints are the eshm transport's.
// Prepare starts both bridges; Open waits until the far application is alive (through a bridge, the channel's
// peer state is the far end's: Channel::SetRepresentedPeerState), so the whole path is up. Cleanup stops the
// bridges and removes both segments, both state files and the bridges' logs.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "benchmarks/eshm_bench/transport.h"
#include "eshm/segment.h"

namespace eshm_bench {
namespace {

// $ESHM_BRIDGE, else the one in eshm-bench's runfiles, else eshm-bridge on PATH.
std::string FindBridgeBinary() {
  if (const char* given = std::getenv("ESHM_BRIDGE"); given != nullptr && *given != '\0') return given;
  std::vector<std::string> runfiles;
  if (const char* dir = std::getenv("RUNFILES_DIR")) runfiles.push_back(dir);
  char self[4096];
  if (const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1); n > 0) {
    runfiles.push_back(std::string(self, static_cast<std::size_t>(n)) + ".runfiles");
  }
  for (const std::string& dir : runfiles) {
    const std::string candidate = dir + "/eshm/tools/eshm-bridge";
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

// Starts `argv` with stdout and stderr into `log`; it gets SIGTERM when this process dies however it dies (a
// signal eshm-bench handles kills it first: RegisterHelperProcess).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log) {
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError(absl::StrCat("open ", log));
  absl::StatusOr<pid_t> pid = StartProgram(argv, fd, SIGTERM);
  close(fd);
  return pid;
}

class BridgeTransport final : public Transport {
 public:
  ~BridgeTransport() override { Cleanup(); }
  std::string name() const override { return "bridge"; }

  absl::Status Prepare(const TransportSpec& spec) override {
    spec_ = spec;
    const std::string base = UniqueName();
    absl::StatusOr<int> port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    const std::string endpoint = absl::StrCat("tcp://127.0.0.1:", *port);
    const std::string binary = FindBridgeBinary();
    for (int i = 0; i < 2; ++i) {
      Bridge& b = bridges_[i];
      const std::string side = i == 0 ? "a" : "b";
      b.channel = absl::StrCat(base, "_b", side);
      const std::string state = absl::StrCat("/dev/shm/", base, "_bridge_", side, ".state");
      b.log = absl::StrCat("/dev/shm/", base, "_bridge_", side, ".log");
      for (const std::string& path : {eshm::Segment::PathFor(b.channel), state, b.log}) {
        files_.emplace_back(path, RegisterCleanupPath(path));
      }
      // The bridges' own channels call a peer unresponsive after 1 s, as the measured ends do (this VM can
      // stall a process for milliseconds). Bridge B creates its channel, with the run's ring size.
      std::vector<std::string> argv = {binary, b.channel, i == 0 ? "--role=slave" : "--role=master",
                                       i == 0 ? "--listen" : "--connect", endpoint,
                                       absl::StrCat("--state_file=", state), "--stale_threshold_ms=1000"};
      if (i == 1) argv.push_back(absl::StrCat("--ring_bytes=", RingBytesFor(spec)));
      absl::StatusOr<pid_t> pid = Spawn(argv, b.log);
      if (!pid.ok()) return pid.status();
      b.pid = *pid;
      b.helper_slot = RegisterHelperProcess(b.pid);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Endpoint>> Open(bool parent, RunControl&, Watchdog& watchdog) override {
    eshm::ChannelOptions options = EshmChannelOptions(spec_, parent);
    options.reconnect_retry_interval_ms = 100;
    options.max_reconnect_attempts = 100;  // the slave waits up to 10 s for bridge B to create its channel
    absl::StatusOr<std::unique_ptr<eshm::Channel>> channel =
        eshm::Channel::Open(bridges_[parent ? 1 : 0].channel, options);
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
    for (Bridge& b : bridges_) {
      if (b.pid > 0) StopGroup(b.pid);  // it stops cleanly on SIGTERM
      UnregisterHelperProcess(b.helper_slot);
      b = Bridge{};
    }
    for (const auto& [path, slot] : files_) {  // once both bridges are stopped
      unlink(path.c_str());
      UnregisterCleanupPath(slot);
    }
    files_.clear();
  }

 private:
  struct Bridge {
    std::string channel;  // A (the child's) or B (the parent's)
    std::string log;      // its stdout and stderr
    pid_t pid = 0;
    int helper_slot = -1;
  };

  // `status` with what the bridges said (their logs are removed at Cleanup).
  absl::Status Failed(const absl::Status& status) const {
    return absl::Status(status.code(), absl::StrCat(status.message(), "; bridge A: ", Tail(bridges_[0].log),
                                                    "; bridge B: ", Tail(bridges_[1].log)));
  }

  TransportSpec spec_;
  Bridge bridges_[2];
  std::vector<std::pair<std::string, int>> files_;  // the bridges' segments, state files and logs, with slots
};

}  // namespace

std::unique_ptr<Transport> MakeBridgeTransport() { return std::make_unique<BridgeTransport>(); }

}  // namespace eshm_bench
