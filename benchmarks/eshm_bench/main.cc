// eshm-bench: eshm between two forked, pinned processes, beside the floors it should approach (measured in
// the same run between the same CPUs) and, with --compare, beside eshm's ring without the Channel, the
// minimal ring (the baseline: ratios to it are reported), a pipe pair and an AF_UNIX socket pair.
//
//   eshm-bench --quick                                        a short demo
//   eshm-bench --sweep --compare=all --json=results.json      8 B .. 1 MiB, every transport
//   eshm-bench --mode=stream --sizes=65536 --wait=spin --duration_s=2 --json=-   (only JSON on stdout)
//
// See benchmarks/README.md for what every figure means.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <fstream>
#include <memory>
#include <optional>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "benchmarks/eshm_bench/floors.h"
#include "benchmarks/eshm_bench/idle.h"
#include "benchmarks/eshm_bench/peer_transports.h"
#include "benchmarks/eshm_bench/process_pair.h"
#include "benchmarks/eshm_bench/results.h"
#include "benchmarks/eshm_bench/runner.h"
#include "benchmarks/eshm_bench/timing.h"
#include "benchmarks/eshm_bench/transport.h"

ABSL_FLAG(std::string, mode, "pingpong,stream", "pingpong (round trip), stream (one way, under full load), or both");
ABSL_FLAG(std::string, sizes, "64", "message sizes in bytes, comma-separated (at least 8)");
ABSL_FLAG(bool, sweep, false, "sizes 8, 64, 512, 4096, 65536, 262144 and 1048576 bytes (overrides --sizes)");
ABSL_FLAG(std::string, wait, "spin,blocking", "spin (busy-poll), blocking (sleep in the kernel), or both");
ABSL_FLAG(std::string, cpus, "", "two CPUs for parent and child, e.g. 0,1 (default: the first two allowed)");
ABSL_FLAG(bool, pin, true, "pin parent and child to two CPUs (--nopin: let the scheduler place them)");
ABSL_FLAG(double, warmup_s, 0.2, "seconds at the start of each run that are not recorded");
ABSL_FLAG(double, duration_s, 1.0, "timed seconds per run (unless --messages)");
ABSL_FLAG(std::int64_t, messages, 0, "timed messages per run (pingpong: round trips); 0 = use --duration_s");
ABSL_FLAG(double, floor_duration_s, 0,
          "timed seconds per floor run (0 = as --duration_s; with --messages, floors run that many too)");
ABSL_FLAG(int, repetitions, 3, "runs of every measurement (alternating transports); medians are reported");
ABSL_FLAG(std::string, json, "", "write the results as JSON (schema eshm-bench/2) to this file; - = stdout only");
ABSL_FLAG(std::string, compare, "",
          "also measure, comma-separated: eshm_ring (the ring without the Channel), minimal_ring (the baseline "
          "ring), pipe, unix; rings = eshm_ring,minimal_ring; all = those four. Across hosts, "
          "measured on one: bridge (eshm channels joined by two eshm-bridge processes over loopback TCP), zmq "
          "(ZeroMQ PAIR sockets over loopback TCP); net = bridge,zmq (not in all). From other "
          "languages (each run by its own program, see --python): py_eshm, py_eshm_batch, py_ctypes, py_pipe, "
          "py_queue, py_faster_fifo, py_zmq, py_iceoryx2 (python = all but py_ctypes), py_eshm_array, "
          "py_eshm_array_view, py_shm_pipe_array, py_zmq_array (py_arrays), py_eshm_read_async, "
          "py_eshm_to_thread, py_zmq_asyncio (py_asyncio), node_eshm; bindings = py_eshm,py_eshm_batch,"
          "py_ctypes,node_eshm");
ABSL_FLAG(std::string, idle, "",
          "instead of the runs: what N open, idle channels cost a process (CPU, time to open and close them), "
          "for each N of this comma-separated list; a table, no JSON");
