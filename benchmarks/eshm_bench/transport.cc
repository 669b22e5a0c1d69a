#include "benchmarks/eshm_bench/transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "benchmarks/eshm_bench/timing.h"

namespace eshm_bench {

// The transports' factories, each in its transport's file.
std::unique_ptr<Transport> MakeEshmTransport();
std::unique_ptr<Transport> MakeRingTransport(bool minimal);  // eshm_ring, minimal_ring
std::unique_ptr<Transport> MakeFdTransport(bool socket);     // pipe, unix
std::unique_ptr<Transport> MakeBridgeTransport();
std::unique_ptr<Transport> MakeZmqTransport();

const char* WaitName(Wait wait) { return wait == Wait::kSpin ? "spin" : "blocking"; }

std::string UniqueName() {
  // The random part: /dev/shm and the temporary directory are shared, and nobody may plant a file or a link at
  // a name a run is going to use.
  static const std::uint32_t tag = [] {
    std::uint32_t t = 0;
    return getrandom(&t, sizeof(t), 0) == sizeof(t) ? t : static_cast<std::uint32_t>(Clock::MonotonicNs());
  }();
  static int counter = 0;  // the parent names everything before it forks: one thread
  return absl::StrFormat("eshmbench_%d_%08x_%d", getpid(), tag, counter++);
}

absl::Status ErrnoError(const std::string& call) {
  return absl::InternalError(absl::StrCat(call, ": ", std::strerror(errno)));
}

std::uint64_t RingBytesFor(const TransportSpec& spec) {
  const std::uint64_t largest = std::max<std::size_t>(spec.max_message_bytes, 1);
  return std::max<std::uint64_t>(1 << 20, std::bit_ceil(std::uint64_t{4} * largest));
}

eshm::ChannelOptions EshmChannelOptions(const TransportSpec& spec, bool parent) {
  eshm::ChannelOptions options;
  options.role = parent ? eshm::ChannelRole::kSlave : eshm::ChannelRole::kMaster;
  options.m2s_capacity = options.s2m_capacity = RingBytesFor(spec);
  options.wait = spec.wait == Wait::kSpin ? eshm::WaitStrategy::Spin()
                 : spec.eshm_adaptive     ? eshm::WaitStrategy::Adaptive()
                                          : eshm::WaitStrategy::Sleep();
  // A peer is declared unresponsive only after 1 s (this VM can stall a process for ms); the monitor,
  // which shares the pinned CPU with the measured loop, then beats every 250 ms.
  options.stale_threshold_ms = 1000;
  return options;
}

absl::StatusOr<std::unique_ptr<Transport>> MakeTransport(const std::string& name) {
  if (name == "eshm") return MakeEshmTransport();
  if (name == "eshm_ring" || name == "minimal_ring") return MakeRingTransport(name == "minimal_ring");
  if (name == "pipe" || name == "unix") return MakeFdTransport(name == "unix");
  if (name == "bridge") return MakeBridgeTransport();
  if (name == "zmq") return MakeZmqTransport();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown transport '", name, "': use eshm_ring, minimal_ring, pipe, unix, bridge, zmq, rings, all or net"));
}

std::vector<std::string> NetworkTransportNames() { return {"bridge", "zmq"}; }

absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // port 0: the kernel picks a free one
  socklen_t length = sizeof(address);
  const bool bound = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                     getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  const int error = errno;
  close(fd);
  if (!bound) return absl::InternalError(absl::StrCat("finding a free port on 127.0.0.1: ", std::strerror(error)));
  return ntohs(address.sin_port);
}

}  // namespace eshm_bench
