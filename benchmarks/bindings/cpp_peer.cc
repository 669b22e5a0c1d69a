// One side of the per-binding throughput stream (benchmarks/bindings/run.py), through eshm::Channel.
//
//   cpp_peer writer NAME SECONDS   master: waits for the reader, writes 64-byte messages for SECONDS, then a
//                                  1-byte stop message; prints "SENT <n>"
//   cpp_peer reader NAME           slave: counts 64-byte messages from the first to the stop message; prints
//                                  "RECV <n> <seconds>"
//
// Every peer of every binding speaks this protocol, so the numbers differ only by the binding.
#include <stdio.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"

namespace {

constexpr std::size_t kMessageBytes = 64;
constexpr std::int64_t kNsPerSec = 1'000'000'000;
// Setup waits (the other process starting) are bounded by this.
constexpr std::int64_t kSetupTimeoutMs = 30'000;

int Fail(const char* what, const absl::Status& status) {
  fprintf(stderr, "cpp_peer: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

int Writer(const std::string& name, double seconds) {
  eshm::ChannelOptions options;
  options.role = eshm::ChannelRole::kMaster;
  absl::StatusOr<std::unique_ptr<eshm::Channel>> channel = eshm::Channel::Open(name, options);
  if (!channel.ok()) return Fail("open", channel.status());
  eshm::Channel& ch = **channel;
  const eshm::Deadline setup = eshm::Deadline::AfterMs(kSetupTimeoutMs);
  while (ch.peer_state() != eshm::PeerState::kAlive) {
    if (setup.Expired()) return Fail("wait for the reader", absl::DeadlineExceededError("no reader"));
    usleep(1000);
  }
  std::array<std::byte, kMessageBytes> message{};
  const std::int64_t end_ns = eshm::MonotonicNowNs() + static_cast<std::int64_t>(seconds * kNsPerSec);
  std::int64_t sent = 0;
  for (;;) {
    // Looking at the clock every 1024 messages keeps it off the measured path.
    if ((sent & 1023) == 0 && eshm::MonotonicNowNs() >= end_ns) break;
    absl::Status s = ch.Write(message, eshm::Deadline::AfterMs(kSetupTimeoutMs));
    if (!s.ok()) return Fail("write", s);
    ++sent;
  }
  const std::array<std::byte, 1> stop{};
  if (absl::Status s = ch.Write(stop, eshm::Deadline::AfterMs(kSetupTimeoutMs)); !s.ok()) return Fail("stop", s);
  printf("SENT %lld\n", static_cast<long long>(sent));
  fflush(stdout);
  // The reader drains and leaves before the master's close removes the name.
  const eshm::Deadline leave = eshm::Deadline::AfterMs(kSetupTimeoutMs);
  while (ch.peer_state() == eshm::PeerState::kAlive && !leave.Expired()) usleep(1000);
  return 0;
}

int Reader(const std::string& name) {
  eshm::ChannelOptions options;
  options.role = eshm::ChannelRole::kSlave;
  options.max_reconnect_attempts = 300;
  absl::StatusOr<std::unique_ptr<eshm::Channel>> channel = eshm::Channel::Open(name, options);
  if (!channel.ok()) return Fail("open", channel.status());
  eshm::Channel& ch = **channel;
  std::array<std::byte, 4096> buffer;
  std::int64_t count = 0;
  std::int64_t first_ns = 0;
  for (;;) {
    absl::StatusOr<std::size_t> n = ch.Read(buffer, eshm::Deadline::AfterMs(kSetupTimeoutMs));
    if (!n.ok()) return Fail("read", n.status());
    if (*n != kMessageBytes) break;
    if (count++ == 0) first_ns = eshm::MonotonicNowNs();
  }
  const double elapsed = static_cast<double>(eshm::MonotonicNowNs() - first_ns) / kNsPerSec;
  printf("RECV %lld %.6f\n", static_cast<long long>(count), elapsed);
  fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "writer" && argc == 4) return Writer(argv[2], std::atof(argv[3]));
  if (mode == "reader" && argc == 3) return Reader(argv[2]);
  fprintf(stderr, "usage: %s writer NAME SECONDS | reader NAME\n", argv[0]);
  return 2;
}