ABSL_FLAG(double, idle_s, 5.0, "--idle: seconds of CPU time measured per count");
ABSL_FLAG(bool, idle_peers, false, "--idle: a second process opens the N slaves; both processes are measured");
ABSL_FLAG(std::string, python, "python3",
          "the interpreter that runs the py_* transports (python -m eshm.bench --peer=...); it must import eshm");
ABSL_FLAG(std::string, node, "node", "the Node.js that runs node_eshm");
ABSL_FLAG(std::string, node_peer, "benchmarks/eshm_bench/node_peer.js", "node_eshm's program");
ABSL_FLAG(bool, quick, false, "a short demo: sizes 64 and 65536, 0.2 s runs, 0.05 s warm-up (explicit flags win)");
ABSL_FLAG(double, max_others, 0.25,
          "a repetition during which other processes used more than this many cores is run again (--noisy_retries)");
ABSL_FLAG(int, noisy_retries, 0, "how many disturbed repetitions each measurement may run again (0 = keep all)");
ABSL_FLAG(int, timeout_s, 60, "watchdog per run: a run that takes longer is stopped and reported as failed");
ABSL_FLAG(std::string, clock, "tsc", "timestamps: tsc (if invariant and the kernel's clock source) or monotonic");
ABSL_FLAG(int, timestamp_every, 0,
          "streams: timestamp every Nth message (latency is of those); 0 = every message from 1 KiB, every 16th below");
ABSL_FLAG(std::string, eshm_publish, "now",
          "eshm and eshm_ring streams (--mode=stream): now (every message visible at once) or deferred (batched, "
          "Flush at the end)");
ABSL_FLAG(std::string, eshm_wait, "sleep",
          "eshm and eshm_ring blocking waits: sleep (a futex at once) or adaptive (spin, yield, then sleep: the "
          "default of eshm::ChannelOptions); futex/msg counts their system calls");
ABSL_FLAG(bool, zero_copy, false,
          "streams only: send and receive in place (eshm: TryClaim/Commit and TryPeek/Release; the rings' claim "
          "and peek), touching the first 16 bytes of each message; transports without it are skipped");
ABSL_FLAG(int, eshm_waitset, 0,
          "eshm: receive through an eshm::WaitSet of this many channels, the measured one added last and the "
          "others idle (0 = read the channel directly)");

namespace eshm_bench {
namespace {

struct Options {
  std::vector<Mode> modes;
  std::vector<Wait> waits;
  std::vector<std::size_t> sizes;
  std::vector<std::string> transports;  // eshm first
  std::vector<std::string> unavailable;
  LoadSpec load;
  LoadSpec floor_load;
  TransportSpec transport;  // its wait is set per run
  int timestamp_every = 0;
  PairConfig pair;
  Setup setup;  // repetitions, max_others and noisy_retries are read from here
  std::string json;
  PeerPrograms peers;
};

// --quick lowers a setting unless it was given on the command line.
template <typename T>
T QuickOr(const absl::Flag<T>& flag, const char* name, T quick_value) {
  const absl::CommandLineFlag* reflected = absl::FindCommandLineFlag(name);
  const bool given = reflected != nullptr && reflected->CurrentValue() != reflected->DefaultValue();
  return absl::GetFlag(FLAGS_quick) && !given ? quick_value : absl::GetFlag(flag);
}

std::vector<std::string> SplitList(const std::string& list) {
  return absl::StrSplit(list, ',', absl::SkipWhitespace());
}

// The values of a list flag, each one of `names` (in the order of T's enumerators); "both" = the two names.
template <typename T>
absl::Status ParseChoices(const char* flag, const std::string& list, const std::vector<std::string>& names,
                          std::vector<T>& out) {
  for (const std::string& item : SplitList(list == "both" ? absl::StrJoin(names, ",") : list)) {
    const auto it = std::find(names.begin(), names.end(), item);
    if (it == names.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": unknown '", item, "' (", absl::StrJoin(names, ", "), ")"));
    }
    out.push_back(static_cast<T>(it - names.begin()));
  }
  return absl::OkStatus();
}

