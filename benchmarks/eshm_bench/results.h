// What a measurement produces: one run's figures, or the medians of several repetitions, and the floors
// they are compared with. report.h prints them; runner.h and floors.h make them.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_RESULTS_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_RESULTS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "benchmarks/eshm_bench/histogram.h"
#include "benchmarks/eshm_bench/transport.h"

namespace eshm_bench {

// pingpong: the parent sends, the child echoes; latency is the round trip. stream: the parent sends as fast
// as the transport takes messages, the child receives; latency is one way, from a timestamp the sender
// writes into each message just before sending to the receiver's clock just after it has the message.
enum class Mode { kPingPong, kStream };
const char* ModeName(Mode mode);

struct LatencySummary {
  double min = 0, mean = 0, p50 = 0, p90 = 0, p99 = 0, p999 = 0, p9999 = 0, max = 0;  // nanoseconds
};
LatencySummary Summarize(const Histogram& histogram);

struct Result {
  std::string transport;
  Mode mode = Mode::kPingPong;
  Wait wait = Wait::kSpin;
  std::size_t size = 0;
  std::uint64_t messages = 0;  // timed messages (pingpong: round trips)
  double seconds = 0;          // timed section
  double msgs_per_s = 0;       // pingpong: round trips per second
  double gb_per_s = 0;         // payload bytes one way, 1e9 bytes per GB
  std::optional<LatencySummary> latency;
  std::string floor;           // "" when there is none
  std::optional<double> ratio_to_floor;
  // The same measurement of the baseline transport (minimal_ring) in this run, when it ran: pingpong p50
  // latency over the baseline's, stream msg/s over the baseline's.
  std::string baseline;
  std::optional<double> ratio_to_baseline;
  // Futex waits and wakes of both processes per message (pingpong: per round trip) over the whole run,
  // warm-up included, for transports that count them (eshm, eshm_ring).
  std::optional<double> futex_calls_per_message;
  double others_cores = -1;    // CPU other processes took during the run (cpu_meter.h); table only
};

// Floor names, as in the JSON.
inline constexpr char kAtomicFloor[] = "atomic_pingpong";
inline constexpr char kFutexFloor[] = "futex_pingpong";
inline constexpr char kMemcpyFloor[] = "memcpy";
// The transport other transports' ratio_to_baseline is measured against.
inline constexpr char kBaselineTransport[] = "minimal_ring";

struct Floor {
  std::string name;  // atomic_pingpong, futex_pingpong, memcpy
  std::optional<std::size_t> size;
  std::optional<LatencySummary> latency;
  std::optional<double> gb_per_s;
  std::uint64_t messages = 0;
};

// Medians, field by field, of repetitions of one measurement (the first one's labels).
Result MedianResult(const std::vector<Result>& repetitions);
Floor MedianFloor(const std::vector<Floor>& repetitions);
double Median(std::vector<double> values);

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_RESULTS_H_
