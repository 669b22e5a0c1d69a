#!/usr/bin/env bash
# Sets up the machine, builds eshm optimized and runs the main job:
#  1. a real master/slave pair (two eshm_demo processes) exchanging messages over a channel;
#  2. the cross-process benchmark (eshm-bench --quick): round trips and streams of eshm's Channel, its ring
#     alone and the minimal baseline ring, beside the hardware floors measured in the same run.
# Extra arguments go to the benchmark (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bazel build --config=bench //tools:eshm_demo //benchmarks:eshm-bench
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
echo "=== eshm-bench --quick --compare=rings: two pinned processes, eshm against the same run's floors and baseline ring ==="
exec "$out/benchmarks/eshm_bench/eshm-bench" --quick --compare=rings "$@"
