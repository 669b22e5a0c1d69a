#!/usr/bin/env bash
# The universal bridge in one command: a Python producer writes JSON readings at a fixed rate to two eshm
# channels; a Node.js consumer logs them from the first, a C++ reader processes them from the second.
# At the end it checks that all three sides saw the same readings, in the same order.
#
# Usage: examples/universal_bridge/run.sh [--seconds N] [--rate-hz R] [--name BASE]
#   Channels: BASE_node and BASE_cpp (default BASE: bridge_<pid>). Exits 0 if every side finished and
#   saw the same readings.
# Needs bazel, node (with npm ci done in node/, or the npm registry reachable) and python3 with the eshm
# package; without the package, it is built into a temporary virtual environment (offline, as
# tests/interop/run.sh does). PYTHON selects the interpreter (default python3).
set -uo pipefail

seconds=3
rate_hz=10
base="bridge_$$"
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --rate-hz) rate_hz=$2; shift 2 ;;
    --name) base=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--rate-hz R] [--name BASE]" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
PYTHON=${PYTHON:-python3}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eshm_bridge.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -f "/dev/shm/eshm_${base}_node" "/dev/shm/eshm_${base}_cpp"
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "=== bridge: building the C++ reader and libeshm.so ==="
cd "$repo" || exit 2
if ! bazel build //examples/universal_bridge:reader //eshm:libeshm.so >"$tmp/bazel.log" 2>&1; then
  cat "$tmp/bazel.log" >&2
  exit 2
fi
bin=$(bazel info bazel-bin 2>/dev/null) || exit 2
cp "$bin/examples/universal_bridge/reader" "$bin/eshm/libeshm.so" "$tmp/" || exit 2
export ESHM_LIBESHM="$tmp/libeshm.so"

if [[ ! -d "$repo/node/node_modules/koffi" ]]; then
  echo "=== bridge: npm ci in node/ ==="
  (cd "$repo/node" && npm ci --no-audit --no-fund) >"$tmp/npm.log" 2>&1 || { cat "$tmp/npm.log" >&2; exit 2; }
fi

py=$PYTHON
if ! (cd "$tmp" && "$py" -c 'import eshm; eshm.ESHM') 2>/dev/null; then
  echo "=== bridge: building the Python package into a temporary venv ==="
  "$PYTHON" -m venv --system-site-packages "$tmp/venv" || exit 2
  py="$tmp/venv/bin/python"
  mkdir -p "$tmp/src"
  tar -cf - --exclude=build --exclude='*.egg-info' --exclude='*.so' --exclude='_eshm.cpp' \
    --exclude=__pycache__ python | tar -xf - -C "$tmp/src" || exit 2
  if ! ESHM_SOURCE_ROOT="$repo" "$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
    --no-index --no-deps "$tmp/src/python" >"$tmp/pip.log" 2>&1; then
    cat "$tmp/pip.log" >&2
    exit 2
  fi
fi

echo "=== bridge: ${seconds} s at ${rate_hz} readings/s: Python -> ${base}_node -> Node.js, Python -> ${base}_cpp -> C++ ==="
# Consumers first (as slaves they wait for the channel); the producer waits until both are attached.
total_timeout=$(( ${seconds%.*} + 120 ))
node "$here/consumer.js" "${base}_node" "$total_timeout" > >(tee "$tmp/node.log") 2>&1 &
node_pid=$!
pids+=("$node_pid")
"$tmp/reader" "${base}_cpp" "$total_timeout" > >(tee "$tmp/cpp.log") 2>&1 &
cpp_pid=$!
pids+=("$cpp_pid")
# Every side writes each line with one write() (<= PIPE_BUF: atomic), so the sides' lines never mix on
# stdout. Python's print(..., flush=True) does that only when stdout is buffered: no PYTHONUNBUFFERED.
(cd "$tmp" && env -u PYTHONUNBUFFERED "$py" "$here/producer.py" "${base}_node" "${base}_cpp" \
  --seconds "$seconds" --rate-hz "$rate_hz") > >(tee "$tmp/python.log") 2>&1
py_rc=$?
wait "$node_pid"
node_rc=$?
wait "$cpp_pid"
cpp_rc=$?
pids=()
sleep 0.2  # let tee flush the last lines

sed -n 's/^\[python\] sent //p' "$tmp/python.log" >"$tmp/python.readings"
sed -n 's/^\[node\] got //p' "$tmp/node.log" >"$tmp/node.readings"
sed -n 's/^\[c++\] got //p' "$tmp/cpp.log" >"$tmp/cpp.readings"
n=$(wc -l <"$tmp/python.readings")
echo "=== bridge: exit codes python=$py_rc node=$node_rc c++=$cpp_rc; readings python=$n" \
  "node=$(wc -l <"$tmp/node.readings") c++=$(wc -l <"$tmp/cpp.readings") ==="
if [[ $py_rc -ne 0 || $node_rc -ne 0 || $cpp_rc -ne 0 || $n -eq 0 ]] ||
  ! cmp -s "$tmp/python.readings" "$tmp/node.readings" || ! cmp -s "$tmp/python.readings" "$tmp/cpp.readings"; then
  echo "BRIDGE FAILED: the three sides did not all finish with the same readings"
  exit 1
fi
echo "BRIDGE OK: Python, Node.js and C++ saw the same $n readings"
