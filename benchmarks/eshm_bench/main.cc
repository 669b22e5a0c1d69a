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
#include "absl/strings/str_split.h"
#include "benchmarks/eshm_bench/clock.h"
#include "benchmarks/eshm_bench/cpu_meter.h"
#include "benchmarks/eshm_bench/floors.h"
#include "benchmarks/eshm_bench/idle.h"
#include "benchmarks/eshm_bench/machine_info.h"
#include "benchmarks/eshm_bench/peer_transports.h"
#include "benchmarks/eshm_bench/process_pair.h"
#include "benchmarks/eshm_bench/progress.h"
#include "benchmarks/eshm_bench/report.h"
#include "benchmarks/eshm_bench/results.h"
#include "benchmarks/eshm_bench/runner.h"
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
          "eshm streams: now (every message visible at once) or deferred (batched publication, Flush at the end)");
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
  int repetitions = 3;
  PairConfig pair;
  Setup setup;
  std::string json;
  bool eshm_deferred = false;
  bool eshm_adaptive = false;
  bool zero_copy = false;
  int eshm_waitset = 0;
  int timestamp_every = 0;
  double max_others = 0.25;
  int noisy_retries = 0;
  PeerPrograms peers;
};

// --quick lowers a setting unless it was given on the command line.
template <typename T>
T QuickOr(const absl::Flag<T>& flag, const char* name, T quick_value) {
  const absl::CommandLineFlag* reflected = absl::FindCommandLineFlag(name);
  const bool given = reflected != nullptr && reflected->CurrentValue() != reflected->DefaultValue();
  return absl::GetFlag(FLAGS_quick) && !given ? quick_value : absl::GetFlag(flag);
}

std::string ExecutablePath() {
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  return n > 0 ? std::string(path, static_cast<std::size_t>(n)) : std::string();
}

std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipWhitespace())) items.emplace_back(item);
  return items;
}

absl::Status ParseCpus(Options& o) {
  const std::vector<int> allowed = AllowedCpus();
  o.setup.pinned = false;
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
    o.setup.pinned = true;
    o.setup.cpus = std::make_pair(a, b);
  } else if (allowed.size() >= 2) {
    o.setup.pinned = true;
    o.setup.cpus = std::make_pair(allowed[0], allowed[1]);
  } else {
    o.setup.note = "only one CPU is available: both processes share it and spin loops yield; spin figures mean little";
  }
  o.pair.pinned = o.setup.pinned;
  if (o.setup.pinned) {
    o.pair.parent_cpu = o.setup.cpus->first;
    o.pair.child_cpu = o.setup.cpus->second;
  }
  o.pair.spin_yield = allowed.size() < 2;
  return absl::OkStatus();
}

