// One run of one transport between two forked processes: a round-trip ping-pong or a one-way stream at one
// message size, recorded into a Histogram.
//
// Every message carries what lets the receiver check it (stream: the send timestamp at offset 0, and from
// 16 bytes on the sequence number at offset 8 and, from 24 bytes, again in its last 8 bytes; pingpong: the
// sequence number at offset 0 and in the last 8 bytes), so a transport cannot skip, reorder, truncate or
// tear messages unnoticed. Payloads are copied in and out on both sides for every transport.
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_RUNNER_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_RUNNER_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "benchmarks/eshm_bench/timing.h"
#include "benchmarks/eshm_bench/process_pair.h"
#include "benchmarks/eshm_bench/results.h"
#include "benchmarks/eshm_bench/transport.h"

namespace eshm_bench {

struct RunSpec {
  Mode mode = Mode::kPingPong;
  std::size_t size = 64;
  TransportSpec transport;
  LoadSpec load;
  // Streams: the sender timestamps every Nth message (the others carry 0) and the receiver reads its clock
  // for those only, so two clock reads per message do not become the cost of small messages. 0 = every
  // message from 1 KiB on, every 16th below.
  int timestamp_every = 0;
};

// The sampling interval a stream of `spec` uses.
int TimestampEvery(const RunSpec& spec);

// Prepares `transport`, forks, measures, cleans up. The result has no floor yet.
absl::StatusOr<Result> RunOnce(Transport& transport, const RunSpec& spec, const PairConfig& pair);

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_RUNNER_H_
