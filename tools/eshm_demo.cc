// eshm_demo: the classic ESHM master/slave demo over an eshm channel.
//
//   eshm_demo <master|slave|auto> [shm_name] [--flags]
//
// The master sends "Hello from master #N" (--rate_hz per second) and prints every reply; the slave prints
// every message and answers "ACK from slave #K". Output lines are those of the original ESHM demo, so
// scripts that grep them keep working:
//
//   [MASTER] Starting high-performance master process...
//   [MASTER] Initialized with role: MASTER
//   [MASTER] Sent: Hello from master #0
//   [MASTER] Received: ACK from slave #0
//   [SLAVE] Starting high-performance slave process...
//   [SLAVE] Initialized with role: SLAVE
//   [SLAVE] Received (20 bytes): Hello from master #0
//   [SLAVE] Sent: ACK from slave #0
//
// Messages are length-delimited and sent without a NUL terminator (--nul_terminate adds one, as the
// original demo did: then the slave prints "(21 bytes)"). Received text is printed with trailing NUL bytes
// stripped (old peers send them); the byte count is the length received.
//
// Ctrl+C or SIGTERM ends the run cleanly: the loop stops, the channel closes (a master with auto_cleanup
// removes /dev/shm/eshm_<name>), a summary line is printed and the exit code is 0. A second signal kills
// the process at once.
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"
#include "eshm/segment.h"

ABSL_FLAG(double, rate_hz, 1000, "master: messages per second; 0 sends as fast as the slave keeps up");
ABSL_FLAG(std::int64_t, count, 0,
          "stop after N messages (0 = run until Ctrl+C): the master after sending N and receiving N replies, "
          "the slave after receiving (and answering) N");
ABSL_FLAG(double, duration_s, 0, "stop after this many seconds (0 = no limit)");
ABSL_FLAG(std::int64_t, quiet, 0,
          "print only every Nth Sent and Received line (0 or 1 = every line); other lines always print");
ABSL_FLAG(bool, nul_terminate, false,
          "send each message with a trailing NUL byte, as the original ESHM demo and its Python peers did");
ABSL_FLAG(std::string, disconnect, "on_timeout",
          "what a write does while the peer is gone: immediately (fail), on_timeout (wait up to "
          "--reconnect_wait_ms), never (wait as long as the call allows)");
ABSL_FLAG(int, stale_threshold_ms, eshm::ChannelOptions{}.stale_threshold_ms,
          "the peer is unresponsive after this long without a heartbeat");
ABSL_FLAG(int, heartbeat_interval_ms, eshm::ChannelOptions{}.heartbeat_interval_ms,
          "how often this side beats and checks its peer");
ABSL_FLAG(int, reconnect_wait_ms, eshm::ChannelOptions{}.reconnect_wait_ms,
          "with --disconnect=on_timeout: how long a call waits for a gone peer");
ABSL_FLAG(int, reconnect_retry_interval_ms, eshm::ChannelOptions{}.reconnect_retry_interval_ms,
          "slave: how often it looks for a new master after its master left");
ABSL_FLAG(int, max_reconnect_attempts, eshm::ChannelOptions{}.max_reconnect_attempts,
          "slave: how many times it tries to attach to a new master (0 = unlimited)");
ABSL_FLAG(bool, auto_cleanup, eshm::ChannelOptions{}.auto_cleanup,
          "master: remove /dev/shm/eshm_<name> on exit");
ABSL_FLAG(std::string, mode, "0600",
          "permissions of the segment file this process creates, in octal: 0600 for this user only, 0660 to "
          "share the channel with the file's group (see docs/operations.md, Permissions)");
ABSL_FLAG(bool, allow_other_owner, eshm::ChannelOptions{}.allow_other_owner,
          "accept a segment file another user created (a channel shared between users); by default it is "
          "refused, since another user could have taken the name first to intercept the channel");

