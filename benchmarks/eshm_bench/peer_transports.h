// Transports measured by another program: eshm's Python binding and the usual Python IPC (py_*, run by
// `python -m eshm.bench --peer=NAME`, python/eshm/bench.py) and the Node.js package (node_eshm, run by
// node_peer.js). Their loops are written in their own language, so the program runs both processes of a
// run itself; eshm-bench schedules it like any transport (repetitions interleaved, medians, floors, the
// tables and the JSON) and turns what it reports into a Result.
//
// The protocol, for each run: PROGRAM --peer=NAME --mode=stream|pingpong --wait=spin|blocking --size=BYTES
// --warmup_s=S --duration_s=S --messages=N --eshm_wait=sleep|adaptive [--cpus=A,B] --samples=PATH --name=NAME.
// NAME names its channels and files (eshm-bench removes the eshm segment NAME itself if the run is stopped);
// SIGTERM asks it to remove what it created and exit. The last line on its stdout is `messages=N seconds=S`
// (stream: messages the reader counted over its own time, equal to what the writer sent; pingpong: round
// trips, whose nanoseconds it wrote to PATH as native unsigned 64-bit integers). Exit status 3: the transport
// cannot run this combination (stderr says why).
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_PEER_TRANSPORTS_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_PEER_TRANSPORTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "benchmarks/eshm_bench/process_pair.h"
#include "benchmarks/eshm_bench/results.h"
#include "benchmarks/eshm_bench/runner.h"

namespace eshm_bench {

struct PeerPrograms {
  std::string python = "python3";  // an interpreter that imports eshm
  std::string node = "node";
  std::string node_peer = "benchmarks/eshm_bench/node_peer.js";
};

bool IsPeerTransport(const std::string& name);

// The transports a --compare group stands for (python, py_arrays, py_asyncio, bindings); empty when
// `group` is not one.
std::vector<std::string> PeerGroup(const std::string& group);

// For each of `names`: "" when it can run here, else why not, as its program's --peer-list says (one line per
// transport: name, a tab, "ok" or why not, a tab, what it measures). An error when a program cannot be started.
absl::StatusOr<std::vector<std::string>> PeersUnavailable(const PeerPrograms& programs,
                                                          const std::vector<std::string>& names);

// One run through the peer's program; Unimplemented when the transport cannot run `spec`.
absl::StatusOr<Result> RunPeerOnce(const PeerPrograms& programs, const std::string& name, const RunSpec& spec,
                                   const PairConfig& pair);

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_PEER_TRANSPORTS_H_
