#include "benchmarks/eshm_bench/results.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace eshm_bench {
namespace {

template <typename T, typename Field>
double MedianOf(const std::vector<T>& items, Field field) {
  std::vector<double> values;
  for (const T& item : items) values.push_back(field(item));
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

constexpr double LatencySummary::*kLatencyFields[] = {&LatencySummary::min,  &LatencySummary::mean,
                                                      &LatencySummary::p50,  &LatencySummary::p90,
                                                      &LatencySummary::p99,  &LatencySummary::p999,
                                                      &LatencySummary::p9999, &LatencySummary::max};

// Each percentile's median on its own.
template <typename T>
std::optional<LatencySummary> MedianLatency(const std::vector<T>& reps) {
  std::vector<LatencySummary> present;
  for (const T& r : reps) {
    if (r.latency.has_value()) present.push_back(*r.latency);
  }
  if (present.empty()) return std::nullopt;
  LatencySummary m;
  for (const auto field : kLatencyFields) {
    m.*field = MedianOf(present, [field](const LatencySummary& l) { return l.*field; });
  }
  return m;
}

const Floor* FindFloor(const std::vector<Floor>& floors, const std::string& name, std::optional<std::size_t> size) {
  for (const Floor& f : floors) {
    if (f.name == name && f.size == size) return &f;
  }
  return nullptr;
}

std::string FormatNs(double ns) {
  if (ns < 1e3) return absl::StrFormat("%.0f ns", ns);
  if (ns < 1e6) return absl::StrFormat("%.1f us", ns / 1e3);
  if (ns < 1e9) return absl::StrFormat("%.2f ms", ns / 1e6);
  return absl::StrFormat("%.2f s", ns / 1e9);
}

std::string FormatRate(double per_s) {
  if (per_s >= 1e6) return absl::StrFormat("%.2fM", per_s / 1e6);
  if (per_s >= 1e3) return absl::StrFormat("%.1fk", per_s / 1e3);
  return absl::StrFormat("%.0f", per_s);
}

std::string FormatCount(std::uint64_t n) {
  if (n >= 10'000'000) return absl::StrFormat("%.1fM", static_cast<double>(n) / 1e6);
  if (n >= 100'000) return absl::StrFormat("%.0fk", static_cast<double>(n) / 1e3);
  return absl::StrCat(n);
}

// Plain columns padded to the widest cell: the first `left` left-aligned, the others (numbers) right-aligned.
void PrintTable(std::FILE* out, const std::vector<std::vector<std::string>>& rows, std::size_t left) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()), 0);
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line = " ";
    for (std::size_t i = 0; i < row.size(); ++i) {
      const int w = static_cast<int>(width[i]);
      absl::StrAppend(&line, i < left ? absl::StrFormat(" %-*s", w, row[i]) : absl::StrFormat(" %*s", w, row[i]));
    }
    std::fprintf(out, "%s\n", line.c_str());
  }
}

std::string FirstLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line.empty() ? "unknown" : line;
}

// JSON numbers: finite doubles with enough digits; NaN, infinities and nothing become null.
std::string Number(std::optional<double> v) {
  return v.has_value() && std::isfinite(*v) ? absl::StrFormat("%.6g", *v) : "null";
}

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\", std::string(1, c));
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", static_cast<int>(c)));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string QuoteOrNull(const std::string& s) { return s.empty() ? "null" : Quote(s); }

std::string LatencyJson(const std::optional<LatencySummary>& l) {
  if (!l.has_value()) return "null";
  return absl::StrCat("{\"min\": ", Number(l->min), ", \"mean\": ", Number(l->mean), ", \"p50\": ", Number(l->p50),
                      ", \"p90\": ", Number(l->p90), ", \"p99\": ", Number(l->p99), ", \"p99.9\": ", Number(l->p999),
                      ", \"p99.99\": ", Number(l->p9999), ", \"max\": ", Number(l->max), "}");
}

// "<before>A<between>B<after>" for CPUs A and B, or "not pinned".
std::string Pinning(const Setup& s, const char* before, const char* between, const char* after) {
  return s.cpus.has_value() ? absl::StrCat(before, s.cpus->first, between, s.cpus->second, after) : "not pinned";
}

}  // namespace

const char* ModeName(Mode mode) { return mode == Mode::kPingPong ? "pingpong" : "stream"; }

LatencySummary Summarize(const Histogram& h) {
  return LatencySummary{static_cast<double>(h.min()), h.mean(),          h.Percentile(0.50),
                        h.Percentile(0.90),          h.Percentile(0.99), h.Percentile(0.999),
                        h.Percentile(0.9999),        static_cast<double>(h.max())};
}

