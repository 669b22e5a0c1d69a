#!/usr/bin/env bash
# Sets up the machine, builds eshm optimized and runs the main job:
#  1. a real master/slave pair (two eshm_demo processes) exchanging messages over a channel;
#  2. the cross-process benchmark: throughput and round-trip latency beside the hardware floor measured
#     in the same run.
# Extra arguments go to the benchmark (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bazel build --config=bench //tools:eshm_demo //benchmarks:ipc_benchmark
out=$(bazel info --config=bench bazel-bin)

name="readme_demo_$$"
echo "=== eshm_demo: master and slave on channel '$name' (10 messages each way) ==="
"$out/tools/eshm_demo" master "$name" --count=10 --rate_hz=20 &
master=$!
trap 'kill "$master" 2>/dev/null || true' EXIT
"$out/tools/eshm_demo" slave "$name" --count=10
wait "$master"
trap - EXIT

echo
echo "=== ipc_benchmark --quick: two pinned processes, eshm against the same run's hardware floor ==="
exec "$out/benchmarks/ipc_benchmark" --quick "$@"