namespace {

constexpr std::int64_t kNsPerSec = 1'000'000'000;
constexpr std::int64_t kNsPerMs = 1'000'000;
// Blocking calls wake at least this often to look at the stop flag.
constexpr int kPollMs = 100;

std::atomic<bool> g_stop{false};

extern "C" void OnSignal(int sig) {
  if (g_stop.load(std::memory_order_relaxed)) {
    // Second signal: give up on the clean exit.
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  g_stop.store(true, std::memory_order_relaxed);
}

bool Stopping() { return g_stop.load(std::memory_order_relaxed); }

void InstallSignalHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a sleep ends early on Ctrl+C
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A closed stdout (eshm_demo ... | head) ends the run cleanly instead of killing it mid-write.
  signal(SIGPIPE, SIG_IGN);
}

// Prints one line to stdout at once (also when piped). A failed write (reader gone) stops the run.
void Line(const std::string& text) {
  if (fputs(text.c_str(), stdout) < 0 || fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
    g_stop.store(true, std::memory_order_relaxed);
  }
}

void ErrorLine(const std::string& text) {
  fprintf(stderr, "%s\n", text.c_str());
  fflush(stderr);
}

// The message as text: trailing NULs (sent by old peers) dropped, control characters shown as '.'.
std::string Printable(std::span<const std::byte> message) {
  std::size_t size = message.size();
  while (size > 0 && message[size - 1] == std::byte{0}) --size;
  std::string text(reinterpret_cast<const char*>(message.data()), size);
  for (char& c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '.';
  }
  return text;
}

std::span<const std::byte> Bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

const char* RoleTag(eshm::Role role) { return role == eshm::Role::kMaster ? "[MASTER]" : "[SLAVE]"; }
const char* RoleUpper(eshm::Role role) { return role == eshm::Role::kMaster ? "MASTER" : "SLAVE"; }
const char* PeerName(eshm::Role role) { return role == eshm::Role::kMaster ? "slave" : "master"; }

// Sleeps until `deadline_ns` on CLOCK_MONOTONIC; a signal ends the sleep early.
void SleepUntil(std::int64_t deadline_ns) {
  const timespec ts{static_cast<time_t>(deadline_ns / kNsPerSec), static_cast<long>(deadline_ns % kNsPerSec)};
  clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
}

// Prints a line at most once per second (for repeated "waiting" conditions).
class RateLimitedLine {
 public:
  void Print(const std::string& text) {
    const std::int64_t now = eshm::MonotonicNowNs();
    if (last_ns_ != 0 && now - last_ns_ < kNsPerSec) return;
    last_ns_ = now;
    Line(text);
  }

 private:
  std::int64_t last_ns_ = 0;
};

struct RunConfig {
  std::int64_t count = 0;
  std::int64_t print_every = 1;
  std::int64_t end_ns = 0;  // 0: no time limit
  double rate_hz = 0;
  bool nul_terminate = false;
};

struct Totals {
  std::int64_t sent = 0;
  std::int64_t received = 0;
};

bool TimeUp(const RunConfig& run) { return run.end_ns != 0 && eshm::MonotonicNowNs() >= run.end_ns; }

bool ShouldPrint(const RunConfig& run, std::int64_t index) { return index % run.print_every == 0; }

// Reports changes of the peer's state ("[SLAVE] Master is alive", "... dead").
class PeerWatcher {
 public:
  explicit PeerWatcher(eshm::Role role) : role_(role) {}
  void Poll(const eshm::Channel& channel) {
    const eshm::PeerState state = channel.peer_state();
    if (state == last_) return;
    last_ = state;
    std::string peer = PeerName(role_);
    peer[0] = static_cast<char>(peer[0] - 'a' + 'A');
    Line(absl::StrFormat("%s %s is %s", RoleTag(role_), peer, eshm::PeerStateName(state)));
  }

