// The C++ side of the universal bridge: reads the producer's JSON readings from one eshm channel (as its
// slave) and keeps running statistics of the values.
//
//   reader NAME [TOTAL_TIMEOUT_S]
//
// Prints "[c++] got <message>" for every reading, exactly as received, then, on the producer's end marker
// ({"end":true,"count":N}), "[c++] done: <n> readings, mean <m> C, min <a> C, max <b> C" and exits 0 if it
// got all N. Exits 1 on an error or when nothing ends the stream within TOTAL_TIMEOUT_S (default 120).
#include <stdio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "eshm/channel.h"
#include "eshm/deadline.h"

namespace {

// The number after "key": in a flat JSON object. The producer writes plain numbers; this is no JSON parser.
std::optional<double> NumberField(std::string_view json, std::string_view key) {
  const std::string quoted = "\"" + std::string(key) + "\":";
  const std::size_t at = json.find(quoted);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = json.substr(at + quoted.size());
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  const std::size_t end = rest.find_first_of(",}");
  const std::string number(rest.substr(0, end));
  char* parsed_end = nullptr;
  const double value = std::strtod(number.c_str(), &parsed_end);
  if (number.empty() || parsed_end != number.c_str() + number.size()) return std::nullopt;
  return value;
}

bool Waitable(const absl::Status& status) {
  // Nothing yet, or the producer not (yet) there: keep waiting until our own deadline.
  return absl::IsDeadlineExceeded(status) || absl::IsUnavailable(status);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s NAME [TOTAL_TIMEOUT_S]\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  const int total_timeout_s = argc == 3 ? std::atoi(argv[2]) : 120;
  const eshm::Deadline deadline = eshm::Deadline::AfterMs(std::int64_t{total_timeout_s} * 1000);

  eshm::ChannelOptions options;
  options.role = eshm::ChannelRole::kSlave;
  options.max_reconnect_attempts = 300;  // wait up to 30 s for the producer to create the channel
  absl::StatusOr<std::unique_ptr<eshm::Channel>> channel = eshm::Channel::Open(name, options);
  if (!channel.ok()) {
    fprintf(stderr, "[c++] open: %s\n", channel.status().ToString().c_str());
    return 1;
  }
  printf("[c++] reading channel %s\n", name.c_str());
  fflush(stdout);

  std::vector<std::byte> buffer(4096);
  std::int64_t count = 0;
  double sum = 0;
  double low = std::numeric_limits<double>::infinity();
  double high = -std::numeric_limits<double>::infinity();
  while (true) {
    if (deadline.Expired()) {
      fprintf(stderr, "[c++] no end marker within %d s (%lld readings)\n", total_timeout_s,
              static_cast<long long>(count));
      return 1;
    }
    // Short reads so the overall deadline is checked.
    absl::StatusOr<std::size_t> n = (*channel)->Read(buffer, eshm::Deadline::TimeoutMs(500));
    if (!n.ok() && absl::IsOutOfRange(n.status())) {
      // The message is larger than the buffer: it stays queued; grow and read it again.
      const std::optional<std::size_t> size = (*channel)->NextMessageSize();
      buffer.resize(size.value_or(buffer.size() * 2));
      continue;
    }
    if (!n.ok()) {
      if (Waitable(n.status())) continue;
      fprintf(stderr, "[c++] read: %s\n", n.status().ToString().c_str());
      return 1;
    }
    const std::string_view message(reinterpret_cast<const char*>(buffer.data()), *n);
    if (message.find("\"end\":true") != std::string_view::npos) {
      const std::optional<double> expected = NumberField(message, "count");
      printf("[c++] done: %lld readings, mean %.3f C, min %.2f C, max %.2f C\n", static_cast<long long>(count),
             count > 0 ? sum / static_cast<double>(count) : 0.0, low, high);
      fflush(stdout);
      return expected.has_value() && *expected == static_cast<double>(count) ? 0 : 1;
    }
    printf("[c++] got %.*s\n", static_cast<int>(message.size()), message.data());
    fflush(stdout);
    if (const std::optional<double> celsius = NumberField(message, "celsius")) {
      ++count;
      sum += *celsius;
      low = std::min(low, *celsius);
      high = std::max(high, *celsius);
    }
  }
}
