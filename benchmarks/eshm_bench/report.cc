#include "benchmarks/eshm_bench/report.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace eshm_bench {

namespace {

const Floor* FindFloor(const std::vector<Floor>& floors, const std::string& name, std::optional<std::size_t> size) {
  for (const Floor& f : floors) {
    if (f.name == name && f.size == size) return &f;
  }
  return nullptr;
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

// Plain columns, padded to the widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Columns listed in `left` are left-aligned, the others right-aligned (numbers).
  void Print(std::FILE* out, std::size_t left) const {
    std::vector<std::size_t> width;
    for (const auto& row : rows_) {
      if (width.size() < row.size()) width.resize(row.size(), 0);
      for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    }
    for (const auto& row : rows_) {
      std::string line = " ";
      for (std::size_t i = 0; i < row.size(); ++i) {
        const int w = static_cast<int>(width[i]);
        line += i < left ? absl::StrFormat(" %-*s", w, row[i]) : absl::StrFormat(" %*s", w, row[i]);
      }
      std::fprintf(out, "%s\n", line.c_str());
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

// JSON numbers: finite doubles with enough digits; NaN and infinities become null.
std::string Number(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.6g", v);
}

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string LatencyJson(const std::optional<LatencySummary>& l) {
  if (!l.has_value()) return "null";
  return absl::StrCat("{\"min\": ", Number(l->min), ", \"mean\": ", Number(l->mean), ", \"p50\": ", Number(l->p50),
                      ", \"p90\": ", Number(l->p90), ", \"p99\": ", Number(l->p99), ", \"p99.9\": ", Number(l->p999),
                      ", \"p99.99\": ", Number(l->p9999), ", \"max\": ", Number(l->max), "}");
}

std::string OptionalNumber(const std::optional<double>& v) { return v.has_value() ? Number(*v) : "null"; }

}  // namespace

std::string FormatNs(double ns) {
  if (ns < 1e3) return absl::StrFormat("%.0f ns", ns);
  if (ns < 1e6) return absl::StrFormat("%.1f us", ns / 1e3);
  if (ns < 1e9) return absl::StrFormat("%.2f ms", ns / 1e6);
  return absl::StrFormat("%.2f s", ns / 1e9);
}

std::string FormatBytes(std::size_t bytes) {
  if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, " MiB");
  if (bytes >= 1024 && bytes % 1024 == 0) return absl::StrCat(bytes >> 10, " KiB");
  return absl::StrCat(bytes, " B");
}

void AttachBaseline(const Result& baseline, Result& r) {
  if (&baseline == &r) return;
  double ratio = 0;
  if (r.mode == Mode::kPingPong) {
    if (!r.latency.has_value() || !baseline.latency.has_value() || baseline.latency->p50 <= 0) return;
    ratio = r.latency->p50 / baseline.latency->p50;
  } else {
    if (baseline.msgs_per_s <= 0) return;
    ratio = r.msgs_per_s / baseline.msgs_per_s;
  }
  r.baseline = baseline.transport;
  r.ratio_to_baseline = ratio;
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

void PrintHeader(std::FILE* out, const Report& report) {
  const MachineInfo& m = report.machine;
  const Setup& s = report.setup;
  std::fprintf(out, "machine: %s | %d logical CPUs | %s | clocksource %s | host %s | load %s\n", m.cpu_model.c_str(),
               m.logical_cpus, m.kernel.c_str(), m.clocksource.c_str(), m.hostname.c_str(), m.load_average.c_str());
  const std::string pinning =
      s.pinned ? absl::StrFormat("pinned: parent on CPU %d, child on CPU %d", s.cpus->first, s.cpus->second)
               : absl::StrCat("NOT pinned", s.note.empty() ? "" : absl::StrCat(" (", s.note, ")"));
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
  Table table({"floor", "size", "p50", "p90", "p99", "p99.9", "max", "GB/s"});
  for (const Floor& f : report.floors) {
    std::vector<std::string> row = {f.name, f.size.has_value() ? FormatBytes(*f.size) : "-"};
    if (f.latency.has_value()) {
      for (const double v : {f.latency->p50, f.latency->p90, f.latency->p99, f.latency->p999, f.latency->max}) {
        row.push_back(FormatNs(v));
      }
    } else {
      row.insert(row.end(), 5, "-");
    }
    row.push_back(f.gb_per_s.has_value() ? absl::StrFormat("%.2f", *f.gb_per_s) : "-");
    table.Add(std::move(row));
  }
  table.Print(out, 2);
}

void PrintResults(std::FILE* out, const Report& report) {
  // The machine again, so that a copy of the table carries it.
  const MachineInfo& m = report.machine;
  std::fprintf(out, "\n%s, %d logical CPUs, %s, clocksource %s; two forked processes, %s\n", m.cpu_model.c_str(),
               m.logical_cpus, m.kernel.c_str(), m.clocksource.c_str(),
               report.setup.pinned ? absl::StrFormat("pinned to CPUs %d and %d", report.setup.cpus->first,
                                                     report.setup.cpus->second)
                                         .c_str()
                                   : "not pinned");
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
  Table table(std::move(header));
  for (const Result& r : report.results) {
    std::vector<std::string> row = {r.transport,       ModeName(r.mode),        WaitName(r.wait),
                                    FormatBytes(r.size), FormatCount(r.messages), FormatRate(r.msgs_per_s),
                                    absl::StrFormat("%.3f", r.gb_per_s)};
    if (r.latency.has_value()) {
      const LatencySummary& l = *r.latency;
      for (const double v : {l.min, l.p50, l.p90, l.p99, l.p999, l.p9999, l.max}) row.push_back(FormatNs(v));
    } else {
      row.insert(row.end(), 7, "-");
    }
    if (r.ratio_to_floor.has_value()) {
      row.push_back(absl::StrFormat("%.2fx %s%s", *r.ratio_to_floor, r.floor,
                                    r.mode == Mode::kPingPong ? " p50" : " GB/s"));
    } else {
      row.push_back("-");
    }
    if (any_baseline) {
      row.push_back(r.ratio_to_baseline.has_value()
                        ? absl::StrFormat("%.2fx%s", *r.ratio_to_baseline,
                                          r.mode == Mode::kPingPong ? " p50" : " msg/s")
                        : "-");
    }
    if (any_futex) {
      row.push_back(r.futex_calls_per_message.has_value() && r.wait == Wait::kBlocking
                        ? absl::StrFormat("%.3f", *r.futex_calls_per_message)
                        : "-");
    }
    row.push_back(r.others_cores >= 0 ? absl::StrFormat("%.2f", r.others_cores) : "?");
    table.Add(std::move(row));
  }
  table.Print(out, 3);
  std::fprintf(out, "  others: cores other processes used during the run (median); above ~0.2 the figures are disturbed\n");
  for (const std::string& u : report.unavailable) std::fprintf(out, "unavailable: %s\n", u.c_str());
  for (const std::string& f : report.failures) std::fprintf(out, "FAILED: %s\n", f.c_str());
}

std::string ToJson(const Report& report) {
  const MachineInfo& m = report.machine;
  const Setup& s = report.setup;
  std::string j = "{\n";
  absl::StrAppend(&j, "  \"schema\": \"eshm-bench/2\",\n  \"tool\": \"eshm-bench\",\n");
  absl::StrAppend(&j, "  \"command\": ", Quote(report.command), ",\n");
  absl::StrAppend(&j, "  \"machine\": {\"cpu_model\": ", Quote(m.cpu_model), ", \"logical_cpus\": ", m.logical_cpus,
                  ", \"kernel\": ", Quote(m.kernel), ", \"clocksource\": ", Quote(m.clocksource),
                  ", \"hostname\": ", Quote(m.hostname), "},\n");
  const std::string cpus =
      s.cpus.has_value() ? absl::StrCat("[", s.cpus->first, ", ", s.cpus->second, "]") : std::string("null");
  absl::StrAppend(&j, "  \"setup\": {\"ends\": \"processes\", \"pinned\": ", s.pinned ? "true" : "false",
                  ", \"cpus\": ", cpus, ", \"warmup_s\": ", Number(s.warmup_s), ", \"repetitions\": ", s.repetitions,
                  "},\n");
  std::vector<std::string> floors;
  for (const Floor& f : report.floors) {
    floors.push_back(absl::StrCat("    {\"name\": ", Quote(f.name), ", \"size\": ",
                                  f.size.has_value() ? absl::StrCat(*f.size) : "null",
                                  ", \"latency_ns\": ", LatencyJson(f.latency),
                                  ", \"gb_per_s\": ", OptionalNumber(f.gb_per_s), "}"));
  }
  absl::StrAppend(&j, "  \"floors\": [\n", absl::StrJoin(floors, ",\n"), floors.empty() ? "" : "\n", "  ],\n");
  std::vector<std::string> results;
  for (const Result& r : report.results) {
    results.push_back(absl::StrCat(
        "    {\"transport\": ", Quote(r.transport), ", \"mode\": ", Quote(ModeName(r.mode)), ", \"wait\": ",
        Quote(WaitName(r.wait)), ", \"size\": ", r.size, ", \"messages\": ", r.messages, ", \"seconds\": ",
        Number(r.seconds), ", \"msgs_per_s\": ", Number(r.msgs_per_s), ", \"gb_per_s\": ", Number(r.gb_per_s),
        ", \"latency_ns\": ", LatencyJson(r.latency), ", \"latency_kind\": ",
        Quote(r.mode == Mode::kPingPong ? "round_trip" : "one_way"), ", \"floor\": ",
        r.floor.empty() ? std::string("null") : Quote(r.floor), ", \"ratio_to_floor\": ",
        OptionalNumber(r.ratio_to_floor), ", \"baseline\": ", r.baseline.empty() ? std::string("null") : Quote(r.baseline),
        ", \"ratio_to_baseline\": ", OptionalNumber(r.ratio_to_baseline), ", \"futex_calls_per_message\": ",
        OptionalNumber(r.futex_calls_per_message), "}"));
  }
  absl::StrAppend(&j, "  \"results\": [\n", absl::StrJoin(results, ",\n"), results.empty() ? "" : "\n", "  ]\n}\n");
  return j;
}

}  // namespace eshm_bench
