#!/usr/bin/env bash
# End-to-end test of eshm-bench: short runs (a few thousand messages, no timing thresholds) of each mode and
# wait strategy, with every comparison transport, must
#   - write JSON that matches schema eshm-bench/2 (check_json.py: keys, types, monotone percentiles, the
#     message counts and sizes asked for, a result for every transport x mode x wait x size, each compared
#     with the right floor);
#   - with --json=- print only the JSON on stdout;
#   - list its flags in --help, and refuse bad flags with exit code 2;
#   - on SIGINT mid-run, exit 130 leaving no child process and no shared-memory file behind;
#   - leave no shared-memory file behind after a normal run either.
# Every wait has a deadline (timeout), and the EXIT trap kills leftovers.
set -uo pipefail

find_file() {
  local candidate
  for candidate in "$@"; do
    if [[ -e "$candidate" ]]; then echo "$candidate"; return 0; fi
  done
  return 1
}
HERE="benchmarks/eshm_bench"
BENCH=$(find_file "${TEST_SRCDIR:-}/eshm/$HERE/eshm-bench" "bazel-bin/$HERE/eshm-bench") || {
  echo "FAIL: eshm-bench not found"; exit 1; }
CHECK=$(find_file "${TEST_SRCDIR:-}/eshm/$HERE/check_json.py" "$HERE/check_json.py") || {
  echo "FAIL: check_json.py not found"; exit 1; }
PYTHON=/usr/bin/python3
[[ -x "$PYTHON" ]] || PYTHON=python3
WORK="${TEST_TMPDIR:-$(mktemp -d)}"
FAILED=0
BG=""

cleanup() {
  if [[ -n "$BG" ]]; then kill -KILL "$BG" 2>/dev/null; fi
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; FAILED=1; }

# Files a run with parent pid $1 could leave: eshm segments are named eshmbench_<pid>_*.
leftovers() { ls /dev/shm 2>/dev/null | grep -E "^(eshm_)?eshmbench_$1_" || true; }

SHORT=(--messages=2000 --warmup_s=0 --repetitions=1 --timeout_s=120)
TRANSPORTS="eshm,eshm_ring,minimal_ring,pipe,unix"

# run NAME ARGS...: eshm-bench ARGS --json=$WORK/NAME.json (not with --idle), its output in $WORK/NAME.out; it
# must exit 0 and leave no file in /dev/shm. Its pid stays in $PID.
run() {
  local name=$1 rc json="--json=$WORK/$1.json"
  shift
  [[ "$*" == *--idle=* ]] && json=()
  "$BENCH" "$@" "${json[@]}" >"$WORK/$name.out" 2>&1 &
  BG=$!; PID=$BG
  wait "$BG"; rc=$?; BG=""
  [[ $rc -eq 0 ]] || { fail "$name run exited $rc"; cat "$WORK/$name.out"; }
  [[ -z "$(leftovers "$PID")" ]] || fail "$name: files left in /dev/shm: $(leftovers "$PID")"
}
# check NAME CHECK_JSON_ARGS...: $WORK/NAME.json holds what was asked for.
check() { local name=$1; shift; "$PYTHON" "$CHECK" "$WORK/$name.json" "$@" || fail "$name JSON"; }
# refused ARGS...: eshm-bench ARGS exits 2 at once.
refused() { local rc; "$BENCH" "$@" >/dev/null 2>&1; rc=$?; [[ $rc -eq 2 ]] || fail "$* exited $rc, expected 2"; }
said() { grep -q -- "$2" "$WORK/$1.out" || fail "$1: the output does not say '$2'"; }

echo "--- pingpong, spin and blocking, 8 B and 4 KiB, every transport"
run pingpong "${SHORT[@]}" --compare=all --mode=pingpong --wait=spin,blocking --sizes=8,4096
check pingpong --modes=pingpong --waits=spin,blocking --sizes=8,4096 --transports="$TRANSPORTS" --messages=2000
said pingpong "two forked processes"
grep -q "^ *eshm *pingpong *spin" "$WORK/pingpong.out" || fail "no table row for eshm pingpong spin"

echo "--- stream, spin and blocking, 64 B and 64 KiB, JSON on stdout only"
"$BENCH" "${SHORT[@]}" --compare=all --mode=stream --wait=spin,blocking --sizes=64,65536 --json=- \
  >"$WORK/stream.json" 2>"$WORK/stream.out" &
