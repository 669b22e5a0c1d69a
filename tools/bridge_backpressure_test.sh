#!/usr/bin/env bash
# eshm-bridge backpressure end to end, over loopback: app A (master of NAME_A) <-> bridge A (listening) <->
# bridge B (connecting, master of NAME_B) <-> app B (slave of NAME_B), small rings (16 KiB) and a small
# window (--window_bytes=32768, --hwm=100). App B stops reading for PAUSE_MS after its first 200 messages
# while app A writes as fast as it can, each write with a 100 ms timeout. Checks:
#   (a) app A's writes time out during the pause: the far ring, bridge B's receive queue, bridge A's window
#       and the near ring filled up and pushed back on the writer;
#   (b) each bridge's VmRSS, sampled all through the pause, stays below its own VmRSS as the pause began
#       plus a bound derived from the window, the receive queue, the rings and ZeroMQ's high-water marks;
#   (c) once app B reads again, both apps receive every message once and in order (bridge_test_peer checks
#       sequence, length, CRC-32C and content of each).
# Every wait has a deadline and the EXIT trap kills leftovers and removes our segments.
# Run: bazel test //tools:bridge_backpressure_test
set -uo pipefail

find_binary() {
  local candidate
  for candidate in "${TEST_SRCDIR:-}/eshm/tools/$1" "bazel-bin/tools/$1"; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return 0; fi
  done
  echo "FAIL: $1 not found (bazel build //tools:$1)" >&2
  return 1
}
BRIDGE="$(find_binary eshm-bridge)" || exit 1
PEER="$(find_binary bridge_test_peer)" || exit 1
for candidate in "${TEST_SRCDIR:-}/eshm/tools/bridge/tsan_suppressions.txt" "tools/bridge/tsan_suppressions.txt"; do
  if [[ -f "$candidate" ]]; then export TSAN_OPTIONS="${TSAN_OPTIONS:-}:suppressions=$(realpath "$candidate")"; break; fi
done
# Under --config=asan freed memory is held in a quarantine (256 MiB by default), which would be counted as
# the bridges' growth; a small one keeps VmRSS about what the bridge holds. Ignored without ASan.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=1"

if [[ -n "${TEST_TMPDIR:-}" ]]; then WORK="$TEST_TMPDIR"; OWN_WORK=0; else WORK="$(mktemp -d)"; OWN_WORK=1; fi
TAG="bridge_bp_$$_${RANDOM}"
NAME_A="${TAG}_a"
NAME_B="${TAG}_b"
COUNT=40000
PAUSE_MS=3000
RING=16384
WINDOW=32768
HWM=100
PIDS=()
FAILED=0

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  rm -f "/dev/shm/eshm_${NAME_A}" "/dev/shm/eshm_${NAME_B}"
  if ((OWN_WORK)); then rm -rf "$WORK"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  FAILED=1
}

