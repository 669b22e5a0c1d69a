#!/usr/bin/env bash
# End-to-end test of eshmctl against two live eshm_demo processes:
#  1. ls --json lists the segment with master and slave alive (their pids), stat --json shows advancing
#     counters and rates, and the traffic goes on undisturbed while eshmctl looks.
#  2. rm NAME is refused while the roles are held, naming both pids; the file stays.
#  3. foreign files under /dev/shm/eshm_* (garbage, large and small) are listed as not_eshm, stat and rm
#     refuse them without crashing.
#     A stopped (SIGSTOP) slave is reported unresponsive.
#  3b. copies of the segment truncated inside the trailer's page (no SIGBUS), or truncated and grown back,
#     are reported truncated; a watched segment truncated meanwhile ends the watch with that report.
#  4. after kill -9 of both demos, ls reports both dead and rm --stale removes the segment (and only it).
#  5. a file whose name holds terminal escape sequences and other non-printable bytes (ESC, BEL, CR, LF,
#     invalid UTF-8) is listed, stat-ed and removed with those bytes escaped (\xNN): none reaches the terminal.
# Every command runs under `timeout`, and the EXIT trap kills the demos and removes the files.
# Run: bazel test //tools:eshmctl_test   (or directly: tools/eshmctl_test.sh path/to/eshmctl path/to/eshm_demo)
set -uo pipefail

CTL="${1:-}"
DEMO="${2:-}"
for dir in "${TEST_SRCDIR:-}/eshm/tools" "bazel-bin/tools"; do
  [[ -z "$CTL" && -x "$dir/eshmctl" ]] && CTL="$dir/eshmctl"
  [[ -z "$DEMO" && -x "$dir/eshm_demo" ]] && DEMO="$dir/eshm_demo"
done
[[ -x "$CTL" ]] || { echo "FAIL: eshmctl not found (pass its path as the first argument)"; exit 1; }
[[ -x "$DEMO" ]] || { echo "FAIL: eshm_demo not found (pass its path as the second argument)"; exit 1; }

if [[ -n "${TEST_TMPDIR:-}" ]]; then
  WORK="$TEST_TMPDIR"
  OWN_WORK=0
else
  WORK="$(mktemp -d)"
  OWN_WORK=1
fi
NAME="eshmctl_test_$$_${RANDOM}"
SEGMENT="/dev/shm/eshm_${NAME}"
FOREIGN="${NAME}_foreign"
SMALL="${NAME}_small"
PIDS=()
FAILED=0

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  rm -f /dev/shm/eshm_"${NAME}"* 2>/dev/null
  if ((OWN_WORK)); then rm -rf "$WORK"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  FAILED=1
}