BG=$!; STREAM_PID=$BG
wait "$BG"; rc=$?; BG=""
[[ $rc -eq 0 ]] || { fail "stream run exited $rc"; cat "$WORK/stream.out"; }
check stream --modes=stream --waits=spin,blocking --sizes=64,65536 --transports="$TRANSPORTS" --messages=2000
said stream "results"  # the table, on stderr
said stream "minimal_ring has no blocking wait"
[[ -z "$(leftovers "$STREAM_PID")" ]] || fail "files left in /dev/shm: $(leftovers "$STREAM_PID")"

# Under ThreadSanitizer the loopback-TCP transports are left out: Debian's libzmq is not instrumented, so
# TSan reports its internal hand-overs as races (the bridge's own tests run under TSan with suppressions).
if [[ -n "${TSAN_OPTIONS:-}" ]]; then
  echo "--- (ThreadSanitizer: --compare=net and the bridge's SIGINT run are skipped)"
else
echo "--- across hosts over loopback (--compare=net): eshm-bridge and ZeroMQ, both modes and waits, 64 B and 64 KiB"
# 300 messages a run: a bridged round trip takes milliseconds (ten times that under a sanitizer).
run net "${SHORT[@]}" --messages=300 --compare=net --mode=pingpong,stream --wait=spin,blocking --sizes=64,65536
check net --modes=pingpong,stream --waits=spin,blocking --sizes=64,65536 --transports=eshm,bridge,zmq --messages=300
grep -q "^ *bridge *pingpong *spin" "$WORK/net.out" || fail "no table row for bridge pingpong spin"
grep -q "^ *zmq *stream *blocking" "$WORK/net.out" || fail "no table row for zmq stream blocking"
# The bridges' command lines name the run's segments (eshmbench_<pid>_...): none may outlive it.
[[ -z "$(ps -eo args= | grep -E "eshm-bridge eshmbench_${PID}_" | grep -v grep)" ]] ||
  fail "--compare=net: bridges left running"

echo "--- SIGINT during a bridge run: exit 130, bridges killed, segments and state files removed"
"$BENCH" --compare=bridge --mode=pingpong --wait=blocking --sizes=64 --duration_s=8 --floor_duration_s=0.05 \
  --warmup_s=0 --repetitions=1 >"$WORK/net_interrupted.out" 2>&1 &
BG=$!
for _ in $(seq 1 300); do  # up to 30 s for the bridge run (its state files) to start
  if [[ -n "$(ls /dev/shm 2>/dev/null | grep -E "^eshmbench_${BG}_.*_bridge_b.state")" ]]; then break; fi
  sleep 0.1
done
[[ -n "$(leftovers "$BG")" ]] || fail "SIGINT: the bridge run never started"
sleep 1  # into the measurement
kill -INT "$BG"
rc=""
for _ in $(seq 1 300); do  # 30 s: a sanitized build on a loaded machine is slow to wind down
  if ! kill -0 "$BG" 2>/dev/null; then wait "$BG"; rc=$?; break; fi
  sleep 0.1
done
[[ "$rc" == 130 ]] || fail "SIGINT during a bridge run: exit code '$rc' (empty: still running 30 s later), expected 130"
sleep 0.5  # a bridge that survived would have re-created its master's segment by now
[[ -z "$(leftovers "$BG")" ]] || fail "SIGINT during a bridge run: files left in /dev/shm: $(leftovers "$BG")"
[[ -z "$(ps -eo args= | grep -E "eshm-bridge eshmbench_${BG}_" | grep -v grep)" ]] ||
  fail "SIGINT during a bridge run: bridges left running"
BG=""

fi

echo "--- adaptive blocking stream: futex calls per message counted, compared with the ring alone"
run adaptive "${SHORT[@]}" --compare=eshm_ring --mode=stream --wait=blocking --sizes=64 --eshm_wait=adaptive
check adaptive --modes=stream --waits=blocking --sizes=64 --transports=eshm,eshm_ring --messages=2000
said adaptive "futex/msg"
refused --eshm_wait=never
echo "--- zero-copy streams, spin and blocking: the rings and the Channel in place, the others skipped and said"
run zero_copy "${SHORT[@]}" --compare=all --zero_copy --mode=stream --wait=spin,blocking --sizes=64,65536
check zero_copy --modes=stream --waits=spin,blocking --sizes=64,65536 --transports=eshm,eshm_ring,minimal_ring \
  --messages=2000
said zero_copy "pipe has no zero-copy stream"
echo "--- deferred publication: every message arrives, in order, also when the sender stops without a full batch"
run deferred "${SHORT[@]}" --messages=2001 --compare=eshm_ring --eshm_publish=deferred --mode=stream \
  --wait=spin,blocking --sizes=64,65536
