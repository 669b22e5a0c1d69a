// What a measurement produces (one run's figures, the medians of its repetitions, the floors they are
// compared with) and how it is reported: the aligned table people read and the JSON (schema "eshm-bench/2")
// tools read. runner.h, peer_transports.h and floors.h make the figures.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_RESULTS_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_RESULTS_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
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
  std::string floor;  // "" when there is none
  std::optional<double> ratio_to_floor;
  // The same measurement of the baseline transport (minimal_ring) in this run, when it ran: pingpong p50
  // latency over the baseline's, stream msg/s over the baseline's.
  std::string baseline;
  std::optional<double> ratio_to_baseline;
  // Futex waits and wakes of both processes per message (pingpong: per round trip) over the whole run,
  // warm-up included, for transports that count them (eshm, eshm_ring).
  std::optional<double> futex_calls_per_message;
  double others_cores = -1;  // CPU other processes took during the run (CpuMeter); table only
};

// A run's figures: `messages` timed messages (round trips), of which the rate counts `counted` over `seconds`.
Result MakeResult(const std::string& transport, Mode mode, Wait wait, std::size_t size, std::uint64_t messages,
                  std::uint64_t counted, double seconds, const Histogram& latency, double others_cores);

// Floor names, as in the JSON, and the transport other transports' ratio_to_baseline is measured against.
inline constexpr char kAtomicFloor[] = "atomic_pingpong";
inline constexpr char kFutexFloor[] = "futex_pingpong";
inline constexpr char kMemcpyFloor[] = "memcpy";
inline constexpr char kBaselineTransport[] = "minimal_ring";

struct Floor {
  std::string name;
  std::optional<std::size_t> size;
  std::optional<LatencySummary> latency;
  std::optional<double> gb_per_s;
  std::uint64_t messages = 0;
};

// Medians, field by field, of repetitions of one measurement (the first one's labels). With an odd count
// every figure is one that was measured.
Result MedianResult(const std::vector<Result>& repetitions);
Floor MedianFloor(const std::vector<Floor>& repetitions);

// The floor a result is compared with (and the ratio): spin round trip -> atomic_pingpong carrying the
// message's size if measured, the bare one otherwise, p50; blocking round trip -> futex_pingpong p50 (ratio =
// result p50 / floor p50); stream -> memcpy at the same size (ratio = result GB/s / memcpy GB/s).
void AttachFloor(const std::vector<Floor>& floors, Result& result);
// The same measurement of the baseline transport: ratio = p50 / baseline p50 (pingpong), msg/s / baseline
// msg/s (stream). Nothing for the baseline itself.
void AttachBaseline(const Result& baseline, Result& result);

// What the results were measured on, printed beside every table and written into the JSON.
struct MachineInfo {
  std::string cpu_model;
  int logical_cpus = 0;
  std::string kernel;        // "Linux 6.1.0 x86_64"
  std::string clocksource;   // the kernel's current clock source
  std::string hostname;
  std::string load_average;  // /proc/loadavg's first three fields: other work skews results
};
MachineInfo ReadMachineInfo();

struct Setup {
  std::optional<std::pair<int, int>> cpus;  // parent, child; none when not pinned
  double warmup_s = 0;
  double duration_s = 0;
  long long messages = 0;  // per run when > 0, else duration_s decides
  int repetitions = 1;
  std::string clock;       // what timestamps latency
  std::string note;        // why unpinned, if so
  double max_others = 0;   // repetitions with more other-process CPU than this were run again ...
  int noisy_retries = 0;   // ... up to this many times per measurement
};

struct Report {
  std::string command;
  MachineInfo machine;
  Setup setup;
  std::vector<Floor> floors;
  std::vector<Result> results;
  std::vector<std::string> unavailable;  // transports asked for that cannot run, with the reason
  std::vector<std::string> failures;     // runs that failed, with their error
};

// The machine and setup lines printed above every table; the floors; the results.
void PrintHeader(std::FILE* out, const Report& report);
void PrintFloors(std::FILE* out, const Report& report);
void PrintResults(std::FILE* out, const Report& report);
std::string ToJson(const Report& report);

// "4 KiB", "64 B": the table's sizes.
std::string FormatBytes(std::size_t bytes);

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_RESULTS_H_
