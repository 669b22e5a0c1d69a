#include "benchmarks/eshm_bench/clock.h"

#include <fstream>
#include <string>

namespace eshm_bench {

bool Clock::use_tsc_ = false;
double Clock::ns_per_tick_ = 1.0;

namespace {

// The TSC is only comparable across cores if it runs at a constant rate through power states and the
// kernel trusts it (it would switch its clock source away from an unstable one).
bool TscTrustworthy() {
#if defined(__x86_64__) || defined(__i386__)
  std::ifstream source("/sys/devices/system/clocksource/clocksource0/current_clocksource");
  std::string name;
  if (!(source >> name) || name != "tsc") return false;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0) {
      return line.find(" constant_tsc") != std::string::npos && line.find(" nonstop_tsc") != std::string::npos;
    }
  }
#endif
  return false;
}

}  // namespace

void Clock::Calibrate(bool prefer_tsc) {
  use_tsc_ = prefer_tsc && TscTrustworthy();
  ns_per_tick_ = 1.0;
  if (!use_tsc_) return;
  // 50 ms against CLOCK_MONOTONIC: a rate error well below the histogram's 0.1 %.
  const std::uint64_t ns0 = MonotonicNs();
  const std::uint64_t t0 = Ticks();
  std::uint64_t ns1 = ns0;
  while (ns1 - ns0 < 50'000'000) ns1 = MonotonicNs();
  const std::uint64_t t1 = Ticks();
  ns_per_tick_ = t1 > t0 ? static_cast<double>(ns1 - ns0) / static_cast<double>(t1 - t0) : 1.0;
}

}  // namespace eshm_bench