show_logs() {
  local f
  for f in "$WORK"/*.out; do
    echo "----- $f"
    tail -n 20 "$f"
  done
}

# ctl <args...>: runs eshmctl with a timeout; stdout in $OUT, exit code in $RC. A crash (signal) fails.
ctl() {
  OUT="$(timeout 20 "$CTL" "$@" 2>"$WORK/ctl.err")"
  RC=$?
  if ((RC >= 124)); then fail "eshmctl $* crashed or hung (exit $RC): $(cat "$WORK/ctl.err")"; fi
}

# jq-like checks with python3: json_check <json> <python expression over `d`> <message>
json_check() {
  if ! printf '%s' "$1" | timeout 20 python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if eval(sys.argv[1]) else 1)
' "$2" 2>"$WORK/py.err"; then
    fail "$3 (check: $2; $(tail -n 1 "$WORK/py.err")); output: $1"
    return 1
  fi
}

# json_get <json> <python expression over `d`>: prints the value.
json_get() {
  printf '%s' "$1" | timeout 20 python3 -c '
import json, sys
d = json.load(sys.stdin)
print(eval(sys.argv[1]))
' "$2" 2>/dev/null
}

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

count_lines() { grep -c "$2" "$WORK/$1" 2>/dev/null || true; }

# ---- 1. two live demos ----
"$DEMO" master "$NAME" --rate_hz=200 >"$WORK/master.out" 2>&1 &
MASTER=$!
PIDS+=("$MASTER")
wait_line master.out "[MASTER] Sent: Hello from master #0" || { show_logs; exit 1; }
"$DEMO" slave "$NAME" >"$WORK/slave.out" 2>&1 &
SLAVE=$!
PIDS+=("$SLAVE")
wait_line master.out "[MASTER] Received: ACK from slave #1" || { show_logs; exit 1; }

SEL="[s for s in d['segments'] if s['name'] == '$NAME']"
# A generous sampling window: a heartbeat thread starved for 150 ms on a loaded machine is not a failure.
ctl ls --json --sample_ms=400
[[ "$RC" == 0 ]] || fail "ls --json exited $RC"
json_check "$OUT" "len($SEL) == 1 and $SEL[0]['status'] == 'ok'" "ls --json does not list $NAME as ok"
json_check "$OUT" "$SEL[0]['master']['state'] == 'alive' and $SEL[0]['master']['pid'] == $MASTER" \
  "ls --json: master not alive with pid $MASTER"
json_check "$OUT" "$SEL[0]['slave']['state'] == 'alive' and $SEL[0]['slave']['pid'] == $SLAVE" \
  "ls --json: slave not alive with pid $SLAVE"
json_check "$OUT" "$SEL[0]['m2s_capacity'] > 0 and $SEL[0]['max_message_bytes'] > 0 and $SEL[0]['epoch'] == 1" \
  "ls --json: geometry or epoch missing"

ctl ls --sample_ms=400
[[ "$RC" == 0 && "$OUT" == *"$NAME"*"alive:$MASTER"*"alive:$SLAVE"* ]] || fail "ls (text) does not show both alive: $OUT"

MASTER_RX_BEFORE=$(count_lines master.out "Received: ACK")
SLAVE_RX_BEFORE=$(count_lines slave.out "Received (")
ctl stat "$NAME" --json --sample_ms=400
STAT1="$OUT"
[[ "$RC" == 0 ]] || fail "stat --json exited $RC"
json_check "$STAT1" "d['status'] == 'ok' and d['master']['state'] == 'alive' and d['slave']['state'] == 'alive'" \
  "stat --json: roles not alive"
json_check "$STAT1" "d['m2s']['messages_per_s'] > 0 and d['s2m']['messages_per_s'] > 0" "stat --json: no traffic rate"
json_check "$STAT1" "0 <= d['m2s']['fill_percent'] <= 100 and 'wake_syscalls' in d['m2s'] and 'heartbeat_age_ms' in d['master']" \
  "stat --json: fill, syscalls or heartbeat age missing"
sleep 0.3
ctl stat "$NAME" --json --sample_ms=100
STAT2="$OUT"
W1=$(json_get "$STAT1" "d['m2s']['messages_written']")
W2=$(json_get "$STAT2" "d['m2s']['messages_written']")
R1=$(json_get "$STAT1" "d['s2m']['messages_read']")
R2=$(json_get "$STAT2" "d['s2m']['messages_read']")
[[ -n "$W1" && -n "$W2" && "$W2" -gt "$W1" ]] || fail "m2s messages_written did not advance ($W1 -> $W2)"
[[ -n "$R1" && -n "$R2" && "$R2" -gt "$R1" ]] || fail "s2m messages_read did not advance ($R1 -> $R2)"

# --watch reports repeatedly (one JSON object per line) and ends cleanly on Ctrl-C.
"$CTL" stat "$NAME" --watch --interval_ms=100 --sample_ms=50 --json >"$WORK/watch.json" 2>&1 &
WATCH=$!
PIDS+=("$WATCH")
sleep 0.8
kill -INT "$WATCH" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$WATCH" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$WATCH" 2>/dev/null; then
  fail "stat --watch did not end on SIGINT"
else
  wait "$WATCH"
  [[ $? == 0 ]] || fail "stat --watch did not exit 0 on SIGINT"
fi
WATCH_LINES=$(grep -c '"messages_per_s"' "$WORK/watch.json")
((WATCH_LINES >= 3)) || fail "stat --watch printed $WATCH_LINES reports in 0.8 s, expected at least 3"
json_check "$(tail -n 1 "$WORK/watch.json")" "d['name'] == '$NAME'" "stat --watch: last line is not a report"

# ---- 2. rm is refused while the roles are held ----
ctl rm "$NAME"
[[ "$RC" == 1 ]] || fail "rm of a live segment exited $RC, expected 1"
grep -q "$MASTER" "$WORK/ctl.err" && grep -q "$SLAVE" "$WORK/ctl.err" ||
  fail "rm refusal does not name both pids: $(cat "$WORK/ctl.err")"
ctl rm "$NAME" --json
[[ "$RC" == 1 ]] || fail "rm --json of a live segment exited $RC, expected 1"
json_check "$OUT" "d['removed'] == [] and sorted(d['refused'][0]['pids']) == sorted([$MASTER, $SLAVE])" \
  "rm --json: refusal without both pids"
ctl rm --stale --match="$NAME" --json
json_check "$OUT" "'$NAME' not in d['removed']" "rm --stale removed a live segment"
# A shell pattern is refused with the prefix to use, not taken for a prefix that matches nothing.
ctl rm --stale --match="${NAME}*"
[[ "$RC" == 2 ]] || fail "rm --stale --match with a wildcard exited $RC, expected 2"
grep -q "not a pattern.*--match=$NAME" "$WORK/ctl.err" || fail "the wildcard refusal does not say what to use: $(cat "$WORK/ctl.err")"
[[ -e "$SEGMENT" ]] || fail "$SEGMENT vanished while both sides run"

# The traffic went on undisturbed while eshmctl looked.
sleep 0.3
MASTER_RX_AFTER=$(count_lines master.out "Received: ACK")
SLAVE_RX_AFTER=$(count_lines slave.out "Received (")
((MASTER_RX_AFTER > MASTER_RX_BEFORE)) || fail "the master stopped receiving ($MASTER_RX_BEFORE -> $MASTER_RX_AFTER)"
((SLAVE_RX_AFTER > SLAVE_RX_BEFORE)) || fail "the slave stopped receiving ($SLAVE_RX_BEFORE -> $SLAVE_RX_AFTER)"
kill -0 "$MASTER" 2>/dev/null && kill -0 "$SLAVE" 2>/dev/null || fail "a demo died while eshmctl looked"
if grep -qiE "error|unresponsive|dead|gone" "$WORK/master.out" "$WORK/slave.out"; then
  fail "a demo reported trouble: $(grep -iE "error|unresponsive|dead|gone" "$WORK/master.out" "$WORK/slave.out" | head -3)"
fi
# In-order delivery: the ACK numbers the master received are consecutive.
if ! grep -o "Received: ACK from slave #[0-9]*" "$WORK/master.out" | grep -o "[0-9]*$" |
  awk 'NR > 1 && $1 != prev + 1 { bad = 1 } { prev = $1 } END { exit bad }'; then
  fail "the master's ACKs are not consecutive"
fi

# A stopped process keeps its role lock but its heartbeat stops: unresponsive, and still not removable.
kill -STOP "$SLAVE"
ctl ls --json
json_check "$OUT" "$SEL[0]['slave']['state'] == 'unresponsive' and $SEL[0]['master']['state'] == 'alive'" \
  "ls --json does not report the stopped slave unresponsive"
ctl rm --stale --match="$NAME" --json
json_check "$OUT" "'$NAME' not in d['removed']" "rm --stale removed a segment whose slave is stopped"
kill -CONT "$SLAVE"

# ---- 3. foreign files ----
{ printf 'NOTESHM!'; head -c 8192 /dev/urandom; } >"/dev/shm/eshm_${FOREIGN}"
printf 'garbage, only a few bytes long' >"/dev/shm/eshm_${SMALL}"
ctl ls --json
[[ "$RC" == 0 ]] || fail "ls --json with foreign files exited $RC"
json_check "$OUT" "[s['status'] for s in d['segments'] if s['name'] == '$FOREIGN'] == ['not_eshm']" \
  "the foreign file is not listed as not_eshm"
json_check "$OUT" "[s['status'] for s in d['segments'] if s['name'] == '$SMALL'] == ['not_eshm']" \
  "the small foreign file is not listed as not_eshm"
ctl ls --sample_ms=400
[[ "$RC" == 0 && "$OUT" == *"$FOREIGN"*"not an eshm segment"* ]] || fail "ls (text) does not flag the foreign file: $OUT"
ctl stat "$FOREIGN" --json
[[ "$RC" == 1 ]] || fail "stat of a foreign file exited $RC, expected 1"
json_check "$OUT" "d['status'] == 'not_eshm'" "stat --json of a foreign file"
ctl rm "$FOREIGN"
[[ "$RC" == 1 && -e "/dev/shm/eshm_${FOREIGN}" ]] || fail "rm removed a foreign file without --force"
ctl stat "no_such_segment_$$" --json
[[ "$RC" == 1 ]] || fail "stat of a missing segment exited $RC, expected 1"
ctl stat "bad/name"
[[ "$RC" == 2 ]] || fail "stat of an invalid name exited $RC, expected 2"

# ---- 3b. truncated segments ----
# Copies of the live segment, cut as a hostile peer would cut the file.
CUT="${NAME}_cut"
REGROWN="${NAME}_regrown"
WATCHED="${NAME}_watched"
for n in "$CUT" "$REGROWN" "$WATCHED"; do cp "$SEGMENT" "/dev/shm/eshm_$n"; done
SIZE=$(stat -c %s "$SEGMENT")
truncate -s $((SIZE - 100)) "/dev/shm/eshm_$CUT"  # inside the trailer's page: nothing faults
truncate -s $((SIZE - 4)) "/dev/shm/eshm_$REGROWN"
truncate -s "$SIZE" "/dev/shm/eshm_$REGROWN"
ctl stat "$CUT" --json
[[ "$RC" == 1 ]] || fail "stat of a truncated segment exited $RC, expected 1"
json_check "$OUT" "d['status'] == 'truncated'" "stat --json of a truncated segment"
ctl stat "$REGROWN" --json
[[ "$RC" == 1 ]] || fail "stat of a truncated and regrown segment exited $RC, expected 1"
json_check "$OUT" "d['status'] == 'truncated' and 'trailer' in d['error']" \
  "stat --json of a truncated and regrown segment"
ctl ls --json
json_check "$OUT" "[s['status'] for s in d['segments'] if s['name'] in ('$CUT', '$REGROWN')] == ['truncated'] * 2" \
  "ls --json does not list the truncated segments as truncated"
# Truncated while watched: the watch reports it and ends with exit status 1.
"$CTL" stat "$WATCHED" --watch --interval_ms=50 --sample_ms=20 --json >"$WORK/watch_cut.json" 2>&1 &
WATCH=$!
PIDS+=("$WATCH")
sleep 0.3
truncate -s $((SIZE - 100)) "/dev/shm/eshm_$WATCHED"
for _ in $(seq 1 200); do kill -0 "$WATCH" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$WATCH" 2>/dev/null; then
  fail "stat --watch went on after the segment was truncated"
else
  wait "$WATCH"
  [[ $? == 1 ]] || fail "stat --watch of a truncated segment did not exit 1"
  json_check "$(tail -n 1 "$WORK/watch_cut.json")" "d['status'] == 'truncated'" \
    "stat --watch did not report the truncation"
fi
rm -f "/dev/shm/eshm_$CUT" "/dev/shm/eshm_$REGROWN" "/dev/shm/eshm_$WATCHED"

# ---- 4. kill -9 both; rm --stale cleans up ----
disown "$MASTER" "$SLAVE"
kill -KILL "$MASTER" "$SLAVE"
for _ in $(seq 1 100); do kill -0 "$MASTER" 2>/dev/null || kill -0 "$SLAVE" 2>/dev/null || break; sleep 0.05; done
ctl ls --json
json_check "$OUT" "$SEL[0]['master']['state'] == 'dead' and $SEL[0]['slave']['state'] == 'dead'" \
  "after kill -9, ls --json does not report both dead"
ctl rm --stale --match="$NAME" --json
[[ "$RC" == 0 ]] || fail "rm --stale exited $RC"
json_check "$OUT" "d['removed'] == ['$NAME']" "rm --stale did not remove exactly $NAME"
[[ ! -e "$SEGMENT" ]] || fail "rm --stale left $SEGMENT"
[[ -e "/dev/shm/eshm_${FOREIGN}" ]] || fail "rm --stale removed the foreign file"
ctl rm "$FOREIGN" --force
[[ "$RC" == 0 && ! -e "/dev/shm/eshm_${FOREIGN}" ]] || fail "rm --force did not remove the foreign file"
ctl rm "$NAME"
[[ "$RC" == 1 ]] || fail "rm of a missing segment exited $RC, expected 1"

# ---- 5. hostile file names: escaped in text output, never printed raw ----
# The name carries an OSC title change, a colour change, BEL, CR, LF, a lone 0xff and a C1 CSI (0x9b), and a
# backslash. 16 zero bytes: a truncated segment, so that rm --stale (with --min_age_s=0) removes it and prints its name.
HOSTILE_PREFIX="${NAME}_hostile"
HOSTILE="${HOSTILE_PREFIX}"$'\e]0;pwned\a\e[31mred\r\nnext\xff\x9b2J\\'
HOSTILE_ESCAPED="${HOSTILE_PREFIX}"'\x1b]0;pwned\x07\x1b[31mred\x0d\x0anext\xff\x9b2J\\'
head -c 16 /dev/zero >"/dev/shm/eshm_${HOSTILE}" || fail "could not create the hostile file"
# raw_check <file> <what>: fails if the file holds a byte outside printable ASCII other than a newline.
raw_check() {
  if ! timeout 20 python3 -c '
import sys
data = open(sys.argv[1], "rb").read()
bad = sorted({b for b in data if not (0x20 <= b <= 0x7e or b == 0x0a)})
if bad:
    print("raw bytes " + " ".join("0x%02x" % b for b in bad))
    sys.exit(1)
' "$1" >"$WORK/raw.err" 2>&1; then
    fail "$2 printed non-printable bytes ($(cat "$WORK/raw.err"))"
  fi
}
timeout 20 "$CTL" ls --sample_ms=0 >"$WORK/hostile_ls.out" 2>"$WORK/hostile_ls.err"
RC=$?
[[ "$RC" == 0 ]] || fail "ls with a hostile name exited $RC"
raw_check "$WORK/hostile_ls.out" "ls (stdout)"
raw_check "$WORK/hostile_ls.err" "ls (stderr)"
grep -qF -- "$HOSTILE_ESCAPED" "$WORK/hostile_ls.out" ||
  fail "ls does not show the hostile name escaped as $HOSTILE_ESCAPED: $(grep -aF "$HOSTILE_PREFIX" "$WORK/hostile_ls.out" | od -c | head -5)"
timeout 20 "$CTL" stat "$HOSTILE" >"$WORK/hostile_stat.out" 2>"$WORK/hostile_stat.err"
RC=$?
[[ "$RC" == 2 ]] || fail "stat of a hostile name exited $RC, expected 2 (an invalid name)"
raw_check "$WORK/hostile_stat.out" "stat (stdout)"
raw_check "$WORK/hostile_stat.err" "stat (stderr)"
timeout 20 "$CTL" rm "$HOSTILE" >"$WORK/hostile_rm.out" 2>"$WORK/hostile_rm.err"
RC=$?
[[ "$RC" == 2 ]] || fail "rm of a hostile name exited $RC, expected 2 (an invalid name)"
raw_check "$WORK/hostile_rm.out" "rm NAME (stdout)"
raw_check "$WORK/hostile_rm.err" "rm NAME (stderr)"
timeout 20 "$CTL" rm --stale --match="$HOSTILE_PREFIX" --min_age_s=0 >"$WORK/hostile_stale.out" 2>"$WORK/hostile_stale.err"
RC=$?
[[ "$RC" == 0 ]] || fail "rm --stale of the hostile file exited $RC: $(cat "$WORK/hostile_stale.err")"
raw_check "$WORK/hostile_stale.out" "rm --stale (stdout)"
raw_check "$WORK/hostile_stale.err" "rm --stale (stderr)"
grep -qF -- "removed /dev/shm/eshm_${HOSTILE_ESCAPED}" "$WORK/hostile_stale.out" ||
  fail "rm --stale does not report the hostile name escaped"
[[ ! -e "/dev/shm/eshm_${HOSTILE}" ]] || fail "rm --stale left the hostile file"
timeout 20 "$CTL" ls --json --sample_ms=0 >"$WORK/hostile_json.out" 2>/dev/null
raw_check "$WORK/hostile_json.out" "ls --json"

if ((FAILED)); then
  show_logs
  echo "eshmctl_test: FAILED"
  exit 1
fi
echo "eshmctl_test: all checks passed"