absl::StatusOr<Options> ParseOptions() {
  Options o;
  const std::string mode = absl::GetFlag(FLAGS_mode);
  for (const std::string& m : SplitList(mode == "both" ? "pingpong,stream" : mode)) {
    if (m == "pingpong") {
      o.modes.push_back(Mode::kPingPong);
    } else if (m == "stream") {
      o.modes.push_back(Mode::kStream);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--mode: unknown '", m, "' (pingpong, stream)"));
    }
  }
  const std::string wait = absl::GetFlag(FLAGS_wait);
  for (const std::string& w : SplitList(wait == "both" ? "spin,blocking" : wait)) {
    if (w == "spin") {
      o.waits.push_back(Wait::kSpin);
    } else if (w == "blocking") {
      o.waits.push_back(Wait::kBlocking);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--wait: unknown '", w, "' (spin, blocking)"));
    }
  }
  std::string sizes = QuickOr(FLAGS_sizes, "sizes", std::string("64,65536"));
  if (absl::GetFlag(FLAGS_sweep)) sizes = "8,64,512,4096,65536,262144,1048576";
  for (const std::string& s : SplitList(sizes)) {
    std::size_t size = 0;
    if (!absl::SimpleAtoi(s, &size) || size < 8 || size > (std::size_t{64} << 20)) {
      return absl::InvalidArgumentError(absl::StrCat("--sizes: '", s, "' is not a size from 8 bytes to 64 MiB"));
    }
    o.sizes.push_back(size);
  }
  if (o.modes.empty() || o.waits.empty() || o.sizes.empty()) {
    return absl::InvalidArgumentError("--mode, --wait and --sizes must each name at least one value");
  }

  o.transports.push_back("eshm");
  const std::string compare = absl::GetFlag(FLAGS_compare);
  std::vector<std::string> wanted;
  for (const std::string& name : SplitList(compare)) {
    const std::vector<std::string> peers = PeerGroup(name);
    if (name == "net") {
      const std::vector<std::string> net = NetworkTransportNames();
      wanted.insert(wanted.end(), net.begin(), net.end());
    } else if (name == "all" || name == "rings") {
      wanted.insert(wanted.end(), {"eshm_ring", "minimal_ring"});
      if (name == "all") wanted.insert(wanted.end(), {"pipe", "unix"});
    } else if (!peers.empty()) {
      wanted.insert(wanted.end(), peers.begin(), peers.end());
    } else {
      wanted.push_back(name);
    }
  }
  // The peers' C ABI (py_ctypes, node_eshm): the libeshm.so built with this binary, unless one is named.
  const std::string libeshm = absl::StrCat(ExecutablePath(), ".runfiles/eshm/eshm/libeshm.so");
  if (std::getenv("ESHM_LIBESHM") == nullptr && access(libeshm.c_str(), R_OK) == 0) {
    setenv("ESHM_LIBESHM", libeshm.c_str(), 0);
  }
  o.peers.python = absl::GetFlag(FLAGS_python);
  o.peers.node = absl::GetFlag(FLAGS_node);
  o.peers.node_peer = absl::GetFlag(FLAGS_node_peer);
  std::vector<std::string> peer_names;
  for (const std::string& name : wanted) {
    if (IsPeerTransport(name)) peer_names.push_back(name);
  }
  absl::StatusOr<std::vector<std::string>> peers_unavailable = PeersUnavailable(o.peers, peer_names);
  if (!peers_unavailable.ok()) return peers_unavailable.status();
  for (const std::string& name : wanted) {
    if (name == "eshm" || std::find(o.transports.begin(), o.transports.end(), name) != o.transports.end()) continue;
    if (IsPeerTransport(name)) {
      const std::string& why = (*peers_unavailable)[static_cast<std::size_t>(
          std::find(peer_names.begin(), peer_names.end(), name) - peer_names.begin())];
      if (why.empty()) {
        o.transports.push_back(name);
      } else {
        o.unavailable.push_back(why);
      }
      continue;
    }
    absl::StatusOr<std::unique_ptr<Transport>> t = MakeTransport(name);
    if (absl::IsUnavailable(t.status())) {
      o.unavailable.push_back(std::string(t.status().message()));
      continue;
    }
    if (!t.ok()) return t.status();
    o.transports.push_back(name);
  }

  o.load.warmup_s = QuickOr(FLAGS_warmup_s, "warmup_s", 0.05);
  o.load.duration_s = QuickOr(FLAGS_duration_s, "duration_s", 0.2);
  o.load.messages = absl::GetFlag(FLAGS_messages);
  o.repetitions = absl::GetFlag(FLAGS_repetitions);
  o.floor_load = o.load;
  if (absl::GetFlag(FLAGS_floor_duration_s) > 0) o.floor_load.duration_s = absl::GetFlag(FLAGS_floor_duration_s);
  o.pair.timeout_s = absl::GetFlag(FLAGS_timeout_s);
  o.max_others = absl::GetFlag(FLAGS_max_others);
  o.noisy_retries = std::max(0, absl::GetFlag(FLAGS_noisy_retries));
  if (o.load.warmup_s < 0 || o.load.duration_s <= 0 || o.load.messages < 0 || o.repetitions < 1 ||
      o.pair.timeout_s < 1) {
    return absl::InvalidArgumentError(
        "--warmup_s must be >= 0; --duration_s, --repetitions and --timeout_s positive; --messages >= 0");
  }
  const std::string publish = absl::GetFlag(FLAGS_eshm_publish);
  if (publish != "now" && publish != "deferred") {
    return absl::InvalidArgumentError("--eshm_publish: now or deferred");
  }
  o.eshm_deferred = publish == "deferred";
  const std::string eshm_wait = absl::GetFlag(FLAGS_eshm_wait);
  if (eshm_wait != "sleep" && eshm_wait != "adaptive") {
    return absl::InvalidArgumentError("--eshm_wait: sleep or adaptive");
  }
  o.eshm_adaptive = eshm_wait == "adaptive";
  o.zero_copy = absl::GetFlag(FLAGS_zero_copy);
  if (o.zero_copy && (o.modes.size() != 1 || o.modes[0] != Mode::kStream)) {
    return absl::InvalidArgumentError("--zero_copy measures streams: use it with --mode=stream");
  }
  o.eshm_waitset = absl::GetFlag(FLAGS_eshm_waitset);
  if (o.eshm_waitset < 0 || o.eshm_waitset > 100'000) {
    return absl::InvalidArgumentError("--eshm_waitset: a channel count from 0 to 100000");
  }
  o.timestamp_every = absl::GetFlag(FLAGS_timestamp_every);
  if (o.timestamp_every < 0) return absl::InvalidArgumentError("--timestamp_every must be >= 0");
  const std::string clock = absl::GetFlag(FLAGS_clock);
  if (clock != "tsc" && clock != "monotonic") return absl::InvalidArgumentError("--clock: tsc or monotonic");
  if (absl::Status s = ParseCpus(o); !s.ok()) return s;
  o.json = absl::GetFlag(FLAGS_json);
  o.setup.warmup_s = o.load.warmup_s;
  o.setup.duration_s = o.load.duration_s;
  o.setup.messages = o.load.messages;
  o.setup.repetitions = o.repetitions;
  o.setup.max_others = o.max_others;
  o.setup.noisy_retries = o.noisy_retries;
  return o;
}