check deferred --modes=stream --waits=spin,blocking --sizes=64,65536 --transports=eshm,eshm_ring --messages=2001
refused --eshm_publish=later
refused --eshm_publish=deferred --mode=pingpong,stream  # a staged ping would wait for the watchdog
refused --zero_copy --mode=pingpong
echo "--- pingpong through a WaitSet of 200 channels (past one kernel sleep's 128 words), nothing left behind"
run waitset "${SHORT[@]}" --mode=pingpong --wait=blocking --sizes=64 --eshm_waitset=200
check waitset --modes=pingpong --waits=blocking --sizes=64 --transports=eshm --messages=2000
refused --eshm_waitset=-1
echo "--- a zero-copy stream through a WaitSet of 3 channels"
run waitset_zero_copy "${SHORT[@]}" --zero_copy --mode=stream --wait=blocking --sizes=64 --eshm_waitset=3
check waitset_zero_copy --modes=stream --waits=blocking --sizes=64 --transports=eshm --messages=2000

echo "--- peer transports: a stand-in for python -m eshm.bench speaking the protocol"
# --python names it: --peer-list, results eshm-bench must turn into rows exactly, a combination it cannot run
# (exit 3), a peer that fails, and one that hangs with a child of its own (killed with its process group).
FAKE="$WORK/fake_python"
cat >"$FAKE" <<'PEER'
#!/usr/bin/env bash
shift 2  # -m eshm.bench
if [[ $1 == --peer-list ]]; then
  printf 'py_eshm\tok\tx\npy_pipe\tok\tx\npy_queue\tok\tx\npy_zmq\tok\tx\n'
  printf 'py_faster_fifo\tok\tx\npy_iceoryx2\tpy_iceoryx2: iceoryx2 is not importable\tx\n'
  printf 'py_eshm_batch\tok\tx\n'
  exit 0
fi
for a in "$@"; do
  case $a in --peer=*) peer=${a#*=} ;; --mode=*) mode=${a#*=} ;; --samples=*) samples=${a#*=} ;;
    --messages=*) n=${a#*=} ;; --cpus=*) cpus=${a#*=} ;; esac
done
case $peer in
  py_pipe) [[ $mode == stream ]] || { echo "py_pipe runs only stream" >&2; exit 3; } ;;
  py_queue) echo "the queue broke" >&2; exit 1 ;;
  py_zmq) sleep 600 & echo $! >>"$HUNG_CHILDREN"; sleep 600; exit 0 ;;
esac
[[ -n $cpus ]] || { echo "no --cpus" >&2; exit 1; }
if [[ $mode == pingpong ]]; then
  # Round trips of 1000 ns and one of 1 ms: n in all, (n - 1) us + 1 ms.
  /usr/bin/env python3 -c "import array,sys; array.array('Q',[1000]*(int(sys.argv[2])-1)+[10**6]).tofile(open(sys.argv[1],'wb'))" "$samples" "$n"
  echo "messages=$n seconds=$(( (n - 1) * 1000 + 1000000 ))e-9"
else
  echo "some chatter"
  echo "messages=$n seconds=0.5"
fi
PEER
chmod +x "$FAKE"
export HUNG_CHILDREN="$WORK/hung_children"
"$BENCH" "${SHORT[@]}" --timeout_s=3 --python="$FAKE" --compare=python --mode=stream,pingpong --wait=spin \
  --sizes=64 --json="$WORK/peers.json" >"$WORK/peers.out" 2>&1; rc=$?
[[ $rc -eq 1 ]] || fail "the peers' run exited $rc, expected 1 (two transports failed)"
"$PYTHON" - "$WORK/peers.json" <<'CHECK_PEERS' || { fail "peer results"; cat "$WORK/peers.out"; }
import json, sys
rows = {(r["transport"], r["mode"]): r for r in json.load(open(sys.argv[1]))["results"]}
assert set(rows) == {("eshm", "stream"), ("eshm", "pingpong"), ("py_eshm", "stream"), ("py_eshm", "pingpong"),
                     ("py_pipe", "stream"), ("py_faster_fifo", "stream"), ("py_faster_fifo", "pingpong"),
                     ("py_eshm_batch", "stream"), ("py_eshm_batch", "pingpong")}, sorted(rows)