absl::Status ParseCpus(Options& o) {
  const std::vector<int> allowed = AllowedCpus();
  o.pair.spin_yield = allowed.size() < 2;
  if (!absl::GetFlag(FLAGS_pin)) {
    o.setup.note = "--nopin";
  } else if (!absl::GetFlag(FLAGS_cpus).empty()) {
    const std::vector<std::string> items = SplitList(absl::GetFlag(FLAGS_cpus));
    int a = -1, b = -1;
    if (items.size() != 2 || !absl::SimpleAtoi(items[0], &a) || !absl::SimpleAtoi(items[1], &b) || a == b) {
      return absl::InvalidArgumentError("--cpus takes two different CPU numbers, e.g. --cpus=0,1");
    }
    for (const int cpu : {a, b}) {
      if (std::find(allowed.begin(), allowed.end(), cpu) == allowed.end()) {
        return absl::InvalidArgumentError(absl::StrCat("--cpus: CPU ", cpu, " is not available to this process"));
      }
    }
    o.setup.cpus = std::make_pair(a, b);
  } else if (allowed.size() >= 2) {
    o.setup.cpus = std::make_pair(allowed[0], allowed[1]);
  } else {
    o.setup.note = "only one CPU is available: both processes share it and spin loops yield; spin figures mean little";
  }
  o.pair.pinned = o.setup.cpus.has_value();
  if (o.pair.pinned) std::tie(o.pair.parent_cpu, o.pair.child_cpu) = *o.setup.cpus;
  return absl::OkStatus();
}

// --compare's names, groups expanded, each once; those that cannot run here go to o.unavailable.
absl::Status ParseTransports(Options& o) {
  o.transports = {"eshm"};
  std::vector<std::string> wanted, peer_names;
  for (const std::string& name : SplitList(absl::GetFlag(FLAGS_compare))) {
    std::vector<std::string> group = PeerGroup(name);
    if (name == "net") group = NetworkTransportNames();
    if (name == "rings" || name == "all") group = {"eshm_ring", "minimal_ring"};
    if (name == "all") group.insert(group.end(), {"pipe", "unix"});
    if (group.empty()) group = {name};
    for (const std::string& t : group) {
      if (t == "eshm" || std::find(wanted.begin(), wanted.end(), t) != wanted.end()) continue;
      wanted.push_back(t);
      if (IsPeerTransport(t)) peer_names.push_back(t);
    }
  }
  // The peers' C ABI (py_ctypes, node_eshm): the libeshm.so built with this binary, unless one is named: in
  // its runfiles, or beside it in a runfiles tree or output tree that holds it (python -m eshm.bench's).
  char exe_path[4096];
  const ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
  const std::string exe(exe_path, n > 0 ? static_cast<std::size_t>(n) : 0);
  std::vector<std::string> candidates = {absl::StrCat(exe, ".runfiles/eshm/eshm/libeshm.so")};
  absl::string_view tree = exe;  // only a tree that holds this binary at its usual place: never a guess
  if (absl::ConsumeSuffix(&tree, "/benchmarks/eshm_bench/eshm-bench")) {
    candidates.push_back(absl::StrCat(tree, "/eshm/libeshm.so"));
  }
  for (const std::string& libeshm : candidates) {
    if (access(libeshm.c_str(), R_OK) == 0) setenv("ESHM_LIBESHM", libeshm.c_str(), /*overwrite=*/0);
  }
  o.peers = {absl::GetFlag(FLAGS_python), absl::GetFlag(FLAGS_node), absl::GetFlag(FLAGS_node_peer)};
  absl::StatusOr<std::vector<std::string>> peer_reasons = PeersUnavailable(o.peers, peer_names);
  if (!peer_reasons.ok()) return peer_reasons.status();
  for (const std::string& name : wanted) {
    std::string why;
    if (IsPeerTransport(name)) {
      why = (*peer_reasons)[static_cast<std::size_t>(
          std::find(peer_names.begin(), peer_names.end(), name) - peer_names.begin())];
    } else if (absl::StatusOr<std::unique_ptr<Transport>> t = MakeTransport(name); absl::IsUnavailable(t.status())) {
      why = std::string(t.status().message());
    } else if (!t.ok()) {
      return t.status();
    }
    (why.empty() ? o.transports : o.unavailable).push_back(why.empty() ? name : why);
  }
  return absl::OkStatus();
}