Result MakeResult(const std::string& transport, Mode mode, Wait wait, std::size_t size, std::uint64_t messages,
                  std::uint64_t counted, double seconds, const Histogram& latency, double others_cores) {
  Result r;
  r.transport = transport;
  r.mode = mode;
  r.wait = wait;
  r.size = size;
  r.messages = messages;
  r.seconds = seconds;
  r.msgs_per_s = seconds > 0 ? static_cast<double>(counted) / seconds : 0;
  r.gb_per_s = r.msgs_per_s * static_cast<double>(size) / 1e9;
  if (latency.count() > 0) r.latency = Summarize(latency);
  r.others_cores = others_cores;
  return r;
}

Result MedianResult(const std::vector<Result>& reps) {
  if (reps.empty()) return Result{};
  Result m = reps.front();
  m.messages =
      static_cast<std::uint64_t>(MedianOf(reps, [](const Result& r) { return static_cast<double>(r.messages); }));
  m.seconds = MedianOf(reps, [](const Result& r) { return r.seconds; });
  m.msgs_per_s = MedianOf(reps, [](const Result& r) { return r.msgs_per_s; });
  m.gb_per_s = MedianOf(reps, [](const Result& r) { return r.gb_per_s; });
  m.others_cores = MedianOf(reps, [](const Result& r) { return r.others_cores; });
  if (m.futex_calls_per_message.has_value()) {
    m.futex_calls_per_message = MedianOf(reps, [](const Result& r) { return r.futex_calls_per_message.value_or(0); });
  }
  m.latency = MedianLatency(reps);
  return m;
}

Floor MedianFloor(const std::vector<Floor>& reps) {
  if (reps.empty()) return Floor{};
  Floor m = reps.front();
  m.latency = MedianLatency(reps);
  if (m.gb_per_s.has_value()) m.gb_per_s = MedianOf(reps, [](const Floor& f) { return f.gb_per_s.value_or(0); });
  m.messages =
      static_cast<std::uint64_t>(MedianOf(reps, [](const Floor& f) { return static_cast<double>(f.messages); }));
  return m;
}

void AttachBaseline(const Result& baseline, Result& r) {
  if (&baseline == &r) return;
  const bool pingpong = r.mode == Mode::kPingPong;
  if (pingpong && (!r.latency.has_value() || !baseline.latency.has_value() || baseline.latency->p50 <= 0)) return;
  if (!pingpong && baseline.msgs_per_s <= 0) return;
  r.baseline = baseline.transport;
  r.ratio_to_baseline = pingpong ? r.latency->p50 / baseline.latency->p50 : r.msgs_per_s / baseline.msgs_per_s;
}

void AttachFloor(const std::vector<Floor>& floors, Result& r) {
  r.floor.clear();
  r.ratio_to_floor.reset();
  if (r.mode == Mode::kPingPong) {
    // A spin round trip against the atomic ping-pong carrying its size, where one was measured.
    const Floor* f = r.wait == Wait::kSpin ? FindFloor(floors, kAtomicFloor, r.size) : nullptr;
    if (f == nullptr) f = FindFloor(floors, r.wait == Wait::kSpin ? kAtomicFloor : kFutexFloor, std::nullopt);
    if (f == nullptr || !f->latency.has_value() || !r.latency.has_value() || f->latency->p50 <= 0) return;
    r.floor = f->name;
    r.ratio_to_floor = r.latency->p50 / f->latency->p50;
  } else {
    const Floor* f = FindFloor(floors, kMemcpyFloor, r.size);
    if (f == nullptr || !f->gb_per_s.has_value() || *f->gb_per_s <= 0) return;
    r.floor = f->name;
    r.ratio_to_floor = r.gb_per_s / *f->gb_per_s;
  }
}

MachineInfo ReadMachineInfo() {
  MachineInfo info;
  info.cpu_model = "unknown";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    // x86 says "model name", Arm "Model" (or nothing useful).
    const std::size_t colon = line.find(':');
    if ((line.rfind("model name", 0) == 0 || line.rfind("Model", 0) == 0) && colon != std::string::npos) {
      const std::size_t start = line.find_first_not_of(" \t", colon + 1);
      if (start != std::string::npos) info.cpu_model = line.substr(start);
      break;
    }
  }
  info.logical_cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  utsname u{};
  if (uname(&u) == 0) {
    info.kernel = absl::StrCat(u.sysname, " ", u.release, " ", u.machine);
    info.hostname = u.nodename;
  }
  info.clocksource = FirstLine("/sys/devices/system/clocksource/clocksource0/current_clocksource");
  std::istringstream load(FirstLine("/proc/loadavg"));
  std::string a, b, c;
  load >> a >> b >> c;
  info.load_average = absl::StrCat(a, " ", b, " ", c);
  return info;
}