s = rows[("py_eshm", "stream")]
assert s["messages"] == 2000 and s["seconds"] == 0.5 and s["msgs_per_s"] == 4000, s
p = rows[("py_eshm", "pingpong")]
assert p["messages"] == 2000 and abs(p["seconds"] - (1999e-6 + 1e-3)) < 1e-12, p
lat = p["latency_ns"]
assert 995 <= lat["p50"] <= 1005 and 995 <= lat["p99"] <= 1005 and lat["max"] >= 0.99e6, lat
assert p["floor"] == "atomic_pingpong" and p["ratio_to_floor"] > 0, p
CHECK_PEERS
grep -q "unavailable: py_iceoryx2: iceoryx2 is not importable" "$WORK/peers.out" || fail "unavailable peer not said"
grep -q "unavailable: py_pipe runs only stream" "$WORK/peers.out" || fail "exit 3 not said as skipped"
grep -q "FAILED: py_queue .*the queue broke" "$WORK/peers.out" || fail "a failing peer's error not reported"
grep -q "FAILED: py_zmq .*did not finish within 3 s" "$WORK/peers.out" || fail "a hanging peer not stopped"
[[ $(wc -l <"$HUNG_CHILDREN") -eq 2 ]] || fail "the hanging peer did not run twice"
alive() { [[ -n "$(ps -o stat= -p "$1" 2>/dev/null | grep -v Z)" ]]; }  # a killed orphan may linger as a zombie
for child in $(cat "$HUNG_CHILDREN"); do
  if alive "$child"; then fail "the hanging peer's child $child survived"; kill -KILL "$child"; fi
done
echo "--- links planted at the names a run would use without its random part are never followed"
mkdir -p "$WORK/tmp"
echo original >"$WORK/target"
# bash -c execs eshm-bench: its pid, $$, is known before it starts.
PLANT='for i in $(seq 0 30); do ln -s "$1" "$2/eshmbench_$$_$i.samples"; done; shift 2; exec "$@"'
TMPDIR="$WORK/tmp" bash -c "$PLANT" \
  _ "$WORK/target" "$WORK/tmp" "$BENCH" "${SHORT[@]}" --python="$FAKE" --compare=py_eshm --mode=pingpong --wait=spin \
  --sizes=64 >"$WORK/planted.out" 2>&1 || { fail "the run beside planted links failed"; cat "$WORK/planted.out"; }
[[ "$(cat "$WORK/target")" == original ]] || fail "a planted link was followed: the file it names was overwritten"
[[ -z "$(find "$WORK/tmp" -type f)" ]] || fail "files left in \$TMPDIR: $(find "$WORK/tmp" -type f)"
"$BENCH" --python=/nonexistent/python3 --compare=py_eshm >"$WORK/nopython.out" 2>&1; rc=$?
[[ $rc -eq 0 ]] || fail "a missing interpreter failed the run ($rc) instead of skipping its transports"
grep -q "unavailable: py_eshm: /nonexistent/python3 -m eshm.bench --peer-list failed" "$WORK/nopython.out" ||
  fail "a missing interpreter is not said"

echo "--- the Node peer: a package that does not load, or no node, is said unavailable"
FAKE_NODE="$WORK/fake_node"
cat >"$FAKE_NODE" <<'NODE'
#!/usr/bin/env bash
[[ $2 == --peer-list ]] && printf 'node_eshm\tnode_eshm: the Node package does not load\tx\n'
NODE
chmod +x "$FAKE_NODE"
# node_skipped NAME NODE: a run of node_eshm with --node=NODE succeeds, saying it could not run node_eshm.
node_skipped() {
  "$BENCH" "${SHORT[@]}" --node="$2" --compare=node_eshm --mode=stream --wait=spin --sizes=64 >"$WORK/$1.out" 2>&1 ||
    { fail "a node_eshm that cannot run failed the run ($2)"; cat "$WORK/$1.out"; }
}
node_skipped node "$FAKE_NODE"
said node "unavailable: node_eshm: the Node package does not load"
node_skipped no_node /nonexistent/node
said no_node "unavailable: node_eshm: /nonexistent/node .*--peer-list failed"

echo "--- idle channels: a row per count, every pair alive, nothing left behind"
run idle --idle=1,3 --idle_s=0.2 --idle_peers
grep -Eq "^ +1 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +1/1$" "$WORK/idle.out" || fail "no --idle row for 1 pair"
grep -Eq "^ +3 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +3/3$" "$WORK/idle.out" || fail "no --idle row for 3 pairs"
refused --idle=0
refused --idle=1 --json=-
echo "--- --idle with its processes stopped: an error within --timeout_s and the window, not a hang"
"$BENCH" --idle=1 --idle_peers --idle_s=0.5 --timeout_s=2 >"$WORK/idle_stopped.out" 2>&1 &
BG=$!
SIDES=""
for _ in $(seq 1 200); do  # the two sides, as soon as they are forked
  SIDES=$(pgrep -P "$BG" | tr '\n' ' ')
  if [[ $(wc -w <<<"$SIDES") -ge 2 ]]; then break; fi
  sleep 0.01
