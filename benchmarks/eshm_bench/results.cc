#include "benchmarks/eshm_bench/results.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

namespace eshm_bench {

const char* ModeName(Mode mode) { return mode == Mode::kPingPong ? "pingpong" : "stream"; }

LatencySummary Summarize(const Histogram& h) {
  LatencySummary s;
  s.min = static_cast<double>(h.min());
  s.mean = h.mean();
  s.p50 = h.Percentile(0.50);
  s.p90 = h.Percentile(0.90);
  s.p99 = h.Percentile(0.99);
  s.p999 = h.Percentile(0.999);
  s.p9999 = h.Percentile(0.9999);
  s.max = static_cast<double>(h.max());
  return s;
}

double Median(std::vector<double> values) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

namespace {

template <typename T>
double MedianOf(const std::vector<T>& items, const std::function<double(const T&)>& field) {
  std::vector<double> values;
  values.reserve(items.size());
  for (const T& item : items) values.push_back(field(item));
  return Median(std::move(values));
}

// Each percentile's median on its own; with an odd count (3, 5) every figure is one that was measured.
std::optional<LatencySummary> MedianLatency(const std::vector<std::optional<LatencySummary>>& all) {
  std::vector<LatencySummary> present;
  for (const auto& l : all) {
    if (l.has_value()) present.push_back(*l);
  }
  if (present.empty()) return std::nullopt;
  using L = LatencySummary;
  LatencySummary m;
  m.min = MedianOf<L>(present, [](const L& l) { return l.min; });
  m.mean = MedianOf<L>(present, [](const L& l) { return l.mean; });
  m.p50 = MedianOf<L>(present, [](const L& l) { return l.p50; });
  m.p90 = MedianOf<L>(present, [](const L& l) { return l.p90; });
  m.p99 = MedianOf<L>(present, [](const L& l) { return l.p99; });
  m.p999 = MedianOf<L>(present, [](const L& l) { return l.p999; });
  m.p9999 = MedianOf<L>(present, [](const L& l) { return l.p9999; });
  m.max = MedianOf<L>(present, [](const L& l) { return l.max; });
  return m;
}

}  // namespace

Result MedianResult(const std::vector<Result>& reps) {
  if (reps.empty()) return Result{};
  Result m = reps.front();
  m.messages = static_cast<std::uint64_t>(MedianOf<Result>(reps, [](const Result& r) { return static_cast<double>(r.messages); }));
  m.seconds = MedianOf<Result>(reps, [](const Result& r) { return r.seconds; });
  m.msgs_per_s = MedianOf<Result>(reps, [](const Result& r) { return r.msgs_per_s; });
  m.gb_per_s = MedianOf<Result>(reps, [](const Result& r) { return r.gb_per_s; });
  m.others_cores = MedianOf<Result>(reps, [](const Result& r) { return r.others_cores; });
  if (m.futex_calls_per_message.has_value()) {
    m.futex_calls_per_message =
        MedianOf<Result>(reps, [](const Result& r) { return r.futex_calls_per_message.value_or(0); });
  }
  std::vector<std::optional<LatencySummary>> latencies;
  for (const Result& r : reps) latencies.push_back(r.latency);
  m.latency = MedianLatency(latencies);
  return m;
}

Floor MedianFloor(const std::vector<Floor>& reps) {
  if (reps.empty()) return Floor{};
  Floor m = reps.front();
  std::vector<std::optional<LatencySummary>> latencies;
  std::vector<double> rates;
  for (const Floor& f : reps) {
    latencies.push_back(f.latency);
    if (f.gb_per_s.has_value()) rates.push_back(*f.gb_per_s);
  }
  m.latency = MedianLatency(latencies);
  if (!rates.empty()) m.gb_per_s = Median(rates);
  m.messages = static_cast<std::uint64_t>(MedianOf<Floor>(reps, [](const Floor& f) { return static_cast<double>(f.messages); }));
  return m;
}

}  // namespace eshm_bench
