#!/usr/bin/env bash
# bridge_test_peer, the checker every bridge test relies on, on its own: two peers joined directly by one
# channel (no bridge). It must
#   1. survive a kill -9 of one peer under traffic and its restart with its progress file (both streams
#      whole, at most one duplicate per direction: the message the killed peer held, the one it wrote);
#   2. repeat exactly one message for each of the two crash windows when a peer kills itself there;
#   3. fail on a gap (its writer's progress file skips messages 1 and 2);
#   4. fail on a message that goes back (its reader's progress file says 10 were received already);
#   5. fail on a duplicate beyond --max_duplicates.
# Run: bazel test //tools:bridge_test_peer_test
set -uo pipefail

find_binary() {
  local candidate
  for candidate in "${TEST_SRCDIR:-}/eshm/tools/$1" "bazel-bin/tools/$1"; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return 0; fi
  done
  echo "FAIL: $1 not found (bazel build //tools:$1)" >&2
  return 1
}
PEER="$(find_binary bridge_test_peer)" || exit 1

if [[ -n "${TEST_TMPDIR:-}" ]]; then WORK="$TEST_TMPDIR"; OWN_WORK=0; else WORK="$(mktemp -d)"; OWN_WORK=1; fi
TAG="peer_test_$$_${RANDOM}"
PIDS=()
FAILED=0
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  rm -f "/dev/shm/eshm_${TAG}_"*
  if ((OWN_WORK)); then rm -rf "$WORK"; fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  FAILED=1
}
start() {
  local log="$WORK/$1"
  shift
  "$@" >>"$log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}
received() { grep -o 'received=[0-9]*' "$WORK/$1" 2>/dev/null | tail -n 1 | cut -d= -f2; }
wait_for() {  # <seconds> <description> <command...>
  local end=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    if ((SECONDS >= end)); then
      fail "timed out waiting for $what"
      tail -n 5 "$WORK"/*.log
      exit 1
    fi
    sleep 0.05
  done
}
# progress <file> <received> <duplicates> <next_to_write>: a progress file as bridge_test_peer keeps it
# (three little-endian 64-bit words).
progress() {
  local file=$1 word byte i
  : >"$file"
  for word in "$2" "$3" "$4"; do
    for ((i = 0; i < 8; i++)); do
      byte=$(((word >> (8 * i)) & 255))
      printf "\\x$(printf %02x "$byte")" >>"$file"
    done
  done
}

# 1. kill -9 the slave peer under traffic; restart it from its progress file.
COUNT=6000
flags=(--count=$COUNT --interval_us=300 --max_duplicates=1 --timeout_s=60)
start p.log "$PEER" "${TAG}_1" --role=master --progress_file="$WORK/p1" "${flags[@]}"
P=$STARTED
start q.log "$PEER" "${TAG}_1" --role=slave --progress_file="$WORK/q1" "${flags[@]}"
Q=$STARTED
received_at_least() { local n; n=$(received "$1"); [[ -n "$n" && "$n" -ge "$2" ]]; }
wait_for 30 "the slave peer to receive 2000 messages" received_at_least q.log 2000
kill -KILL "$Q"
wait "$Q" 2>/dev/null
echo "killed the slave peer at received=$(received q.log)"
start q.log "$PEER" "${TAG}_1" --role=slave --progress_file="$WORK/q1" "${flags[@]}"
Q=$STARTED
wait "$P" || fail "the master peer exited with $?: $(tail -n 1 "$WORK/p.log")"
wait "$Q" || fail "the restarted slave peer exited with $?: $(tail -n 1 "$WORK/q.log")"
for log in p.log q.log; do
  grep -q "^done sent=$COUNT received=$COUNT duplicates=[01]\$" "$WORK/$log" || fail "$log: $(tail -n 1 "$WORK/$log")"
done
resumed=$(grep '^resuming' "$WORK/q.log" | tail -n 1)
[[ "$resumed" =~ received=([0-9]+).*next_to_write=([0-9]+) && ${BASH_REMATCH[1]} -gt 0 && ${BASH_REMATCH[2]} -gt 1 ]] ||
  fail "the slave peer did not resume mid-stream: $resumed"
echo "restart: $resumed; $(grep '^done' "$WORK/q.log"); master: $(grep '^done' "$WORK/p.log")"

# 2. The two windows of an application crash, hit exactly: the master kills itself after writing message
#    300 and before recording it (its successor writes 300 again), the slave after recording message 600
#    and before releasing it (the ring gives its successor 600 again). The slave must count exactly those
#    two duplicates, each right after its original; the master at most the two its own random kills can
#    make (it was killed mid-read, and the slave mid-write).
COUNT=2000
flags=(--count=$COUNT --interval_us=300 --max_duplicates=2 --timeout_s=60)
start crash_p.log "$PEER" "${TAG}_2" --role=master --progress_file="$WORK/p2" --crash_after_write=300 "${flags[@]}"
P=$STARTED
start crash_q.log "$PEER" "${TAG}_2" --role=slave --progress_file="$WORK/q2" --crash_after_record=600 "${flags[@]}"
Q=$STARTED
wait "$P" 2>/dev/null
code=$?
((code == 137)) || fail "the master peer did not kill itself after writing message 300 (exit $code)"
start crash_p.log "$PEER" "${TAG}_2" --role=master --progress_file="$WORK/p2" "${flags[@]}"
P=$STARTED
wait "$Q" 2>/dev/null
code=$?
((code == 137)) || fail "the slave peer did not kill itself after recording message 600 (exit $code)"
start crash_q.log "$PEER" "${TAG}_2" --role=slave --progress_file="$WORK/q2" "${flags[@]}"
Q=$STARTED
wait "$P" || fail "the restarted master peer exited with $?: $(tail -n 1 "$WORK/crash_p.log")"
wait "$Q" || fail "the restarted slave peer exited with $?: $(tail -n 1 "$WORK/crash_q.log")"
grep -q "^done sent=$COUNT received=$COUNT duplicates=2\$" "$WORK/crash_q.log" ||
  fail "slave: $(grep -E '^(done|FAIL)' "$WORK/crash_q.log" | tail -n 1)"
grep -q "^done sent=$COUNT received=$COUNT duplicates=[0-2]\$" "$WORK/crash_p.log" ||
  fail "master: $(grep -E '^(done|FAIL)' "$WORK/crash_p.log" | tail -n 1)"
echo "crash windows: slave $(grep '^done' "$WORK/crash_q.log"); master $(grep '^done' "$WORK/crash_p.log")"

# must_fail <case> <expected FAIL text> <master progress words> <slave progress words>: the slave reads
# what the master writes and must exit 1 with that text.
must_fail() {
  local name=$1 expected=$2
  local master_words=($3) slave_words=($4)
  progress "$WORK/${name}_m" "${master_words[@]}"
  progress "$WORK/${name}_s" "${slave_words[@]}"
  start "${name}_m.log" "$PEER" "${TAG}_${name}" --role=master --progress_file="$WORK/${name}_m" \
    --count=20 --max_duplicates=0 --timeout_s=5
  local m=$STARTED
  if timeout 20 "$PEER" "${TAG}_${name}" --role=slave --progress_file="$WORK/${name}_s" --count=20 \
    --max_duplicates=0 --timeout_s=5 >"$WORK/${name}_s.log" 2>&1; then
    fail "$name: the checker accepted it: $(tail -n 1 "$WORK/${name}_s.log")"
  fi
  grep -qF "FAIL: $expected" "$WORK/${name}_s.log" || fail "$name: $(grep FAIL "$WORK/${name}_s.log")"
  echo "$name: $(grep -m 1 FAIL "$WORK/${name}_s.log")"
  kill -KILL "$m" 2>/dev/null
  wait "$m" 2>/dev/null
}
# 3. The master's writer resumes at 3: the slave sees 3 after 0.
must_fail gap "message 3 after message 0" "0 0 3" "0 0 0"
# 4. The slave has received 10 already; the master writes from 1.
must_fail back "message 1 after message 10" "0 0 1" "10 0 0"
# 5. The slave has received 1; the master writes 1 again: a duplicate, and none is allowed.
must_fail duplicate "message 1 after message 1 (0 duplicates so far)" "0 0 1" "1 0 0"

if ((FAILED)); then exit 1; fi
echo "PASS"