done
kill -STOP $SIDES 2>/dev/null
rc=""
for _ in $(seq 1 150); do  # 15 s; the run must give up after at most 2 + 0.5 + 1 s
  if ! kill -0 "$BG" 2>/dev/null; then wait "$BG"; rc=$?; break; fi
  sleep 0.1
done
if [[ "$rc" != 1 ]]; then
  fail "--idle with stopped sides: exit code '$rc' (empty: still running), expected 1"
  kill -KILL "$BG"
fi
said idle_stopped "took over 2 s\|did not report within"
kill -KILL $SIDES 2>/dev/null
[[ -z "$(leftovers "$BG")" ]] || fail "--idle with stopped sides: files left in /dev/shm: $(leftovers "$BG")"
BG=""

echo "--- runs longer than --timeout_s are stopped at it"
START=$SECONDS
"$BENCH" --mode=pingpong,stream --wait=spin --sizes=64 --duration_s=30 --floor_duration_s=0.05 --warmup_s=0 \
  --repetitions=1 --timeout_s=2 >"$WORK/overrun.out" 2>&1; rc=$?
[[ $rc -eq 1 ]] || fail "runs longer than --timeout_s: exit $rc, expected 1"
[[ $(grep -c "^FAILED: eshm .*timed out (see --timeout_s)" "$WORK/overrun.out") -eq 2 ]] ||
  fail "overrun runs not reported"
# Two 2 s runs; the backstop behind the watchdog (--timeout_s + 10 s a run) would take 24 s.
(( SECONDS - START < 20 )) || fail "runs longer than --timeout_s took $((SECONDS - START)) s to stop"

echo "--- --help lists the flags"
HELP="$("$BENCH" --help 2>&1)"
for flag in --mode --sizes --wait --compare --json --quick --python --idle; do
  grep -q -- "$flag" <<<"$HELP" || fail "--help does not list $flag"
done
grep -q "No flags matched" <<<"$HELP" && fail "--help says 'No flags matched'"

echo "--- bad flags are refused"
refused --sizes=4
refused --mode=sideways
refused --compare=carrier_pigeon

# interrupted NAME FILES ARGS...: eshm-bench ARGS, sent SIGINT once it has FILES files in /dev/shm, must exit 130
# within 10 s, saying so, with no child process or file left.
interrupted() {
  local name=$1 files=$2 rc="" children
  shift 2
  "$BENCH" "$@" >"$WORK/$name.out" 2>&1 &
  BG=$!
  for _ in $(seq 1 300); do  # up to 30 s for the run to start
    if [[ $(leftovers "$BG" | wc -l) -ge $files ]]; then break; fi
    sleep 0.1
  done
  [[ $(leftovers "$BG" | wc -l) -ge $files ]] || fail "$name: the run never started"
  sleep 0.3
  children=$(pgrep -P "$BG" | tr '\n' ' ')
  kill -INT "$BG"
  for _ in $(seq 1 100); do
    if ! kill -0 "$BG" 2>/dev/null; then wait "$BG"; rc=$?; break; fi
    sleep 0.1
  done
  if [[ -z "$rc" ]]; then
    fail "$name: eshm-bench still running 10 s after SIGINT"
    kill -KILL "$BG"
  else
    [[ $rc -eq 130 ]] || fail "$name: exit code $rc after SIGINT, expected 130"
    said "$name" "stopped by a signal"
  fi
  [[ -z "$(leftovers "$BG")" ]] || fail "$name: files left in /dev/shm after SIGINT: $(leftovers "$BG" | head -3)"
  for child in $children; do
    if kill -0 "$child" 2>/dev/null; then fail "$name: child $child survived SIGINT"; fi
  done
  BG=""
}
echo "--- SIGINT during an eshm run, one through a WaitSet of 20 channels, and --idle: exit 130, nothing left"
LONG=(--mode=pingpong --sizes=64 --duration_s=60 --floor_duration_s=0.05 --warmup_s=0 --repetitions=1)
interrupted interrupted 1 "${LONG[@]}" --wait=spin
interrupted interrupted_waitset 39 "${LONG[@]}" --wait=blocking --eshm_waitset=20
interrupted interrupted_idle 50 --idle=50 --idle_peers --idle_s=30

if ((FAILED)); then echo "FAILED"; exit 1; fi
echo "PASSED"