absl::StatusOr<Options> ParseOptions() {
  Options o;
  std::string sizes = QuickOr(FLAGS_sizes, "sizes", std::string("64,65536"));
  if (absl::GetFlag(FLAGS_sweep)) sizes = "8,64,512,4096,65536,262144,1048576";
  for (const std::string& s : SplitList(sizes)) {
    std::size_t size = 0;
    if (!absl::SimpleAtoi(s, &size) || size < 8 || size > (std::size_t{64} << 20)) {
      return absl::InvalidArgumentError(absl::StrCat("--sizes: '", s, "' is not a size from 8 bytes to 64 MiB"));
    }
    o.sizes.push_back(size);
  }
  if (absl::Status s = ParseChoices("--mode", absl::GetFlag(FLAGS_mode), {"pingpong", "stream"}, o.modes); !s.ok()) {
    return s;
  }
  if (absl::Status s = ParseChoices("--wait", absl::GetFlag(FLAGS_wait), {"spin", "blocking"}, o.waits); !s.ok()) {
    return s;
  }
  if (o.modes.empty() || o.waits.empty() || o.sizes.empty()) {
    return absl::InvalidArgumentError("--mode, --wait and --sizes must each name at least one value");
  }
  if (absl::Status s = ParseTransports(o); !s.ok()) return s;

  o.load = {QuickOr(FLAGS_warmup_s, "warmup_s", 0.05), QuickOr(FLAGS_duration_s, "duration_s", 0.2),
            absl::GetFlag(FLAGS_messages)};
  o.floor_load = o.load;
  if (absl::GetFlag(FLAGS_floor_duration_s) > 0) o.floor_load.duration_s = absl::GetFlag(FLAGS_floor_duration_s);
  o.pair.timeout_s = absl::GetFlag(FLAGS_timeout_s);
  o.setup.warmup_s = o.load.warmup_s;
  o.setup.duration_s = o.load.duration_s;
  o.setup.messages = o.load.messages;
  o.setup.repetitions = absl::GetFlag(FLAGS_repetitions);
  o.setup.max_others = absl::GetFlag(FLAGS_max_others);
  o.setup.noisy_retries = std::max(0, absl::GetFlag(FLAGS_noisy_retries));
  if (o.load.warmup_s < 0 || o.load.duration_s <= 0 || o.load.messages < 0 || o.setup.repetitions < 1 ||
      o.pair.timeout_s < 1) {
    return absl::InvalidArgumentError(
        "--warmup_s must be >= 0; --duration_s, --repetitions and --timeout_s positive; --messages >= 0");
  }
  const std::string publish = absl::GetFlag(FLAGS_eshm_publish);
  const std::string eshm_wait = absl::GetFlag(FLAGS_eshm_wait);
  if (publish != "now" && publish != "deferred") return absl::InvalidArgumentError("--eshm_publish: now or deferred");
  if (eshm_wait != "sleep" && eshm_wait != "adaptive") {
    return absl::InvalidArgumentError("--eshm_wait: sleep or adaptive");
  }
  o.transport.eshm_deferred = publish == "deferred";
  o.transport.eshm_adaptive = eshm_wait == "adaptive";
  o.transport.zero_copy = absl::GetFlag(FLAGS_zero_copy);
  // Both change how a stream's sender hands messages over; a round trip's ping must be visible at once.
  const bool streams_only = o.modes.size() == 1 && o.modes[0] == Mode::kStream;
  for (const auto& [given, flag] : {std::pair{o.transport.zero_copy, "--zero_copy"},
                                    std::pair{o.transport.eshm_deferred, "--eshm_publish=deferred"}}) {
    if (given && !streams_only) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " measures streams: use it with --mode=stream"));
    }
  }
  o.transport.eshm_waitset = absl::GetFlag(FLAGS_eshm_waitset);
  if (o.transport.eshm_waitset < 0 || o.transport.eshm_waitset > 100'000) {
    return absl::InvalidArgumentError("--eshm_waitset: a channel count from 0 to 100000");
  }
  o.timestamp_every = absl::GetFlag(FLAGS_timestamp_every);
  if (o.timestamp_every < 0) return absl::InvalidArgumentError("--timestamp_every must be >= 0");
  const std::string clock = absl::GetFlag(FLAGS_clock);
  if (clock != "tsc" && clock != "monotonic") return absl::InvalidArgumentError("--clock: tsc or monotonic");
  if (absl::Status s = ParseCpus(o); !s.ok()) return s;
  o.json = absl::GetFlag(FLAGS_json);
  return o;
}

