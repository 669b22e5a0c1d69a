#include "benchmarks/eshm_bench/timing.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
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

// -1 if /proc/stat is unreadable. cpu  user nice system idle iowait irq softirq steal ...: busy is
// everything but idle and iowait.
double MachineBusySeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  if (!(in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) || cpu != "cpu") return -1;
  return static_cast<double>(user + nice + system + irq + softirq + steal) / static_cast<double>(sysconf(_SC_CLK_TCK));
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

double CpuSeconds(bool children) {
  const auto seconds = [](int who) {
    rusage u{};
    getrusage(who, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  return seconds(RUSAGE_SELF) + (children ? seconds(RUSAGE_CHILDREN) : 0);
}

CpuMeter::CpuMeter()
    : start_ns_(Clock::MonotonicNs()), start_busy_s_(MachineBusySeconds()), start_own_s_(CpuSeconds(true)) {}

double CpuMeter::OthersCores() const {
  const double busy = MachineBusySeconds();
  const double wall_s = static_cast<double>(Clock::MonotonicNs() - start_ns_) / 1e9;
  if (busy < 0 || start_busy_s_ < 0 || wall_s <= 0) return -1;
  return std::max(0.0, (busy - start_busy_s_ - (CpuSeconds(true) - start_own_s_)) / wall_s);
}

}  // namespace eshm_bench
