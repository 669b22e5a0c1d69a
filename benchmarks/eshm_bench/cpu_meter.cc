#include "benchmarks/eshm_bench/cpu_meter.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "benchmarks/eshm_bench/clock.h"

namespace eshm_bench {

CpuMeter::CpuMeter()
    : start_ns_(static_cast<std::int64_t>(Clock::MonotonicNs())),
      start_busy_s_(MachineBusySeconds()),
      start_own_s_(OwnSeconds()) {}

double CpuMeter::MachineBusySeconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  // cpu  user nice system idle iowait irq softirq steal ...: busy is everything but idle and iowait.
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  if (!(in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) || cpu != "cpu") return -1;
  const double ticks_per_s = static_cast<double>(sysconf(_SC_CLK_TCK));
  return static_cast<double>(user + nice + system + irq + softirq + steal) / ticks_per_s;
}

double CpuMeter::OwnSeconds() {
  const auto seconds = [](const rusage& u) {
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  rusage self{}, children{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  return seconds(self) + seconds(children);
}

double CpuMeter::OthersCores() const {
  const double busy = MachineBusySeconds();
  if (busy < 0 || start_busy_s_ < 0) return -1;
  const double wall_s = static_cast<double>(static_cast<std::int64_t>(Clock::MonotonicNs()) - start_ns_) / 1e9;
  if (wall_s <= 0) return -1;
  return std::max(0.0, (busy - start_busy_s_ - (OwnSeconds() - start_own_s_)) / wall_s);
}

}  // namespace eshm_bench
