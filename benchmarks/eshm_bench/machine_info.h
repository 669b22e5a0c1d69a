// What the results were measured on, printed beside every table and written into the JSON.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_MACHINE_INFO_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_MACHINE_INFO_H_

#include <string>
#include <vector>

namespace eshm_bench {

struct MachineInfo {
  std::string cpu_model;
  int logical_cpus = 0;
  std::string kernel;       // "Linux 6.1.0 x86_64"
  std::string clocksource;  // the kernel's current clock source
  std::string hostname;
  std::string load_average; // /proc/loadavg's first three fields: other work skews results
};

MachineInfo ReadMachineInfo();

// The CPUs this process may run on (sched_getaffinity), ascending.
std::vector<int> AllowedCpus();

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_MACHINE_INFO_H_
