#!/usr/bin/env bash
# Sets up the machine, builds eshm optimized and runs the main job: a live exchange between two processes
# over the shared-memory rings, printing throughput and round-trip latency beside the hardware floor
# measured in the same run. Extra arguments go to the benchmark (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bazel build --config=bench //benchmarks:ipc_benchmark
exec bazel-bin/benchmarks/ipc_benchmark --quick "$@"