std::string FormatBytes(std::size_t bytes) {
  if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, " MiB");
  if (bytes >= 1024 && bytes % 1024 == 0) return absl::StrCat(bytes >> 10, " KiB");
  return absl::StrCat(bytes, " B");
}

void PrintHeader(std::FILE* out, const Report& report) {
  const MachineInfo& m = report.machine;
  const Setup& s = report.setup;
  std::fprintf(out, "machine: %s | %d logical CPUs | %s | clocksource %s | host %s | load %s\n", m.cpu_model.c_str(),
               m.logical_cpus, m.kernel.c_str(), m.clocksource.c_str(), m.hostname.c_str(), m.load_average.c_str());
  std::string pinning = Pinning(s, "pinned: parent on CPU ", ", child on CPU ", "");
  if (!s.cpus.has_value()) pinning = absl::StrCat("NOT pinned", s.note.empty() ? "" : absl::StrCat(" (", s.note, ")"));
  std::fprintf(out, "setup: two forked processes (parent sends; child echoes or receives), %s\n", pinning.c_str());
  const std::string length = s.messages > 0 ? absl::StrCat(s.messages, " timed messages")
                                            : absl::StrFormat("%.3g s timed", s.duration_s);
  std::fprintf(out, "runs: warm-up %.3g s + %s per run, median of %d repetition(s); timestamps: %s\n", s.warmup_s,
               length.c_str(), s.repetitions, s.clock.c_str());
  if (s.noisy_retries > 0) {
    std::fprintf(out, "disturbance: a repetition during which other processes used more than %.2f cores is run "
                      "again, up to %d times per measurement\n", s.max_others, s.noisy_retries);
  }
  std::fprintf(out, "command: %s\n", report.command.c_str());
}

void PrintFloors(std::FILE* out, const Report& report) {
  if (report.floors.empty()) return;
  std::fprintf(out, "\nfloors (same CPUs, this run; medians):\n");
  std::vector<std::vector<std::string>> rows = {{"floor", "size", "p50", "p90", "p99", "p99.9", "max", "GB/s"}};
  for (const Floor& f : report.floors) {
    std::vector<std::string> row = {f.name, f.size.has_value() ? FormatBytes(*f.size) : "-"};
    for (const auto field : {&LatencySummary::p50, &LatencySummary::p90, &LatencySummary::p99,
                             &LatencySummary::p999, &LatencySummary::max}) {
      row.push_back(f.latency.has_value() ? FormatNs((*f.latency).*field) : "-");
    }
    row.push_back(f.gb_per_s.has_value() ? absl::StrFormat("%.2f", *f.gb_per_s) : "-");
    rows.push_back(std::move(row));
  }
  PrintTable(out, rows, 2);
}

void PrintResults(std::FILE* out, const Report& report) {
  // The machine again, so that a copy of the table carries it.
  const MachineInfo& m = report.machine;
  std::fprintf(out, "\n%s, %d logical CPUs, %s, clocksource %s; two forked processes, %s\n", m.cpu_model.c_str(),
               m.logical_cpus, m.kernel.c_str(), m.clocksource.c_str(),
               Pinning(report.setup, "pinned to CPUs ", " and ", "").c_str());
  std::fprintf(out,
               "results (medians; pingpong latency = round trip, msg/s = round trips/s; stream latency = one way "
               "under full load, send timestamp in the message -> receiver's clock):\n");
  bool any_baseline = false, any_futex = false;
  for (const Result& r : report.results) {
    any_baseline |= r.ratio_to_baseline.has_value();
    any_futex |= r.futex_calls_per_message.has_value() && r.wait == Wait::kBlocking;
  }
  std::vector<std::string> header = {"transport", "mode", "wait", "size", "msgs", "msg/s", "GB/s", "min", "p50",
                                     "p90", "p99", "p99.9", "p99.99", "max", "vs floor"};
  if (any_baseline) header.push_back(absl::StrCat("vs ", kBaselineTransport));
  if (any_futex) header.push_back("futex/msg");
  header.push_back("others");
  std::vector<std::vector<std::string>> rows = {std::move(header)};
  for (const Result& r : report.results) {
    const bool pingpong = r.mode == Mode::kPingPong;
    std::vector<std::string> row = {r.transport,         ModeName(r.mode),        WaitName(r.wait),
                                    FormatBytes(r.size), FormatCount(r.messages), FormatRate(r.msgs_per_s),
                                    absl::StrFormat("%.3f", r.gb_per_s)};
    for (const auto field : kLatencyFields) {
      if (field != &LatencySummary::mean) row.push_back(r.latency.has_value() ? FormatNs((*r.latency).*field) : "-");
    }
    row.push_back(r.ratio_to_floor.has_value()
                      ? absl::StrFormat("%.2fx %s%s", *r.ratio_to_floor, r.floor, pingpong ? " p50" : " GB/s")
                      : "-");
    if (any_baseline) {
      row.push_back(r.ratio_to_baseline.has_value()
                        ? absl::StrFormat("%.2fx%s", *r.ratio_to_baseline, pingpong ? " p50" : " msg/s")
                        : "-");
    }
    if (any_futex) {
      const bool counted = r.futex_calls_per_message.has_value() && r.wait == Wait::kBlocking;
      row.push_back(counted ? absl::StrFormat("%.3f", *r.futex_calls_per_message) : "-");
    }
    row.push_back(r.others_cores >= 0 ? absl::StrFormat("%.2f", r.others_cores) : "?");
    rows.push_back(std::move(row));
  }
  PrintTable(out, rows, 3);
  std::fprintf(out, "  others: cores other processes used during the run (median); above ~0.2 the figures are "
                    "disturbed\n");
  for (const std::string& u : report.unavailable) std::fprintf(out, "unavailable: %s\n", u.c_str());
  for (const std::string& f : report.failures) std::fprintf(out, "FAILED: %s\n", f.c_str());
}

