#include "benchmarks/eshm_bench/peer_transports.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "benchmarks/eshm_bench/histogram.h"
#include "benchmarks/eshm_bench/timing.h"
#include "benchmarks/eshm_bench/transport.h"
#include "eshm/segment.h"

namespace eshm_bench {
namespace {

constexpr int kUnsupportedExit = 3;

std::vector<std::string> Command(const PeerPrograms& programs, const std::string& name) {
  if (absl::StartsWith(name, "node_")) return {programs.node, programs.node_peer};
  return {programs.python, "-m", "eshm.bench"};
}

// The last line of `out` that starts with `prefix`, without it; "" if none.
absl::string_view LastLine(absl::string_view out, absl::string_view prefix) {
  absl::string_view found;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (absl::StartsWith(line, prefix)) found = line;
  }
  return found;
}

std::string Tail(const std::string& text) {
  const std::string trimmed(absl::StripTrailingAsciiWhitespace(text));
  return trimmed.size() > 600 ? "..." + trimmed.substr(trimmed.size() - 600) : trimmed;
}

// Reads the round trips a pingpong peer wrote into `histogram`; how many there were.
absl::StatusOr<std::uint64_t> ReadSamples(const std::string& path, Histogram& histogram) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::DataLossError(absl::StrCat("the peer wrote no round trips to ", path));
  std::uint64_t ns = 0;
  while (in.read(reinterpret_cast<char*>(&ns), sizeof(ns))) histogram.Record(ns);
  return histogram.count();
}

}  // namespace

bool IsPeerTransport(const std::string& name) {
  return absl::StartsWith(name, "py_") || absl::StartsWith(name, "node_");
}

std::vector<std::string> PeerGroup(const std::string& group) {
  // eshm's binding beside the usual Python IPC.
  if (group == "python") {
    return {"py_eshm", "py_eshm_batch", "py_pipe", "py_queue", "py_faster_fifo", "py_zmq", "py_iceoryx2"};
  }
  if (group == "py_arrays") return {"py_eshm_array", "py_eshm_array_view", "py_shm_pipe_array", "py_zmq_array"};
  if (group == "py_asyncio") return {"py_eshm_read_async", "py_eshm_to_thread", "py_zmq_asyncio"};
  if (group == "bindings") return {"py_eshm", "py_eshm_batch", "py_ctypes", "node_eshm"};
  return {};
}

absl::StatusOr<std::vector<std::string>> PeersUnavailable(const PeerPrograms& programs,
                                                          const std::vector<std::string>& names) {
  // Each program asked (--peer-list) which of its transports can run here: name -> "ok" or why not.
  std::map<std::string, std::string> listed;
  std::map<std::string, std::string> failed;  // program (py_, node_) -> why it could not say
  std::map<std::string, std::string> asked;   // program -> its command
  for (const std::string& name : names) {
    const std::string program = absl::StartsWith(name, "node_") ? "node_" : "py_";
    if (asked.count(program) != 0) continue;
    std::vector<std::string> argv = Command(programs, name);
    argv.push_back("--peer-list");
    asked[program] = absl::StrJoin(argv, " ");
    absl::StatusOr<ProgramRun> run = RunProgram(argv, 60);
    if (!run.ok()) return run.status();
    if (run->exit_code != 0) {
      failed[program] = absl::StrCat(asked[program], " failed (", program == "py_" ? "is the eshm package importable? "
                                     "--python names the interpreter" : "run from the eshm checkout, or name them "
                                     "with --node and --node_peer", "): ", Tail(run->output));
    }
    for (absl::string_view line : absl::StrSplit(run->output, '\n', absl::SkipEmpty())) {
      const std::vector<std::string> fields = absl::StrSplit(line, '\t');
      if (fields.size() >= 2) listed[fields[0]] = fields[1];
    }
  }
  std::vector<std::string> reasons;
  for (const std::string& name : names) {
    const std::string program = absl::StartsWith(name, "node_") ? "node_" : "py_";
    if (failed.count(program) != 0) {
      reasons.push_back(absl::StrCat(name, ": ", failed[program]));
    } else if (listed.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("no transport ", name, " (", asked[program], " lists them)"));
    } else {
      reasons.push_back(listed[name] == "ok" ? "" : listed[name]);
    }
  }
  return reasons;
}

