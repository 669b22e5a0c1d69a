#include "benchmarks/eshm_bench/transport.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace eshm_bench {

const char* WaitName(Wait wait) { return wait == Wait::kSpin ? "spin" : "blocking"; }

std::string UniqueName() {
  static int counter = 0;  // the parent names everything before it forks: one thread
  return absl::StrCat("eshmbench_", getpid(), "_", counter++);
}

std::uint64_t RingBytesFor(const TransportSpec& spec) {
  const std::uint64_t largest = std::max<std::size_t>(spec.max_message_bytes, 1);
  return std::max<std::uint64_t>(1 << 20, std::bit_ceil(std::uint64_t{4} * largest));
}

absl::Status Endpoint::SendInPlace(std::size_t, absl::FunctionRef<void(std::span<std::byte>)>) {
  return absl::UnimplementedError("this transport cannot send in place");
}
absl::Status Endpoint::ReceiveInPlace(absl::FunctionRef<absl::Status(std::span<const std::byte>)>) {
  return absl::UnimplementedError("this transport cannot receive in place");
}

absl::StatusOr<std::unique_ptr<Transport>> MakeTransport(const std::string& name) {
  if (name == "eshm") return MakeEshmTransport();
  if (name == "eshm_ring") return MakeEshmRingTransport();
  if (name == "minimal_ring") return MakeMinimalRingTransport();
  if (name == "pipe") return MakePipeTransport();
  if (name == "unix") return MakeUnixSocketTransport();
  if (name == "boost_mq" || name == "boost") {
    std::unique_ptr<Transport> boost = MakeBoostMqTransport();
    if (boost == nullptr) {
      return absl::UnavailableError(
          "boost_mq: <boost/interprocess/ipc/message_queue.hpp> was not available when eshm-bench was compiled");
    }
    return boost;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown transport '", name, "': use eshm_ring, minimal_ring, pipe, unix, boost, rings or all"));
}

std::vector<std::string> ComparisonTransportNames() {
  std::vector<std::string> names = {"pipe", "unix"};
  if (BoostAvailable()) names.push_back("boost_mq");
  return names;
}

}  // namespace eshm_bench