std::string CommandLine(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    constexpr char kPlain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,/:+@%";
    if (!arg.empty() && arg.find_first_not_of(kPlain) == std::string::npos) {
      args.push_back(arg);
    } else {
      args.push_back(absl::StrCat("'", absl::StrReplaceAll(arg, {{"'", "'\\''"}}), "'"));
    }
  }
  return absl::StrJoin(args, " ");
}

// A progress line on stderr during long runs: rewritten in place when stderr is a terminal, otherwise a plain
// line at most every 5 s (logs stay short). Never on stdout, which may carry the JSON.
class Progress {
 public:
  explicit Progress(int total_steps) : total_(total_steps) {}
  void Step(const std::string& what) {
    ++done_;
    const std::uint64_t now = Clock::MonotonicNs();
    const int elapsed_s = static_cast<int>((now - start_ns_) / 1'000'000'000);
    if (tty_) {
      std::fprintf(stderr, "\r\033[K[%d/%d %d:%02d] %s", done_, total_, elapsed_s / 60, elapsed_s % 60, what.c_str());
      line_shown_ = true;
    } else if (last_plain_ns_ == 0 || now - last_plain_ns_ >= 5'000'000'000) {
      std::fprintf(stderr, "eshm-bench: [%d/%d, %d s] %s\n", done_, total_, elapsed_s, what.c_str());
      last_plain_ns_ = now;
    }
    std::fflush(stderr);
  }
  void AddStep() { ++total_; }  // a repetition run again
  // A message (an error, say) on its own line; with `message` empty, only clears the progress line.
  void Note(const std::string& message) {
    if (tty_ && line_shown_) std::fprintf(stderr, "\r\033[K");
    if (!message.empty()) std::fprintf(stderr, "eshm-bench: %s\n", message.c_str());
    line_shown_ = false;
    std::fflush(stderr);
  }

 private:
  int total_;
  int done_ = 0;
  const bool tty_ = isatty(STDERR_FILENO) == 1;
  const std::uint64_t start_ns_ = Clock::MonotonicNs();
  std::uint64_t last_plain_ns_ = 0;
  bool line_shown_ = false;
};

// One repetition of one measurement, `measure`, run again (while `retries` last) when other processes took
// more than --max_others cores meanwhile. A failure is noted and reported; Unimplemented (the transport
// cannot run this combination) is said once among the unavailable.
template <typename T>
void Repetition(const Options& o, const std::string& what, int& retries, Progress& progress, Report& report,
                const std::function<absl::StatusOr<T>()>& measure, std::vector<T>& kept) {
  for (;;) {
    progress.Step(what);
    const CpuMeter meter;
    absl::StatusOr<T> r = measure();
    const double others = meter.OthersCores();
    if (r.ok() && others > o.setup.max_others && retries > 0) {
      --retries;
      progress.AddStep();
      progress.Note(absl::StrFormat("%s: other processes took %.2f cores; run again", what, others));
      continue;
    }
    if (r.ok()) {
      kept.push_back(*std::move(r));
    } else if (absl::IsUnimplemented(r.status())) {
      const std::string why(r.status().message());
      auto& unavailable = report.unavailable;
      if (std::find(unavailable.begin(), unavailable.end(), why) == unavailable.end()) unavailable.push_back(why);
    } else {
      const std::string failure = absl::StrCat(what, ": ", r.status().ToString());
      progress.Note(failure);
      report.failures.push_back(failure);
    }
    return;
  }
}

// Floors first, then every (size, mode, wait); within each, the repetitions alternate the transports, so
// slow drift in the machine touches all of them alike.
void Measure(const Options& o, Report& report) {
  const int reps = o.setup.repetitions;
  const auto has = [](const auto& list, auto v) { return std::find(list.begin(), list.end(), v) != list.end(); };
  const bool any_stream = has(o.modes, Mode::kStream);
  const bool spin_pingpong = has(o.modes, Mode::kPingPong) && has(o.waits, Wait::kSpin);
  // Floors: both ping-pongs always (they are short, and say what this pair of CPUs can do), the atomic one
  // also carrying each spin round trip's message where it fits in the line; memcpy at the sizes streams use.
  std::vector<std::pair<std::string, std::function<absl::StatusOr<Floor>()>>> floors;
  floors.emplace_back(kAtomicFloor, [&] { return MeasureAtomicPingPong(o.floor_load, o.pair); });
  for (const std::size_t size : o.sizes) {
    if (!spin_pingpong || size > kMaxAtomicPayload) continue;
    floors.emplace_back(absl::StrCat(kAtomicFloor, " ", FormatBytes(size)),
                        [&o, size] { return MeasureAtomicPingPong(o.floor_load, o.pair, size); });
  }
  floors.emplace_back(kFutexFloor, [&] { return MeasureFutexPingPong(o.floor_load, o.pair); });
  for (const std::size_t size : any_stream ? o.sizes : std::vector<std::size_t>{}) {
    floors.emplace_back(absl::StrCat(kMemcpyFloor, " ", FormatBytes(size)),
                        [&o, size] { return MeasureMemcpy(size, o.floor_load); });
  }
  Progress progress(static_cast<int>(floors.size() + o.sizes.size() * o.modes.size() * o.waits.size() *
                                                          o.transports.size()) * reps);
  for (const auto& [label, measure] : floors) {
    std::vector<Floor> kept;
    int retries = o.setup.noisy_retries;
    for (int rep = 1; rep <= reps; ++rep) {
      Repetition<Floor>(o, absl::StrFormat("floor %s, repetition %d/%d", label, rep, reps), retries, progress,
                        report, measure, kept);
    }
    if (!kept.empty()) report.floors.push_back(MedianFloor(kept));
  }

  for (const std::size_t size : o.sizes) {
    for (const Mode mode : o.modes) {
      for (const Wait wait : o.waits) {
        RunSpec spec{mode, size, o.transport, o.load, o.timestamp_every};
        spec.transport.wait = wait;
        std::vector<std::vector<Result>> kept(o.transports.size());
        std::vector<int> retries(o.transports.size(), o.setup.noisy_retries);
        for (int rep = 1; rep <= reps; ++rep) {
          for (std::size_t t = 0; t < o.transports.size(); ++t) {
            const std::string& name = o.transports[t];
            const auto run = [&]() -> absl::StatusOr<Result> {
              if (IsPeerTransport(name)) return RunPeerOnce(o.peers, name, spec, o.pair);
              absl::StatusOr<std::unique_ptr<Transport>> transport = MakeTransport(name);
              if (!transport.ok()) return transport.status();
              return RunOnce(**transport, spec, o.pair);
            };
            const std::string what = absl::StrFormat("%s %s %s %s, repetition %d/%d", name, ModeName(mode),
                                                     WaitName(wait), FormatBytes(size), rep, reps);
            Repetition<Result>(o, what, retries[t], progress, report, run, kept[t]);
          }
        }
        const std::size_t first = report.results.size();
        for (const std::vector<Result>& transport_reps : kept) {
          if (transport_reps.empty()) continue;
          report.results.push_back(MedianResult(transport_reps));
          AttachFloor(report.floors, report.results.back());
        }
        for (std::size_t b = first; b < report.results.size(); ++b) {
          if (report.results[b].transport != kBaselineTransport) continue;
          for (std::size_t k = first; k < report.results.size(); ++k) {
            AttachBaseline(report.results[b], report.results[k]);
          }
        }
      }
    }
  }
  progress.Note("");
}

int MainIdle() {
  std::vector<int> counts;
  for (const std::string& item : SplitList(absl::GetFlag(FLAGS_idle))) {
    int n = 0;
    if (!absl::SimpleAtoi(item, &n) || n < 1 || n > 100'000) {
      std::fprintf(stderr, "eshm-bench: --idle: '%s' is not a channel count from 1 to 100000\n", item.c_str());
      return 2;
    }
    counts.push_back(n);
  }
  if (!absl::GetFlag(FLAGS_json).empty()) {
    std::fprintf(stderr, "eshm-bench: --idle prints a table and writes no JSON: leave out --json\n");
    return 2;
  }
  const double window_s = absl::GetFlag(FLAGS_idle_s);
  if (window_s <= 0) {
    std::fprintf(stderr, "eshm-bench: --idle_s must be positive\n");
    return 2;
  }
  InstallSignalHandlers();
  const bool peers = absl::GetFlag(FLAGS_idle_peers);
  std::vector<IdleResult> results;
  for (const int n : counts) {
    absl::StatusOr<IdleResult> r = MeasureIdle(n, window_s, peers, absl::GetFlag(FLAGS_timeout_s));
    if (!r.ok()) std::fprintf(stderr, "eshm-bench: --idle %d: %s\n", n, r.status().ToString().c_str());
    if (r.ok()) results.push_back(*r);
  }
  PrintIdle(stdout, results, window_s, peers);
  return results.size() == counts.size() ? 0 : 1;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "eshm between two forked processes, with same-run floors and optional comparisons.\n"
      "  eshm-bench --quick | eshm-bench --sweep --compare=all --json=out.json");
  // --help lists the flags of the file that defines them: absl looks for one named after the program
  // (eshm-bench.cc), which this is not.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view path) { return absl::EndsWith(path, "eshm_bench/main.cc"); };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_idle).empty()) return MainIdle();
  absl::StatusOr<Options> options = ParseOptions();
  if (!options.ok()) {
    std::fprintf(stderr, "eshm-bench: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  std::FILE* human = options->json == "-" ? stderr : stdout;
  Clock::Calibrate(absl::GetFlag(FLAGS_clock) == "tsc");
  Report report;
  report.command = CommandLine(argc, argv);
  report.machine = ReadMachineInfo();
  report.setup = options->setup;
  report.setup.clock = Clock::uses_tsc() ? "TSC (invariant, the kernel's clock source too)" : "CLOCK_MONOTONIC";
  report.unavailable = options->unavailable;
  if (options->pair.pinned) {
    if (absl::Status s = PinSelf(options->pair.parent_cpu); !s.ok()) {
      std::fprintf(stderr, "eshm-bench: %s\n", s.ToString().c_str());
      return 2;
    }
  }
  InstallSignalHandlers();
  PrintHeader(human, report);
  std::fflush(human);
  Measure(*options, report);
  PrintFloors(human, report);
  PrintResults(human, report);
  std::fflush(human);
  if (options->json == "-") {
    std::fputs(ToJson(report).c_str(), stdout);
  } else if (!options->json.empty()) {
    std::ofstream out(options->json);
    out << ToJson(report);
    if (!out.good()) {
      std::fprintf(stderr, "eshm-bench: cannot write %s\n", options->json.c_str());
      return 1;
    }
    std::fprintf(human, "JSON written to %s\n", options->json.c_str());
  }
  return report.failures.empty() ? 0 : 1;
}

}  // namespace
}  // namespace eshm_bench

int main(int argc, char** argv) { return eshm_bench::Main(argc, argv); }
