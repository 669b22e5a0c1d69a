// eshm-bridge: joins a local eshm channel to a channel on another host over ZeroMQ (docs/bridge.md).
//
//   host A:  eshm-bridge NAME --role=slave  --listen  tcp://ADDR:PORT   # A's application is NAME's master
//   host B:  eshm-bridge NAME --role=master --connect tcp://ADDR:PORT   # B's application is NAME's slave
//
// eshm-bridge --generate_curve_keypair=PATH writes a CURVE key pair for --curve_secret_key_file (PATH.secret)
// and the far side's --curve_server_key_file (PATH.public).
//
// Runs until SIGINT or SIGTERM (exit 0) or an error it cannot go on with (exit 1, the error on stderr).
// Prints "eshm-bridge: link endpoint <endpoint>" on stdout once the link is set up (the port a listening
// "*" resolved to), and its counters when it stops.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <zmq.h>

#include <atomic>
#include <cstring>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "eshm/channel.h"
#include "tools/bridge/bridge.h"

ABSL_FLAG(std::string, role, "", "the local channel role this bridge takes: master or slave (the one the local "
                                 "application does not hold)");
ABSL_FLAG(std::string, listen, "", "tcp://ADDRESS:PORT to bind (an explicit address; PORT may be * for any free port)");
ABSL_FLAG(std::string, connect, "", "tcp://ADDRESS:PORT of the listening bridge");
ABSL_FLAG(std::string, state_file, "",
          "the bridge's window and position (default /dev/shm/eshm-bridge.NAME); keep it across restarts: it is "
          "what makes a restart lose nothing");
ABSL_FLAG(std::uint64_t, window_bytes, 8 << 20,
          "bytes of messages sent and not yet acknowledged, at most (a new state file only)");
ABSL_FLAG(int, heartbeat_ms, 100, "send a STATUS frame at least this often");
ABSL_FLAG(int, link_timeout_ms, 1000, "the link is down after this long without a frame from the far bridge");
ABSL_FLAG(int, retransmit_ms, 500, "send unacknowledged messages again after this long without acknowledgement progress");
ABSL_FLAG(int, hwm, 1000, "ZeroMQ high-water mark: frames queued per direction");
ABSL_FLAG(bool, allow_insecure_remote, false,
          "allow a non-loopback address without CURVE keys (plaintext, unauthenticated: a trusted network only)");
ABSL_FLAG(std::string, curve_secret_key_file, "", "this bridge's CURVE secret key (Z85 text): encrypts the link");
ABSL_FLAG(std::string, curve_server_key_file, "", "connecting side: the listening bridge's CURVE public key (Z85 text)");
ABSL_FLAG(std::string, curve_allowed_clients, "",
          "listening side with CURVE (required there): a file of the client public keys allowed to connect, one "
          "Z85 key per line (PATH.public of --generate_curve_keypair); blank lines and lines starting with \"# \" "
          "are ignored; every other client is refused");
ABSL_FLAG(std::string, generate_curve_keypair, "",
          "write a new CURVE key pair to PATH.secret (mode 0600) and PATH.public, and exit");
ABSL_FLAG(std::uint64_t, ring_bytes, eshm::ChannelOptions{}.m2s_capacity,
          "ring size of each direction, when this bridge creates the local channel (--role=master)");
ABSL_FLAG(std::uint64_t, max_message_bytes, 0,
          "largest message, when this bridge creates the local channel (0: the largest the rings allow); the two "
          "sides' channels must agree");
ABSL_FLAG(int, stale_threshold_ms, eshm::ChannelOptions{}.stale_threshold_ms,
          "the local application is unresponsive after this long without a heartbeat");

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true, std::memory_order_relaxed); }  // relaxed: a request, guards no data

int Fail(const std::string& message) {
  fprintf(stderr, "eshm-bridge: %s\n", message.c_str());
  return 1;
}

// Writes `text` and a newline to a new file `path` with `mode` (refusing to overwrite a key).
bool WriteNewFile(const std::string& path, const char* text, mode_t mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return false;
  const std::string line = std::string(text) + "\n";
  const bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  return close(fd) == 0 && ok;
}

