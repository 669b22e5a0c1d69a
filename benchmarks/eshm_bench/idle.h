// What open, idle channels cost (eshm-bench --idle=N,...): for each count a fresh process opens N masters
// (4 KiB rings); with peers a second fresh process opens their N slaves. Both settle for 1 s, then each
// one's CPU time (all its threads) is measured over the same window; then each closes its channels. Nothing
// flows, so this is the monitor's cost: heartbeats and peer checks.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_IDLE_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_IDLE_H_

#include <cstdio>
#include <vector>

#include "absl/status/statusor.h"

namespace eshm_bench {

struct IdleResult {
  int channels = 0;
  double masters_cpu_percent = 0;  // of one core, over the window
  double slaves_cpu_percent = -1;  // -1: no peers
  double open_s = 0;               // the slower process's time to open its N channels
  double close_s = 0;
  int peers_alive = -1;            // masters seeing their slave alive at the end of the window; -1: no peers
};

absl::StatusOr<IdleResult> MeasureIdle(int channels, double window_s, bool peers, int timeout_s);
void PrintIdle(std::FILE* out, const std::vector<IdleResult>& results, double window_s, bool peers);

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_IDLE_H_
