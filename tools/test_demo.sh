#!/usr/bin/env bash
# End-to-end test of eshm_demo: a master and a slave process talk over a real /dev/shm segment.
#  1. master (runs until signalled) + slave (runs until signalled): the documented lines appear on both
#     sides; SIGINT ends the slave cleanly (exit 0, summary), then the master (exit 0, summary, segment
#     removed).
#  2. two `auto` processes with --count: the first becomes the master, the second the slave; both stop by
#     themselves after 5 messages with exit 0.
#  3. a slave waiting for a master that never comes ends cleanly on SIGTERM.
#  4. a FIFO at the segment path: master, auto and slave each refuse it at once (exit 1, an error naming
#     the file and calling it a FIFO) and leave it there; SIGINT would end one that did not.
# Every wait has a deadline and the EXIT trap kills leftovers, so the test cannot hang.
# Run: bazel test //tools:test_demo   (or directly: tools/test_demo.sh path/to/eshm_demo)
set -uo pipefail

DEMO="${1:-}"
if [[ -z "$DEMO" ]]; then
  for candidate in "${TEST_SRCDIR:-}/eshm/tools/eshm_demo" "tools/eshm_demo" "bazel-bin/tools/eshm_demo"; do
    if [[ -x "$candidate" ]]; then DEMO="$candidate"; break; fi
  done
fi
[[ -x "$DEMO" ]] || { echo "FAIL: eshm_demo binary not found (pass its path as the first argument)"; exit 1; }

if [[ -n "${TEST_TMPDIR:-}" ]]; then
  WORK="$TEST_TMPDIR"
  OWN_WORK=0
else
  WORK="$(mktemp -d)"
  OWN_WORK=1
fi
NAME="demo_test_$$_${RANDOM}"
SEGMENT="/dev/shm/eshm_${NAME}"
PIDS=()
FAILED=0

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  rm -f /dev/shm/eshm_"${NAME}"* 2>/dev/null
  if [[ -n "${SHARE_DIR:-}" ]]; then rm -rf "$SHARE_DIR"; fi
  if ((OWN_WORK)); then rm -rf "$WORK"; fi
}
trap cleanup EXIT

