// Output: the aligned table people read, and the JSON (schema "eshm-bench/2", shared with the Python
// benchmark) that plot_results.py and other tools read.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_REPORT_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_REPORT_H_

#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "benchmarks/eshm_bench/machine_info.h"
#include "benchmarks/eshm_bench/results.h"

namespace eshm_bench {

struct Setup {
  bool pinned = false;
  std::optional<std::pair<int, int>> cpus;  // parent, child
  double warmup_s = 0;
  double duration_s = 0;
  long long messages = 0;  // per run when > 0, else duration_s decides
  int repetitions = 1;
  std::string clock;       // what timestamps latency: tsc or clock_monotonic
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
  std::vector<std::string> unavailable;  // transports asked for but not compiled in, with the reason
  std::vector<std::string> failures;     // runs that failed, with their error
};

// The floor a result is compared with (and the ratio): spin round trip -> atomic_pingpong carrying the
// message's size if measured, the bare one otherwise, p50; blocking round trip -> futex_pingpong p50 (ratio =
// result p50 / floor p50); stream -> memcpy at the same size (ratio = result GB/s / memcpy GB/s).
void AttachFloor(const std::vector<Floor>& floors, Result& result);
// The same measurement of the baseline transport: ratio = p50 / baseline p50 (pingpong), msg/s / baseline
// msg/s (stream). Nothing for the baseline itself.
void AttachBaseline(const Result& baseline, Result& result);

// The machine and setup lines printed above every table.
void PrintHeader(std::FILE* out, const Report& report);
void PrintFloors(std::FILE* out, const Report& report);
void PrintResults(std::FILE* out, const Report& report);

std::string ToJson(const Report& report);

// "1.5 us", "320 ns", "4 KiB", "3.10M": the table's units.
std::string FormatNs(double ns);
std::string FormatBytes(std::size_t bytes);

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_REPORT_H_
