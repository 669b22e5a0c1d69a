#!/usr/bin/env bash
# The classic ESHM interop check: the C++ demo and the Python examples talk over one channel, both ways.
#
#   Test 1: C++ master (eshm_demo master NAME) + Python slave (python/examples/simple_slave.py NAME)
#   Test 2: Python master (python/examples/simple_master.py NAME) + C++ slave (eshm_demo slave NAME)
#
# Each prints PASS or FAIL (with both outputs on failure). Exits 0 if both pass, 1 otherwise, 2 on bad usage.
#
# Usage: ESHM_DEMO=path/to/eshm_demo [PYTHON=python3] tests/interop/test_interop.sh
# PYTHON must be able to `import eshm` (the installed package). COUNT messages per test (default 5).
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
examples="$repo/python/examples"
demo=${ESHM_DEMO:-}
python=${PYTHON:-python3}
count=${COUNT:-5}
limit=${ESHM_INTEROP_TIMEOUT_S:-60}  # per process; generous for a loaded machine

if [[ -z "$demo" || ! -x "$demo" ]]; then
  echo "test_interop.sh: set ESHM_DEMO to the eshm_demo binary (bazel build //tools:eshm_demo)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/eshm_interop_sh.XXXXXX")
names=()
pids=()
cleanup() {
  local pid name
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  for name in "${names[@]}"; do rm -f "/dev/shm/eshm_$name"; done
  rm -rf "$work"
}
trap cleanup EXIT

failures=0

# expect FILE LINE...: every LINE (a fixed string) appears in FILE.
expect() {
  local file=$1 line
  shift
  for line in "$@"; do
    if ! grep -qF -- "$line" "$file"; then
      echo "  missing in $(basename "$file"): $line"
      return 1
    fi
  done
}

# run_pair TITLE MASTER_CMD... -- SLAVE_CMD...: starts the master, then the slave; both must exit 0.
run_pair() {
  local title=$1
  shift
  local master=() slave=()
  while [[ $1 != -- ]]; do master+=("$1"); shift; done
  shift
  slave=("$@")
  timeout -s KILL "$limit" "${master[@]}" >"$work/master.log" 2>&1 &
  local mpid=$!
  pids+=("$mpid")
  timeout -s KILL "$limit" "${slave[@]}" >"$work/slave.log" 2>&1 &
  local spid=$!
  pids+=("$spid")
  wait "$spid"
  local src=$?
  wait "$mpid"
  local mrc=$?
  if [[ $mrc -ne 0 || $src -ne 0 ]]; then
    echo "  exit codes: master $mrc, slave $src"
    return 1
  fi
}

report() {
  local title=$1 ok=$2
  if [[ $ok -eq 0 ]]; then
    echo "PASS: $title"
  else
    echo "FAIL: $title"
    echo "----- master output:"; cat "$work/master.log"
    echo "----- slave output:"; cat "$work/slave.log"
    failures=$((failures + 1))
  fi
}

# Test 1: C++ master + Python slave.
name="interop_sh1_$$_$RANDOM"
names+=("$name")
echo "=== Test 1: C++ master + Python slave ($name) ==="
ok=0
run_pair "cpp-master" "$demo" master "$name" --count="$count" --rate_hz=20 -- \
  "$python" "$examples/simple_slave.py" "$name" --count "$count" || ok=1
[[ $ok -eq 0 ]] && { expect "$work/master.log" \
  "[MASTER] Initialized with role: MASTER" \
  "[MASTER] Sent: Hello from master #0" \
  "[MASTER] Received: ACK from Python slave #0" \
  "[MASTER] Received: ACK from Python slave #$((count - 1))" || ok=1; }
[[ $ok -eq 0 ]] && { expect "$work/slave.log" \
  "=== ESHM Python Slave Example ===" \
  "Initialized as SLAVE" \
  "[SLAVE] Received (20 bytes): Hello from master #0" \
  "[SLAVE] Sent: ACK from Python slave #0" \
  "[SLAVE] Received (20 bytes): Hello from master #$((count - 1))" || ok=1; }
report "C++ master + Python slave" $ok

# Test 2: Python master + C++ slave.
name="interop_sh2_$$_$RANDOM"
names+=("$name")
echo "=== Test 2: Python master + C++ slave ($name) ==="
ok=0
run_pair "py-master" "$python" "$examples/simple_master.py" "$name" --count "$count" --rate-hz 20 -- \
  "$demo" slave "$name" --count="$count" || ok=1
[[ $ok -eq 0 ]] && { expect "$work/master.log" \
  "=== ESHM Python Master Example ===" \
  "Initialized as MASTER" \
  "[MASTER] Sent: Hello from Python master #0" \
  "[MASTER] Received: ACK from slave #0" \
  "[MASTER] Received: ACK from slave #$((count - 1))" || ok=1; }
[[ $ok -eq 0 ]] && { expect "$work/slave.log" \
  "[SLAVE] Initialized with role: SLAVE" \
  "[SLAVE] Received (27 bytes): Hello from Python master #0" \
  "[SLAVE] Sent: ACK from slave #0" \
  "[SLAVE] Received (27 bytes): Hello from Python master #$((count - 1))" || ok=1; }
report "Python master + C++ slave" $ok

if [[ $failures -eq 0 ]]; then
  echo "All interop tests PASSED"
  exit 0
fi
echo "$failures interop test(s) FAILED"
exit 1