show_logs() {
  local f
  for f in "$WORK"/*.out; do
    echo "----- $f"
    tail -n 40 "$f"
  done
}

fail() {
  echo "FAIL: $*"
  FAILED=1
}

# start <log> <args...>: runs eshm_demo in the background; its pid is in $STARTED. The EXIT trap kills
# whatever is still running.
start() {
  local log="$WORK/$1"
  shift
  "$DEMO" "$@" >"$log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

# start_as <log> <setpriv options...> -- <args...>: start, as the user the setpriv options name. The binary
# runs from a copy that other users can read (the original may sit under root's home).
start_as() {
  local log="$WORK/$1"
  shift
  local ids=()
  while [[ "$1" != "--" ]]; do ids+=("$1"); shift; done
  shift
  setpriv "${ids[@]}" "$SHARED_DEMO" "$@" >"$log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

# wait_line <log> <fixed string> [seconds]: waits until the log has the line.
wait_line() {
  local log="$WORK/$1" text="$2" seconds="${3:-10}"
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    grep -qF -- "$text" "$log" 2>/dev/null && return 0
    sleep 0.05
  done
  fail "$1 never printed: $text"
  return 1
}

# wait_exit <pid> [seconds]: waits for the process to exit; sets $EXIT_CODE (999 if it did not).
wait_exit() {
  local pid="$1" seconds="${2:-10}"
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"
      EXIT_CODE=$?
      return 0
    fi
    sleep 0.05
  done
  EXIT_CODE=999
  return 1
}

# ---- 1. master + slave, ended by SIGINT ----
start m1.out master "$NAME" --rate_hz=200
MASTER=$STARTED
wait_line m1.out "[MASTER] Starting high-performance master process..."
wait_line m1.out "[MASTER] Initialized with role: MASTER"
wait_line m1.out "[MASTER] Sent: Hello from master #0"
[[ -e "$SEGMENT" ]] || fail "the master did not create $SEGMENT"

start s1.out slave "$NAME"
SLAVE=$STARTED
wait_line s1.out "[SLAVE] Starting high-performance slave process..."
wait_line s1.out "[SLAVE] Initialized with role: SLAVE"
# The master queued its first messages before the slave came: they are delivered, in order, from #0.
wait_line s1.out "[SLAVE] Received (20 bytes): Hello from master #0"
wait_line s1.out "[SLAVE] Sent: ACK from slave #0"
wait_line s1.out "[SLAVE] Received (20 bytes): Hello from master #1"
wait_line m1.out "[MASTER] Received: ACK from slave #0"
wait_line m1.out "[MASTER] Received: ACK from slave #1"

kill -INT "$SLAVE"
wait_exit "$SLAVE" 10 || fail "the slave did not exit within 10 s of SIGINT"
[[ "$EXIT_CODE" == 0 ]] || fail "the slave exited with $EXIT_CODE after SIGINT, expected 0"
grep -qE '^\[SLAVE\] Exiting: received [1-9][0-9]*, sent [1-9][0-9]*$' "$WORK/s1.out" ||
  fail "the slave printed no summary line"
[[ -e "$SEGMENT" ]] || fail "$SEGMENT vanished while the master still runs"

kill -INT "$MASTER"
wait_exit "$MASTER" 10 || fail "the master did not exit within 10 s of SIGINT"
[[ "$EXIT_CODE" == 0 ]] || fail "the master exited with $EXIT_CODE after SIGINT, expected 0"
grep -qE '^\[MASTER\] Exiting: sent [1-9][0-9]*, received [1-9][0-9]*$' "$WORK/m1.out" ||
  fail "the master printed no summary line"
[[ ! -e "$SEGMENT" ]] || fail "the master left $SEGMENT behind"
if grep -q "Received: .*[^ -~]" "$WORK/m1.out" "$WORK/s1.out"; then fail "non-printable bytes in the output"; fi

# ---- 2. auto + auto with --count: both stop by themselves ----
start m2.out auto "$NAME" --count=5 --rate_hz=100
FIRST=$STARTED
wait_line m2.out "[AUTO] Starting high-performance auto process..."
wait_line m2.out "[MASTER] Initialized with role: MASTER"
start s2.out auto "$NAME" --count=5
SECOND=$STARTED
wait_exit "$SECOND" 20 || fail "the --count=5 slave did not finish"
[[ "$EXIT_CODE" == 0 ]] || fail "the --count=5 slave exited with $EXIT_CODE"
wait_exit "$FIRST" 20 || fail "the --count=5 master did not finish"
[[ "$EXIT_CODE" == 0 ]] || fail "the --count=5 master exited with $EXIT_CODE"
wait_line s2.out "[SLAVE] Initialized with role: SLAVE" 1
wait_line s2.out "[SLAVE] Received (20 bytes): Hello from master #4" 1
wait_line s2.out "[SLAVE] Exiting: received 5, sent 5" 1
wait_line m2.out "[MASTER] Received: ACK from slave #4" 1
wait_line m2.out "[MASTER] Exiting: sent 5, received 5" 1
[[ ! -e "$SEGMENT" ]] || fail "the --count master left $SEGMENT behind"

# ---- 3. a slave without a master ends cleanly on SIGTERM ----
start s3.out slave "$NAME"
LONELY=$STARTED
wait_line s3.out "[SLAVE] Waiting for a master to create $SEGMENT..."
kill -TERM "$LONELY"
wait_exit "$LONELY" 5 || fail "the waiting slave did not exit within 5 s of SIGTERM"
[[ "$EXIT_CODE" == 0 ]] || fail "the waiting slave exited with $EXIT_CODE after SIGTERM"

# ---- 4. a FIFO at the path is refused at once in every role ----
mkfifo "$SEGMENT" || fail "mkfifo $SEGMENT"
for role in master auto slave; do
  start fifo_$role.out "$role" "$NAME" --max_reconnect_attempts=0
  FIFO_OPENER=$STARTED
  if ! wait_exit "$FIFO_OPENER" 10; then
    fail "$role did not give up on the FIFO within 10 s"
    kill -INT "$FIFO_OPENER"
    wait_exit "$FIFO_OPENER" 5 || fail "$role hung on the FIFO and ignored SIGINT"
  fi
  [[ "$EXIT_CODE" == 1 ]] || fail "$role exited with $EXIT_CODE on a FIFO at the path, expected 1"
  grep -qF "$SEGMENT is a FIFO" "$WORK/fifo_$role.out" || fail "$role did not say that $SEGMENT is a FIFO"
  [[ -p "$SEGMENT" ]] || fail "$role removed or replaced the FIFO at $SEGMENT"
done
rm -f "$SEGMENT"

# ---- 5. two users share a channel (root only: it runs processes as uids 4261 and 4263) ----
if [[ "$(id -u)" == 0 ]] && command -v setpriv >/dev/null; then
  SHARE_DIR="$(mktemp -d /tmp/eshm_demo_share.XXXXXX)"
  chmod 755 "$SHARE_DIR"
  SHARED_DEMO="$SHARE_DIR/eshm_demo"
  cp "$DEMO" "$SHARED_DEMO" && chmod 755 "$SHARED_DEMO"
  CREATOR=(--reuid=4261 --regid=4262 --groups=4262)          # Group=eshm (gid 4262), as the recipe says
  PARTNER=(--reuid=4263 --regid=4263 --groups=4263,4262)     # another user, a member of the group

  # The partner forgot --allow_other_owner: refused, told whose file it is, its mode, and what to do.
  start_as m5.out "${CREATOR[@]}" -- master "$NAME" --mode=0660 --count=3 --rate_hz=50
  SHARED_MASTER=$STARTED
  wait_line m5.out "[MASTER] Initialized with role: MASTER"
  [[ "$(stat -c '%u %g %a' "$SEGMENT" 2>/dev/null)" == "4261 4262 660" ]] ||
    fail "the shared segment is $(stat -c '%u %g %a' "$SEGMENT" 2>&1), expected owner 4261, group 4262, mode 660"
  start_as refused5.out "${PARTNER[@]}" -- slave "$NAME" --count=3
  wait_exit "$STARTED" 10 || fail "the slave without --allow_other_owner did not give up"
  [[ "$EXIT_CODE" == 1 ]] || fail "the slave without --allow_other_owner exited with $EXIT_CODE, expected 1"
  for text in "belongs to another user (uid 4261" "mode 0660" "allow_other_owner"; do
    grep -qF -- "$text" "$WORK/refused5.out" || fail "the refused slave's error lacks: $text"
  done

  start_as s5.out "${PARTNER[@]}" -- slave "$NAME" --count=3 --allow_other_owner
  wait_exit "$STARTED" 20 || fail "the shared-channel slave did not finish"
  [[ "$EXIT_CODE" == 0 ]] || fail "the shared-channel slave exited with $EXIT_CODE"
  wait_exit "$SHARED_MASTER" 20 || fail "the shared-channel master did not finish"
  [[ "$EXIT_CODE" == 0 ]] || fail "the shared-channel master exited with $EXIT_CODE"
  wait_line s5.out "[SLAVE] Exiting: received 3, sent 3" 1
  wait_line m5.out "[MASTER] Exiting: sent 3, received 3" 1
  [[ ! -e "$SEGMENT" ]] || fail "the shared-channel master left $SEGMENT behind"

  start_as badmode5.out "${CREATOR[@]}" -- master "$NAME" --mode=0644x
  wait_exit "$STARTED" 10
  [[ "$EXIT_CODE" == 2 ]] || fail "--mode=0644x exited with $EXIT_CODE, expected 2 (usage)"
  rm -rf "$SHARE_DIR"
else
  echo "test_demo: case 5 (two users) skipped: needs root and setpriv"
fi

if ((FAILED)); then
  show_logs
  echo "test_demo: FAILED"
  exit 1
fi
echo "test_demo: all checks passed"
