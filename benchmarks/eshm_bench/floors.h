// The floors every eshm figure is compared with, measured in the same run between the same two pinned
// CPUs (memcpy: on the parent's CPU):
//
//   atomic_pingpong  the parent stores i (release) into a line, the child spins (acquire) until it sees i
//                    and stores i into another line; a new pair of 128-byte lines every round trip, cycling
//                    through 1 MiB as a ring's records do. The floor of a spin round trip. With a size (up
//                    to kMaxAtomicPayload bytes): each side also copies that many bytes into its line before
//                    the store and out of the other's after the load, the floor of a round trip carrying
//                    a message of that size.
//   futex_pingpong   the same with two 32-bit words and shared (not PRIVATE) FUTEX_WAIT/FUTEX_WAKE: each
//                    side sleeps until woken. The floor of a blocking round trip.
//   memcpy           one core copying `size`-byte messages from a private buffer into successive slots of a
//                    4 MiB shared mapping (or 4 messages, if larger), as a sender fills a ring. The floor of
//                    streaming bandwidth at that size (a transport copies at least once each way).
#ifndef ESHM_BENCHMARKS_ESHM_BENCH_FLOORS_H_
#define ESHM_BENCHMARKS_ESHM_BENCH_FLOORS_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "benchmarks/eshm_bench/timing.h"
#include "benchmarks/eshm_bench/process_pair.h"
#include "benchmarks/eshm_bench/results.h"

namespace eshm_bench {

inline constexpr std::size_t kMaxAtomicPayload = 120;  // a 128-byte line after its 8-byte word
absl::StatusOr<Floor> MeasureAtomicPingPong(const LoadSpec& load, const PairConfig& pair, std::size_t payload = 0);
absl::StatusOr<Floor> MeasureFutexPingPong(const LoadSpec& load, const PairConfig& pair);
// Runs in the calling (parent, pinned) process.
absl::StatusOr<Floor> MeasureMemcpy(std::size_t size, const LoadSpec& load);

}  // namespace eshm_bench

#endif  // ESHM_BENCHMARKS_ESHM_BENCH_FLOORS_H_