absl::StatusOr<Result> RunPeerOnce(const PeerPrograms& programs, const std::string& name, const RunSpec& spec,
                                   const PairConfig& pair) {
  if (spec.transport.zero_copy || spec.transport.eshm_deferred || spec.transport.eshm_waitset > 0) {
    return absl::UnimplementedError(
        absl::StrCat(name, " measures its own calls: no --zero_copy, --eshm_publish=deferred or --eshm_waitset"));
  }
  const bool pingpong = spec.mode == Mode::kPingPong;
  // The peer's channel has a name of this run, so that it can be removed here if the peer is stopped mid-run.
  const std::string channel = UniqueName();
  const std::string segment = eshm::Segment::PathFor(channel);
  const char* tmp = std::getenv("TMPDIR");
  const std::string samples =
      absl::StrCat(tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp", "/", UniqueName(), ".samples");
  std::vector<std::string> argv = Command(programs, name);
  argv.insert(argv.end(), {absl::StrCat("--peer=", name), absl::StrCat("--mode=", ModeName(spec.mode)),
                           absl::StrCat("--wait=", WaitName(spec.transport.wait)),
                           absl::StrCat("--size=", spec.size), absl::StrCat("--warmup_s=", spec.load.warmup_s),
                           absl::StrCat("--duration_s=", spec.load.duration_s),
                           absl::StrCat("--messages=", spec.load.messages),
                           absl::StrCat("--eshm_wait=", spec.transport.eshm_adaptive ? "adaptive" : "sleep"),
                           absl::StrCat("--samples=", samples), absl::StrCat("--name=", channel)});
  if (pair.pinned) argv.push_back(absl::StrCat("--cpus=", pair.parent_cpu, ",", pair.child_cpu));
  // Created here, never through a link someone planted: the peer then writes into this file.
  const int fd = open(samples.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError(absl::StrCat("creating ", samples));
  close(fd);
  const int slots[] = {RegisterCleanupPath(samples), RegisterCleanupPath(segment)};
  const CpuMeter meter;
  absl::StatusOr<ProgramRun> run = RunProgram(argv, pair.timeout_s);
  const double others_cores = meter.OthersCores();
  auto latency = std::make_unique<Histogram>();
  absl::StatusOr<std::uint64_t> round_trips = pingpong ? ReadSamples(samples, *latency) : std::uint64_t{0};
  for (const std::string& path : {samples, segment}) std::remove(path.c_str());  // the segment: if stopped
  for (const int slot : slots) UnregisterCleanupPath(slot);
  if (!run.ok()) return run.status();
  if (run->exit_code == kUnsupportedExit) return absl::UnimplementedError(Tail(run->output));
  const absl::string_view line = LastLine(run->output, "messages=");
  std::uint64_t messages = 0;
  double seconds = 0;
  const std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
  if (run->exit_code != 0 || fields.size() != 2 || !absl::SimpleAtoi(absl::StripPrefix(fields[0], "messages="),
                                                                     &messages) ||
      !absl::SimpleAtod(absl::StripPrefix(fields[1], "seconds="), &seconds)) {
    return absl::InternalError(absl::StrCat(name, " exited with ", run->exit_code, " and no result line: ",
                                            Tail(run->output)));
  }
  if (!round_trips.ok()) return round_trips.status();
  if (pingpong && *round_trips != messages) {
    return absl::DataLossError(absl::StrCat(name, " reported ", messages, " round trips and wrote ", *round_trips));
  }
  return MakeResult(name, spec.mode, spec.transport.wait, spec.size, messages, messages, seconds, *latency,
                    others_cores);
}

}  // namespace eshm_bench