show_logs() {
  local f
  for f in "$WORK"/*.log; do
    echo "----- $f"
    tail -n 30 "$f"
  done
}

start() {
  local log="$WORK/$1"
  shift
  "$@" >>"$log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

wait_for() {
  local seconds=$1 what=$2
  shift 2
  local end=$((SECONDS + seconds))
  until "$@"; do
    if grep -qE '^FAIL|runtime error|ERROR: (Address|Undefined)Sanitizer|WARNING: ThreadSanitizer' "$WORK"/*.log 2>/dev/null; then
      fail "an app or bridge failed while waiting for $what"
      show_logs
      exit 1
    fi
    if ((SECONDS >= end)); then
      fail "timed out after ${seconds}s waiting for $what"
      show_logs
      exit 1
    fi
    sleep 0.05
  done
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

bridge_flags=(--window_bytes=$WINDOW --hwm=$HWM --heartbeat_ms=50 --link_timeout_ms=1000 --retransmit_ms=300)
start app_a.log "$PEER" "$NAME_A" --role=master --count=$COUNT --write_timeout_ms=100 --timeout_s=40 --ring_bytes=$RING
APP_A=$STARTED
start bridge_a.log "$BRIDGE" "$NAME_A" --role=slave --listen "tcp://127.0.0.1:*" --state_file="$WORK/state_a" \
  "${bridge_flags[@]}"
BRIDGE_A=$STARTED
wait_for 10 "the listening bridge's endpoint" grep -qs 'link endpoint tcp://' "$WORK/bridge_a.log"
ENDPOINT=$(grep -o 'link endpoint tcp://[^ ]*' "$WORK/bridge_a.log" | head -n 1 | cut -d' ' -f3)
start bridge_b.log "$BRIDGE" "$NAME_B" --role=master --connect "$ENDPOINT" --state_file="$WORK/state_b" \
  --ring_bytes=$RING "${bridge_flags[@]}"
BRIDGE_B=$STARTED
wait_for 10 "the link" grep -qs 'link up' "$WORK/bridge_a.log"
start app_b.log "$PEER" "$NAME_B" --role=slave --count=$COUNT --read_pause_after=200 --read_pause_ms=$PAUSE_MS \
  --timeout_s=40 --ring_bytes=$RING
APP_B=$STARTED

# What a bridge may hold beyond its baseline: the window file (mapped, WINDOW), the receive queue (at most
# WINDOW of payloads, plus per-entry overhead), ZeroMQ's queues (HWM frames each way, each at most a ring's
# largest message + 40 bytes), and margin for the allocator and ZeroMQ's TCP buffers (4 MiB). App A writes
# about 20 MB, so a bridge that took from its ring without bound would exceed it. Under ThreadSanitizer
# every byte touched also costs shadow memory (4 bytes of shadow and half a byte of meta shadow per byte),
# so the bound is 5 times that.
BOUND_KB=$(((WINDOW + 2 * WINDOW + 2 * HWM * (RING + 40)) / 1024 + 4096))
if grep -qa __tsan_init "$BRIDGE"; then BOUND_KB=$((BOUND_KB * 5)); fi
wait_for 20 "app B to pause its reading" grep -qs '^read_paused' "$WORK/app_b.log"
# Each bridge's own memory as the stall begins (its code, libraries and the first 200 messages' traffic):
# the rings, queue and window fill from here on.
base_a=$(rss_kb "$BRIDGE_A")
base_b=$(rss_kb "$BRIDGE_B")
max_a=0
max_b=0
samples=0
while ! grep -qs '^read_resumed' "$WORK/app_b.log"; do
  a=$(rss_kb "$BRIDGE_A")
  b=$(rss_kb "$BRIDGE_B")
  [[ -n "$a" && -n "$b" ]] || { fail "a bridge died during the stall"; break; }
  ((a > max_a)) && max_a=$a
  ((b > max_b)) && max_b=$b
  samples=$((samples + 1))
  sleep 0.1
done
echo "stall: $samples samples; bridge A VmRSS ${base_a} -> max ${max_a} kB, bridge B ${base_b} -> max ${max_b} kB" \
  "(bound: baseline + ${BOUND_KB} kB)"
((samples >= 10)) || fail "only $samples memory samples during a ${PAUSE_MS} ms stall"
((max_a <= base_a + BOUND_KB)) || fail "bridge A grew to ${max_a} kB from ${base_a} kB during the stall"
((max_b <= base_b + BOUND_KB)) || fail "bridge B grew to ${max_b} kB from ${base_b} kB during the stall"

both_done() { grep -q '^done' "$WORK/app_a.log" && grep -q '^done' "$WORK/app_b.log"; }
wait_for 40 "both apps to finish" both_done
for app in A B; do
  pid_var="APP_$app"
  wait "${!pid_var}"
  code=$?
  log="$WORK/app_$(tr 'AB' 'ab' <<<"$app").log"
  ((code == 0)) || fail "app $app exited with $code"
  grep -q "^done sent=$COUNT received=$COUNT duplicates=0\$" "$log" || fail "app $app: $(tail -n 1 "$log")"
done
# A 100 ms write timeout during a 3 s stall: the writer must have been refused many times.
timeouts=$(grep -o '^write_timeouts=[0-9]*' "$WORK/app_a.log" | cut -d= -f2)
echo "app A: write_timeouts=${timeouts:-none}; $(grep '^done' "$WORK/app_a.log")"
[[ -n "$timeouts" && "$timeouts" -ge 10 ]] || fail "app A's writer was not pushed back (write_timeouts=${timeouts:-none})"

kill -TERM "$BRIDGE_A" "$BRIDGE_B"
for bridge in BRIDGE_A BRIDGE_B; do
  wait "${!bridge}"
  code=$?
  ((code == 0)) || fail "$bridge exited with $code"
done
for log in bridge_a.log bridge_b.log; do
  grep -q 'invalid_frames=0$' <(grep 'stopped:' "$WORK/$log" | tail -n 1) ||
    fail "$log: $(grep 'stopped:' "$WORK/$log" | tail -n 1)"
done
grep -h 'stopped:' "$WORK"/bridge_*.log

if ((FAILED)); then
  show_logs
  exit 1
fi
echo "PASS"