std::string ToJson(const Report& report) {
  const MachineInfo& m = report.machine;
  const Setup& s = report.setup;
  std::string j = "{\n  \"schema\": \"eshm-bench/2\",\n  \"tool\": \"eshm-bench\",\n";
  absl::StrAppend(&j, "  \"command\": ", Quote(report.command), ",\n");
  absl::StrAppend(&j, "  \"machine\": {\"cpu_model\": ", Quote(m.cpu_model), ", \"logical_cpus\": ", m.logical_cpus,
                  ", \"kernel\": ", Quote(m.kernel), ", \"clocksource\": ", Quote(m.clocksource),
                  ", \"hostname\": ", Quote(m.hostname), "},\n");
  absl::StrAppend(&j, "  \"setup\": {\"ends\": \"processes\", \"pinned\": ", s.cpus.has_value() ? "true" : "false",
                  ", \"cpus\": ", s.cpus.has_value() ? Pinning(s, "[", ", ", "]") : "null",
                  ", \"warmup_s\": ", Number(s.warmup_s), ", \"repetitions\": ", s.repetitions, "},\n");
  std::vector<std::string> floors;
  for (const Floor& f : report.floors) {
    floors.push_back(absl::StrCat("    {\"name\": ", Quote(f.name), ", \"size\": ",
                                  f.size.has_value() ? absl::StrCat(*f.size) : "null", ", \"latency_ns\": ",
                                  LatencyJson(f.latency), ", \"gb_per_s\": ", Number(f.gb_per_s), "}"));
  }
  absl::StrAppend(&j, "  \"floors\": [\n", absl::StrJoin(floors, ",\n"), floors.empty() ? "" : "\n", "  ],\n");
  std::vector<std::string> results;
  for (const Result& r : report.results) {
    results.push_back(absl::StrCat(
        "    {\"transport\": ", Quote(r.transport), ", \"mode\": ", Quote(ModeName(r.mode)), ", \"wait\": ",
        Quote(WaitName(r.wait)), ", \"size\": ", r.size, ", \"messages\": ", r.messages, ", \"seconds\": ",
        Number(r.seconds), ", \"msgs_per_s\": ", Number(r.msgs_per_s), ", \"gb_per_s\": ", Number(r.gb_per_s),
        ", \"latency_ns\": ", LatencyJson(r.latency), ", \"latency_kind\": ",
        Quote(r.mode == Mode::kPingPong ? "round_trip" : "one_way"), ", \"floor\": ", QuoteOrNull(r.floor),
        ", \"ratio_to_floor\": ", Number(r.ratio_to_floor), ", \"baseline\": ", QuoteOrNull(r.baseline),
        ", \"ratio_to_baseline\": ", Number(r.ratio_to_baseline), ", \"futex_calls_per_message\": ",
        Number(r.futex_calls_per_message), "}"));
  }
  absl::StrAppend(&j, "  \"results\": [\n", absl::StrJoin(results, ",\n"), results.empty() ? "" : "\n", "  ]\n}\n");
  return j;
}

}  // namespace eshm_bench