std::string ShellQuote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,/:+@%") ==
                          std::string::npos) {
    return arg;
  }
  std::string quoted = "'";
  for (const char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string CommandLine(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) args.push_back(ShellQuote(argv[i]));
  return absl::StrJoin(args, " ");
}

std::string Describe(const std::string& transport, Mode mode, Wait wait, std::size_t size, int rep, int reps) {
  return absl::StrFormat("%s %s %s %s, repetition %d/%d", transport, ModeName(mode), WaitName(wait),
                         FormatBytes(size), rep, reps);
}

// Floors first, then every (size, mode, wait); within each, the repetitions alternate the transports, so
// slow drift in the machine touches all of them alike.
void Measure(const Options& o, Report& report) {
  const bool any_stream = std::find(o.modes.begin(), o.modes.end(), Mode::kStream) != o.modes.end();
  const bool spin_pingpong = std::find(o.modes.begin(), o.modes.end(), Mode::kPingPong) != o.modes.end() &&
                             std::find(o.waits.begin(), o.waits.end(), Wait::kSpin) != o.waits.end();
  const auto carried = [](std::size_t s) { return s <= kMaxAtomicPayload; };
  const int payload_floors =
      spin_pingpong ? static_cast<int>(std::count_if(o.sizes.begin(), o.sizes.end(), carried)) : 0;
  const int floor_steps = (2 + payload_floors) * o.repetitions +
                          (any_stream ? static_cast<int>(o.sizes.size()) * o.repetitions : 0);
  const int run_steps = static_cast<int>(o.sizes.size() * o.modes.size() * o.waits.size() * o.transports.size()) *
                        o.repetitions;
  Progress progress(floor_steps + run_steps);

  // Floors. Both ping-pongs always (they are short, and say what this pair of CPUs can do); memcpy at the
  // sizes streams use.
  using FloorFn = std::function<absl::StatusOr<Floor>()>;
  const auto floor = [&](const std::string& label, const FloorFn& measure) {
    std::vector<Floor> reps;
    int retries = o.noisy_retries;
    for (int rep = 1; rep <= o.repetitions; ++rep) {
      progress.Step(absl::StrFormat("floor %s, repetition %d/%d", label, rep, o.repetitions));
      const CpuMeter meter;
      absl::StatusOr<Floor> f = measure();
      const double others = meter.OthersCores();
      if (f.ok() && others > o.max_others && retries > 0) {
        --retries;
        --rep;
        progress.AddStep();
        progress.Note(absl::StrFormat("floor %s: others took %.2f cores; run again", label, others));
        continue;
      }
      if (f.ok()) {
        reps.push_back(*std::move(f));
      } else {
        const std::string failure = absl::StrCat("floor ", label, ": ", f.status().ToString());
        progress.Note(failure);
        report.failures.push_back(failure);
      }
    }
    if (!reps.empty()) report.floors.push_back(MedianFloor(reps));
  };
  floor(kAtomicFloor, [&] { return MeasureAtomicPingPong(o.floor_load, o.pair); });
  // The atomic ping-pong carrying each spin round trip's message, where it fits in the line.
  for (const std::size_t size : o.sizes) {
    if (!spin_pingpong || size > kMaxAtomicPayload) continue;
    floor(absl::StrCat(kAtomicFloor, " ", FormatBytes(size)),
          [&] { return MeasureAtomicPingPong(o.floor_load, o.pair, size); });
  }
  floor(kFutexFloor, [&] { return MeasureFutexPingPong(o.floor_load, o.pair); });
  if (any_stream) {
    for (const std::size_t size : o.sizes) {
      floor(absl::StrCat(kMemcpyFloor, " ", FormatBytes(size)), [&] { return MeasureMemcpy(size, o.floor_load); });
    }
  }

  for (const std::size_t size : o.sizes) {
    for (const Mode mode : o.modes) {
      for (const Wait wait : o.waits) {
        std::vector<std::vector<Result>> reps(o.transports.size());
        std::vector<int> retries(o.transports.size(), o.noisy_retries);
        for (int rep = 1; rep <= o.repetitions; ++rep) {
          for (std::size_t t = 0; t < o.transports.size(); ++t) {
            const std::string& name = o.transports[t];
            absl::StatusOr<Result> r = absl::InternalError("not run");
            // A repetition disturbed by other processes is run again while this measurement has retries.
            for (bool retry = true; retry;) {
              progress.Step(Describe(name, mode, wait, size, rep, o.repetitions));
              RunSpec spec;
              spec.mode = mode;
              spec.size = size;
              spec.transport.wait = wait;
              spec.transport.eshm_deferred = o.eshm_deferred;
              spec.transport.eshm_adaptive = o.eshm_adaptive;
              spec.transport.zero_copy = o.zero_copy;
              spec.transport.eshm_waitset = o.eshm_waitset;
              spec.load = o.load;
              spec.timestamp_every = o.timestamp_every;
              if (IsPeerTransport(name)) {
                r = RunPeerOnce(o.peers, name, spec, o.pair);
              } else {
                absl::StatusOr<std::unique_ptr<Transport>> transport = MakeTransport(name);
                r = transport.ok() ? RunOnce(**transport, spec, o.pair) : absl::StatusOr<Result>(transport.status());
              }
              retry = r.ok() && r->others_cores > o.max_others && retries[t] > 0;
              if (retry) {
                --retries[t];
                progress.AddStep();
                progress.Note(absl::StrFormat("%s: other processes took %.2f cores; run again",
                                              Describe(name, mode, wait, size, rep, o.repetitions), r->others_cores));
              }
            }
            if (absl::IsUnimplemented(r.status())) {
              // This transport cannot run this combination: said once, not a failure.
              const std::string why(r.status().message());
              if (std::find(report.unavailable.begin(), report.unavailable.end(), why) == report.unavailable.end()) {
                report.unavailable.push_back(why);
              }
            } else if (r.ok()) {
              reps[t].push_back(*std::move(r));
            } else {
              const std::string failure =
                  absl::StrCat(Describe(name, mode, wait, size, rep, o.repetitions), ": ", r.status().ToString());
              progress.Note(failure);
              report.failures.push_back(failure);
            }
          }
        }
        const std::size_t first = report.results.size();
        for (const std::vector<Result>& transport_reps : reps) {
          if (transport_reps.empty()) continue;
          Result median = MedianResult(transport_reps);
          AttachFloor(report.floors, median);
          report.results.push_back(std::move(median));
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
  progress.Done();
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
  const double window_s = absl::GetFlag(FLAGS_idle_s);
  if (window_s <= 0) {
    std::fprintf(stderr, "eshm-bench: --idle_s must be positive\n");
    return 2;
  }
  InstallSignalHandlers();
  std::vector<IdleResult> results;
  int failed = 0;
  for (const int n : counts) {
    absl::StatusOr<IdleResult> r =
        MeasureIdle(n, window_s, absl::GetFlag(FLAGS_idle_peers), absl::GetFlag(FLAGS_timeout_s));
    if (r.ok()) {
      results.push_back(*r);
    } else {
      std::fprintf(stderr, "eshm-bench: --idle %d: %s\n", n, r.status().ToString().c_str());
      ++failed;
    }
  }
  PrintIdle(stdout, results, window_s, absl::GetFlag(FLAGS_idle_peers));
  return failed == 0 ? 0 : 1;
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
  const bool json_to_stdout = options->json == "-";
  std::FILE* human = json_to_stdout ? stderr : stdout;

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
  if (!options->json.empty()) {
    const std::string json = ToJson(report);
    if (json_to_stdout) {
      std::fwrite(json.data(), 1, json.size(), stdout);
    } else {
      std::ofstream out(options->json);
      out << json;
      if (!out.good()) {
        std::fprintf(stderr, "eshm-bench: cannot write %s\n", options->json.c_str());
        return 1;
      }
      std::fprintf(human, "JSON written to %s\n", options->json.c_str());
    }
  }
  return report.failures.empty() ? 0 : 1;
}

}  // namespace
}  // namespace eshm_bench

int main(int argc, char** argv) { return eshm_bench::Main(argc, argv); }