 private:
  eshm::Role role_;
  eshm::PeerState last_ = eshm::PeerState::kAbsent;
};

// A status that ends the run (anything but "timed out" or "peer gone").
bool IsFatal(const absl::Status& s) {
  return !s.ok() && s.code() != absl::StatusCode::kDeadlineExceeded && s.code() != absl::StatusCode::kUnavailable;
}

// Prints every reply already queued. Returns false on a fatal error.
bool DrainReplies(eshm::Channel& ch, const RunConfig& run, Totals& totals, int& exit_code) {
  for (;;) {
    std::span<const std::byte> message;
    const eshm::IoResult result = ch.TryPeek(&message);
    if (result == eshm::IoResult::kOk) {
      if (ShouldPrint(run, totals.received)) Line(absl::StrCat("[MASTER] Received: ", Printable(message)));
      ch.Release();
      ++totals.received;
      continue;
    }
    if (result == eshm::IoResult::kWouldBlock || result == eshm::IoResult::kPeerGone) return true;
    ErrorLine(absl::StrCat("[MASTER] Read failed: ", ch.StatusOf(result).ToString()));
    exit_code = 1;
    return false;
  }
}

int RunMaster(eshm::Channel& ch, const RunConfig& run, Totals& totals) {
  int exit_code = 0;
  PeerWatcher peer(eshm::Role::kMaster);
  RateLimitedLine waiting;
  const std::int64_t period_ns = run.rate_hz > 0 ? static_cast<std::int64_t>(kNsPerSec / run.rate_hz) : 0;
  std::int64_t next_send_ns = eshm::MonotonicNowNs();
  while (!Stopping() && !TimeUp(run)) {
    peer.Poll(ch);
    const bool sending = run.count == 0 || totals.sent < run.count;
    if (sending && eshm::MonotonicNowNs() >= next_send_ns) {
      std::string message = absl::StrCat("Hello from master #", totals.sent);
      if (run.nul_terminate) message.push_back('\0');
      const absl::Status status = ch.Write(Bytes(message), eshm::Deadline::TimeoutMs(kPollMs));
      if (status.ok()) {
        if (ShouldPrint(run, totals.sent)) Line(absl::StrCat("[MASTER] Sent: ", Printable(Bytes(message))));
        ++totals.sent;
        const std::int64_t now = eshm::MonotonicNowNs();
        next_send_ns = std::max(next_send_ns + period_ns, now - period_ns);  // no burst after a stall
      } else if (IsFatal(status)) {
        ErrorLine(absl::StrCat("[MASTER] Write failed: ", status.ToString()));
        exit_code = 1;
        break;
      } else {
        waiting.Print(absl::StrCat("[MASTER] Waiting for slave... (", status.message(), ")"));
      }
    }
    if (!DrainReplies(ch, run, totals, exit_code)) break;
    if (run.count != 0 && totals.sent >= run.count && totals.received >= run.count) break;

    if (sending && period_ns > 0) {
      // Until the next message is due (at most kPollMs, to keep an eye on the replies and the flags).
      SleepUntil(std::min(next_send_ns, eshm::MonotonicNowNs() + kPollMs * kNsPerMs));
    } else if (!sending) {
      // Everything sent: wait for the remaining replies (the next pass prints them).
      absl::StatusOr<std::span<const std::byte>> next = ch.Peek(eshm::Deadline::TimeoutMs(kPollMs));
      if (!next.ok() && IsFatal(next.status())) {
        ErrorLine(absl::StrCat("[MASTER] Read failed: ", next.status().ToString()));
        exit_code = 1;
        break;
      }
    }
  }
  return exit_code;
}

int RunSlave(eshm::Channel& ch, const RunConfig& run, Totals& totals) {
  int exit_code = 0;
  PeerWatcher peer(eshm::Role::kSlave);
  RateLimitedLine waiting;
  while (!Stopping() && !TimeUp(run)) {
    peer.Poll(ch);
    absl::StatusOr<std::span<const std::byte>> message = ch.Peek(eshm::Deadline::TimeoutMs(kPollMs));
    if (!message.ok()) {
      if (IsFatal(message.status())) {
        ErrorLine(absl::StrCat("[SLAVE] Read failed: ", message.status().ToString()));
        exit_code = 1;
        break;
      }
      if (message.status().code() == absl::StatusCode::kUnavailable) {
        waiting.Print(absl::StrCat("[SLAVE] Waiting for master... (", message.status().message(), ")"));
      }
      continue;
    }
    const std::size_t size = message->size();
    if (ShouldPrint(run, totals.received)) {
      Line(absl::StrFormat("[SLAVE] Received (%d bytes): %s", size, Printable(*message)));
    }
    ch.Release();
    ++totals.received;

    std::string reply = absl::StrCat("ACK from slave #", totals.sent);
    if (run.nul_terminate) reply.push_back('\0');
    const absl::Status status = ch.Write(Bytes(reply), eshm::Deadline::TimeoutMs(kPollMs));
    if (status.ok()) {
      if (ShouldPrint(run, totals.sent)) Line(absl::StrCat("[SLAVE] Sent: ", Printable(Bytes(reply))));
      ++totals.sent;
    } else if (IsFatal(status)) {
      ErrorLine(absl::StrCat("[SLAVE] Write failed: ", status.ToString()));
      exit_code = 1;
      break;
    } else {
      waiting.Print(absl::StrCat("[SLAVE] Reply not sent, master gone... (", status.message(), ")"));
    }
    if (run.count != 0 && totals.received >= run.count) break;
  }
  return exit_code;
}

absl::StatusOr<eshm::DisconnectBehavior> ParseDisconnect(const std::string& s) {
  if (s == "immediately") return eshm::DisconnectBehavior::kImmediately;
  if (s == "on_timeout") return eshm::DisconnectBehavior::kOnTimeout;
  if (s == "never") return eshm::DisconnectBehavior::kNever;
  return absl::InvalidArgumentError(
      absl::StrCat("--disconnect=", s, ": use immediately, on_timeout or never"));
}

// Opens the channel with SIGINT/SIGTERM blocked, so the channel's monitor thread inherits a mask that
// leaves every signal to the main thread (whose sleeps they are meant to cut short). A signal that arrives
// while Open waits stays pending; Open's check sees it and ends the wait (Cancelled), and the signal is
// delivered once the mask is restored.
absl::StatusOr<std::unique_ptr<eshm::Channel>> OpenWithSignalsOnMainThread(const std::string& name,
                                                                           eshm::ChannelOptions options) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  options.wait_check = [] {
    sigset_t pending;
    if (sigpending(&pending) == 0 && (sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1)) {
      return absl::CancelledError("interrupted by a signal");
    }
    return absl::OkStatus();
  };
  pthread_sigmask(SIG_BLOCK, &block, &old);
  absl::StatusOr<std::unique_ptr<eshm::Channel>> channel = eshm::Channel::Open(name, options);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return channel;
}