int GenerateKeypair(const std::string& path) {
  char public_key[41];
  char secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return Fail("zmq_curve_keypair failed: this libzmq has no CURVE (install Debian's libzmq3-dev)");
  }
  if (!WriteNewFile(path + ".secret", secret_key, 0600) || !WriteNewFile(path + ".public", public_key, 0644)) {
    return Fail(absl::StrCat("cannot write ", path, ".secret and ", path, ".public: ", strerror(errno),
                             " (existing keys are never overwritten)"));
  }
  printf("eshm-bridge: wrote %s.secret and %s.public\n", path.c_str(), path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "eshm-bridge NAME --role=master|slave (--listen|--connect) tcp://ADDRESS:PORT [flags]\n"
      "Joins the local eshm channel NAME to a channel on another host (docs/bridge.md).");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_generate_curve_keypair).empty()) return GenerateKeypair(absl::GetFlag(FLAGS_generate_curve_keypair));
  if (args.size() != 2) return Fail("give exactly one channel name (eshm-bridge NAME --role=... --listen|--connect ...)");

  eshm::bridge::BridgeOptions options;
  options.name = args[1];
  const std::string role = absl::GetFlag(FLAGS_role);
  if (role == "master") {
    options.channel.role = eshm::ChannelRole::kMaster;
  } else if (role == "slave") {
    options.channel.role = eshm::ChannelRole::kSlave;
  } else {
    return Fail("--role must be master or slave: the role of NAME that the local application does not hold");
  }
  const std::string listen = absl::GetFlag(FLAGS_listen);
  const std::string connect = absl::GetFlag(FLAGS_connect);
  if (listen.empty() == connect.empty()) return Fail("give exactly one of --listen and --connect");
  options.link.listen = !listen.empty();
  options.link.endpoint = options.link.listen ? listen : connect;
  options.link.allow_insecure_remote = absl::GetFlag(FLAGS_allow_insecure_remote);
  options.link.curve_secret_key_file = absl::GetFlag(FLAGS_curve_secret_key_file);
  options.link.curve_server_key_file = absl::GetFlag(FLAGS_curve_server_key_file);
  options.link.curve_allowed_clients_file = absl::GetFlag(FLAGS_curve_allowed_clients);
  options.link.high_water_mark = absl::GetFlag(FLAGS_hwm);
  options.state_file = absl::GetFlag(FLAGS_state_file);
  if (options.state_file.empty()) options.state_file = "/dev/shm/eshm-bridge." + options.name;
  options.window_bytes = absl::GetFlag(FLAGS_window_bytes);
  options.heartbeat_ms = absl::GetFlag(FLAGS_heartbeat_ms);
  options.link_timeout_ms = absl::GetFlag(FLAGS_link_timeout_ms);
  options.retransmit_ms = absl::GetFlag(FLAGS_retransmit_ms);
  if (options.heartbeat_ms < 1 || options.link_timeout_ms <= options.heartbeat_ms || options.retransmit_ms < 1 ||
      options.link.high_water_mark < 1) {
    return Fail("--heartbeat_ms, --retransmit_ms and --hwm must be positive and --link_timeout_ms above --heartbeat_ms");
  }
  options.channel.m2s_capacity = absl::GetFlag(FLAGS_ring_bytes);
  options.channel.s2m_capacity = absl::GetFlag(FLAGS_ring_bytes);
  options.channel.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.channel.stale_threshold_ms = absl::GetFlag(FLAGS_stale_threshold_ms);
  // The bridge stands in for the far application: it waits for its master as long as it takes, keeps what
  // is queued when it exits, and lets writes queue while the local application is away.
  options.channel.max_reconnect_attempts = 0;
  options.channel.auto_cleanup = false;
  options.channel.disconnect_behavior = eshm::DisconnectBehavior::kNever;

  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<eshm::bridge::Bridge>> bridge = eshm::bridge::Bridge::Open(options, g_stop);
  if (!bridge.ok()) {
    if (g_stop.load(std::memory_order_relaxed)) return 0;
    return Fail(bridge.status().ToString());
  }
  printf("eshm-bridge: link endpoint %s\n", (*bridge)->link_endpoint().c_str());
  fflush(stdout);
  const absl::Status run = (*bridge)->Run(g_stop);
  const eshm::bridge::BridgeCounters& c = (*bridge)->counters();
  printf("eshm-bridge: stopped: messages_out=%llu messages_in=%llu frames_sent=%llu replays=%llu "
         "duplicates_dropped=%llu gaps=%llu invalid_frames=%llu\n",
         static_cast<unsigned long long>(c.messages_out), static_cast<unsigned long long>(c.messages_in),
         static_cast<unsigned long long>(c.frames_sent), static_cast<unsigned long long>(c.replays),
         static_cast<unsigned long long>(c.duplicates_dropped), static_cast<unsigned long long>(c.gaps),
         static_cast<unsigned long long>(c.invalid_frames));
  if (!run.ok()) return Fail(run.ToString());
  return 0;
}
