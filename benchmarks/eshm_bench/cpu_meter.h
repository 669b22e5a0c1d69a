// How much CPU other processes took while a run was measured: the machine's busy time (/proc/stat) minus
// this process's and its reaped children's (getrusage), over the wall time. On a shared machine this says
// which figures were disturbed (the VM has 2 vCPUs: 1.0 means a whole core went to someone else).
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_CPU_METER_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_CPU_METER_H_

#include <cstdint>

namespace eshm_bench {

class CpuMeter {
 public:
  // Starts measuring now.
  CpuMeter();
  // Average cores used by other processes since construction (never negative); -1 if unknown.
  double OthersCores() const;

 private:
  static double MachineBusySeconds();  // -1 if /proc/stat is unreadable
  static double OwnSeconds();          // self and reaped children, user + system

  std::int64_t start_ns_;
  double start_busy_s_;
  double start_own_s_;
};

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_CPU_METER_H_