bool SegmentExists(const std::string& name) {
  struct stat st;
  return stat(eshm::Segment::PathFor(name).c_str(), &st) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  absl::SetProgramUsageMessage(
      "the eshm master/slave demo.\n\n"
      "usage: eshm_demo <master|slave|auto> [shm_name] [--flags]\n\n"
      "shm_name defaults to \"eshm_demo\" (the segment is /dev/shm/eshm_<shm_name>). Start the master, then\n"
      "the slave, in two terminals; Ctrl+C ends either cleanly.");
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2 || args.size() > 3) {
    ErrorLine("usage: eshm_demo <master|slave|auto> [shm_name] [--flags]   (--help for the flags)");
    return 2;
  }
  const std::string mode = args[1];
  const std::string name = args.size() == 3 ? args[2] : "eshm_demo";

  eshm::ChannelOptions options;
  std::string tag;
  if (mode == "master") {
    options.role = eshm::ChannelRole::kMaster;
    tag = "[MASTER]";
  } else if (mode == "slave") {
    options.role = eshm::ChannelRole::kSlave;
    tag = "[SLAVE]";
  } else if (mode == "auto") {
    options.role = eshm::ChannelRole::kAuto;
    tag = "[AUTO]";
  } else {
    ErrorLine(absl::StrCat("eshm_demo: unknown role '", mode, "': use master, slave or auto"));
    return 2;
  }
  if (absl::Status s = eshm::Segment::ValidateName(name); !s.ok()) {
    ErrorLine(absl::StrCat("eshm_demo: bad shm_name: ", s.message()));
    return 2;
  }
  absl::StatusOr<eshm::DisconnectBehavior> disconnect = ParseDisconnect(absl::GetFlag(FLAGS_disconnect));
  if (!disconnect.ok()) {
    ErrorLine(absl::StrCat("eshm_demo: ", disconnect.status().message()));
    return 2;
  }
  options.disconnect_behavior = *disconnect;
  options.stale_threshold_ms = absl::GetFlag(FLAGS_stale_threshold_ms);
  options.heartbeat_interval_ms = absl::GetFlag(FLAGS_heartbeat_interval_ms);
  options.reconnect_wait_ms = absl::GetFlag(FLAGS_reconnect_wait_ms);
  options.reconnect_retry_interval_ms = absl::GetFlag(FLAGS_reconnect_retry_interval_ms);
  options.max_reconnect_attempts = absl::GetFlag(FLAGS_max_reconnect_attempts);
  options.auto_cleanup = absl::GetFlag(FLAGS_auto_cleanup);
  options.allow_other_owner = absl::GetFlag(FLAGS_allow_other_owner);
  {
    const std::string text = absl::GetFlag(FLAGS_mode);
    char* end = nullptr;
    const unsigned long bits = std::strtoul(text.c_str(), &end, 8);
    if (text.empty() || *end != '\0' || bits > 0777 || (bits & 0600) != 0600) {
      ErrorLine(absl::StrCat("eshm_demo: --mode=", text,
                             ": use octal permission bits including the owner's read and write, such as 0600 or "
                             "0660"));
      return 2;
    }
    options.mode = static_cast<mode_t>(bits);
  }

  RunConfig run;
  run.count = absl::GetFlag(FLAGS_count);
  run.rate_hz = absl::GetFlag(FLAGS_rate_hz);
  run.nul_terminate = absl::GetFlag(FLAGS_nul_terminate);
  run.print_every = std::max<std::int64_t>(1, absl::GetFlag(FLAGS_quiet));
  const double duration_s = absl::GetFlag(FLAGS_duration_s);
  if (run.count < 0 || run.rate_hz < 0 || duration_s < 0 || absl::GetFlag(FLAGS_quiet) < 0) {
    ErrorLine("eshm_demo: --count, --rate_hz, --duration_s and --quiet must not be negative");
    return 2;
  }
  if (duration_s > 0) run.end_ns = eshm::MonotonicNowNs() + static_cast<std::int64_t>(duration_s * kNsPerSec);

  InstallSignalHandlers();
  Line(absl::StrCat(tag, " Starting high-performance ", mode, " process..."));

  std::unique_ptr<eshm::Channel> channel;
  bool said_waiting = false;
  while (channel == nullptr && !Stopping() && !TimeUp(run)) {
    // A slave waits here, where Ctrl+C is noticed, for its master to create the segment (Open itself would
    // wait only max_reconnect_attempts * reconnect_retry_interval_ms, and not interruptibly).
    if (options.role == eshm::ChannelRole::kSlave && !SegmentExists(name)) {
      if (!said_waiting) Line(absl::StrCat(tag, " Waiting for a master to create ", eshm::Segment::PathFor(name), "..."));
      said_waiting = true;
      SleepUntil(eshm::MonotonicNowNs() + 50 * kNsPerMs);
      continue;
    }
    absl::StatusOr<std::unique_ptr<eshm::Channel>> opened = OpenWithSignalsOnMainThread(name, options);
    if (opened.ok()) {
      channel = *std::move(opened);
    } else if (opened.status().code() == absl::StatusCode::kNotFound ||
               opened.status().code() == absl::StatusCode::kCancelled) {
      continue;  // the master left between our check and the open (look again), or a signal stopped us
    } else {
      ErrorLine(absl::StrCat(tag, " Failed to open channel '", name, "': ", opened.status().ToString()));
      return 1;
    }
  }
  if (channel == nullptr) {
    Line(absl::StrCat(tag, " Exiting before a channel was open"));
    return 0;
  }

  const eshm::Role role = channel->role();
  Line(absl::StrCat(RoleTag(role), " Initialized with role: ", RoleUpper(role)));
  Totals totals;
  const int exit_code = role == eshm::Role::kMaster ? RunMaster(*channel, run, totals)
                                                    : RunSlave(*channel, run, totals);
  channel->Close();
  channel.reset();
  if (role == eshm::Role::kMaster) {
    Line(absl::StrFormat("[MASTER] Exiting: sent %d, received %d", totals.sent, totals.received));
  } else {
    Line(absl::StrFormat("[SLAVE] Exiting: received %d, sent %d", totals.received, totals.sent));
  }
  return exit_code;
}
