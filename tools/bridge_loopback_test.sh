#!/usr/bin/env bash
# eshm-bridge on one machine, over loopback: app A (master of NAME_A) <-> bridge (slave of NAME_A,
# listening on tcp://127.0.0.1:<free port>) <-> bridge (master of NAME_B, connecting) <-> app B (slave of
# NAME_B). Both apps write COUNT messages and read COUNT, each one checked by sequence number, length,
# CRC-32C and content (bridge_test_peer). Under traffic:
#   1. kill -9 the listening bridge and restart it on the same port and state file;
#   2. kill -9 the connecting bridge and restart it likewise;
#   3. kill -9 app B and restart it with its progress file (it resumes both of its streams);
#   4. kill -9 app A and restart it likewise.
# Both apps must receive everything, in order, with at most 4 duplicates per direction, each right after
# its original: one bridge kill can duplicate at most one message per direction, and one application kill
# one message it was reading and one it was writing (docs/bridge.md, section 3). Both bridges then stop
# cleanly on SIGTERM having refused no frame. Then the two windows of an application crash are hit
# exactly (an app kills itself there): each repeats one message, right after its original.
# Then the far application's liveness as each app's peer_state() shows it: kill -9 of either app is seen as
# kDead by the other, a restart as kAlive with one more reconnection, a link down (a bridge stopped) as
# kUnresponsive and back.
# Then CURVE: a wrong server key gets no link, a client key not in the listening side's allow-list gets no
# link (and is logged), the listed client carries checked traffic; a listening CURVE bridge without an
# allow-list, or with a missing, empty or malformed one, is refused before it creates anything, as is a
# plaintext bridge on a non-loopback address.
# Every wait has a deadline and the EXIT trap kills leftovers and removes our segments and state files.
# Run: bazel test //tools:bridge_loopback_test
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
# Under --config=tsan: libzmq is not instrumented (see the file).
for candidate in "${TEST_SRCDIR:-}/eshm/tools/bridge/tsan_suppressions.txt" "tools/bridge/tsan_suppressions.txt"; do
  if [[ -f "$candidate" ]]; then export TSAN_OPTIONS="${TSAN_OPTIONS:-}:suppressions=$(realpath "$candidate")"; break; fi
done

if [[ -n "${TEST_TMPDIR:-}" ]]; then WORK="$TEST_TMPDIR"; OWN_WORK=0; else WORK="$(mktemp -d)"; OWN_WORK=1; fi
TAG="bridge_test_$$_${RANDOM}"
NAME_A="${TAG}_a"
NAME_B="${TAG}_b"
COUNT=20000
PIDS=()
FAILED=0

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  rm -f "/dev/shm/eshm_${TAG}_"[abcdefghi]
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

# start <log> <command...>: runs in the background, appending to WORK/<log>; the pid is in $STARTED.
start() {
  local log="$WORK/$1"
  shift
  "$@" >>"$log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

# wait_for <seconds> <description> <command...>: polls the command until it succeeds; gives up at once if
# an app reported a failure (or a sanitizer an error).
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local end=$((SECONDS + seconds))
  until "$@"; do
    if grep -qE '^FAIL|runtime error|ERROR: (Address|Undefined)Sanitizer|WARNING: ThreadSanitizer' "$WORK"/app_*.log "$WORK"/bridge_*.log 2>/dev/null; then
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

# The number of messages an app has received so far, from its progress lines.
received() { grep -o 'received=[0-9]*' "$WORK/$1" 2>/dev/null | tail -n 1 | cut -d= -f2; }
received_at_least() { local n; n=$(received "$1"); [[ -n "$n" && "$n" -ge "$2" ]]; }

bridge_flags=(--window_bytes=262144 --heartbeat_ms=50 --link_timeout_ms=1000 --retransmit_ms=300)
start_listening_bridge() {
  start bridge_a.log "$BRIDGE" "$NAME_A" --role=slave --listen "$1" --state_file="$WORK/state_a" "${bridge_flags[@]}"
  BRIDGE_A=$STARTED
}
start_connecting_bridge() {
  start bridge_b.log "$BRIDGE" "$NAME_B" --role=master --connect "$ENDPOINT" --state_file="$WORK/state_b" \
    --ring_bytes=65536 "${bridge_flags[@]}"
  BRIDGE_B=$STARTED
}

# Paced so that all four kills land mid-traffic (about 5 s of it) even on a fast machine.
peer_flags=(--count=$COUNT --interval_us=200 --max_duplicates=4 --timeout_s=90 --ring_bytes=65536)
start_app_a() {
  start app_a.log "$PEER" "$NAME_A" --role=master --progress_file="$WORK/progress_a" "${peer_flags[@]}"
  APP_A=$STARTED
}
start_app_b() {
  start app_b.log "$PEER" "$NAME_B" --role=slave --progress_file="$WORK/progress_b" "${peer_flags[@]}"
  APP_B=$STARTED
}
start_app_a
start_listening_bridge "tcp://127.0.0.1:*"
wait_for 10 "the listening bridge's endpoint" grep -qs 'link endpoint tcp://' "$WORK/bridge_a.log"
ENDPOINT=$(grep -o 'link endpoint tcp://[^ ]*' "$WORK/bridge_a.log" | head -n 1 | cut -d' ' -f3)
start_connecting_bridge
start_app_b

# 1. kill -9 the listening bridge under traffic, restart it where it was.
wait_for 30 "app B to receive 3000 messages" received_at_least app_b.log 3000
kill -KILL "$BRIDGE_A"
wait "$BRIDGE_A" 2>/dev/null
echo "killed the listening bridge at app B received=$(received app_b.log), app A received=$(received app_a.log)"
start_listening_bridge "$ENDPOINT"

# 2. kill -9 the connecting bridge under traffic, restart it.
before=$(received app_b.log)
wait_for 30 "app B to receive 3000 more messages" received_at_least app_b.log $((before + 3000))
kill -KILL "$BRIDGE_B"
wait "$BRIDGE_B" 2>/dev/null
echo "killed the connecting bridge at app B received=$(received app_b.log), app A received=$(received app_a.log)"
start_connecting_bridge

# 3. kill -9 app B (the slave side) under traffic and restart it: it resumes from its progress file.
before=$(received app_a.log)
wait_for 30 "app A to receive 3000 more messages" received_at_least app_a.log $((before + 3000))
kill -KILL "$APP_B"
wait "$APP_B" 2>/dev/null
echo "killed app B at app B received=$(received app_b.log), app A received=$(received app_a.log)"
start_app_b

# 4. kill -9 app A (the master side, which created its channel) likewise.
before=$(received app_b.log)
wait_for 30 "app B to receive 3000 more messages" received_at_least app_b.log $((before + 3000))
kill -KILL "$APP_A"
wait "$APP_A" 2>/dev/null
echo "killed app A at app B received=$(received app_b.log), app A received=$(received app_a.log)"
for log in app_a.log app_b.log; do
  [[ "$(received $log)" -lt $COUNT ]] || fail "$log: the traffic ended before the last kill: the test proves less than it says"
done
start_app_a

# Both apps end by themselves once they received everything.
both_done() { grep -q '^done' "$WORK/app_a.log" && grep -q '^done' "$WORK/app_b.log"; }
wait_for 45 "both apps to finish" both_done
for app in A B; do
  pid_var="APP_$app"
  wait "${!pid_var}"
  code=$?
  log="$WORK/app_$(tr 'AB' 'ab' <<<"$app").log"
  ((code == 0)) || fail "app $app exited with $code"
  grep -q "done sent=$COUNT received=$COUNT duplicates=[0-4]\$" "$log" || fail "app $app: $(tail -n 1 "$log")"
  # The restarted app resumed mid-stream, in both directions.
  resumed=$(grep '^resuming' "$log" | tail -n 1)
  [[ "$resumed" =~ received=([0-9]+).*next_to_write=([0-9]+) && ${BASH_REMATCH[1]} -gt 0 && ${BASH_REMATCH[2]} -gt 1 ]] ||
    fail "app $app was not restarted mid-stream: $resumed"
  echo "app $app: $resumed; $(grep '^done' "$log")"
done

# The bridges stop cleanly and never refused a frame from each other.
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

# The two windows of an application crash, hit exactly, through the bridges: app H kills itself after
# writing message 300 and before recording it (its successor writes 300 again), app I after recording
# message 600 and before releasing it (its ring gives its successor 600 again). App I must count exactly
# those two duplicates; app H at most the two its own kill and app I's can make at random points.
NAME_H="${TAG}_h"
NAME_I="${TAG}_i"
crash_flags=(--count=2000 --interval_us=300 --max_duplicates=2 --timeout_s=60 --ring_bytes=65536)
start app_h.log "$PEER" "$NAME_H" --role=master --progress_file="$WORK/progress_h" --crash_after_write=300 "${crash_flags[@]}"
APP_H=$STARTED
start crash_h.log "$BRIDGE" "$NAME_H" --role=slave --listen "tcp://127.0.0.1:*" --state_file="$WORK/state_h" "${bridge_flags[@]}"
CRASH_H=$STARTED
wait_for 10 "the crash test's bridge endpoint" grep -qs 'link endpoint tcp://' "$WORK/crash_h.log"
ENDPOINT=$(grep -o 'link endpoint tcp://[^ ]*' "$WORK/crash_h.log" | head -n 1 | cut -d' ' -f3)
start crash_i.log "$BRIDGE" "$NAME_I" --role=master --connect "$ENDPOINT" --state_file="$WORK/state_i" \
  --ring_bytes=65536 "${bridge_flags[@]}"
CRASH_I=$STARTED
start app_i.log "$PEER" "$NAME_I" --role=slave --progress_file="$WORK/progress_i" --crash_after_record=600 "${crash_flags[@]}"
APP_I=$STARTED
wait "$APP_H" 2>/dev/null
code=$?
((code == 137)) || fail "app H did not kill itself after writing message 300 (exit $code)"
start app_h.log "$PEER" "$NAME_H" --role=master --progress_file="$WORK/progress_h" "${crash_flags[@]}"
APP_H=$STARTED
wait "$APP_I" 2>/dev/null
code=$?
((code == 137)) || fail "app I did not kill itself after recording message 600 (exit $code)"
start app_i.log "$PEER" "$NAME_I" --role=slave --progress_file="$WORK/progress_i" "${crash_flags[@]}"
APP_I=$STARTED
wait "$APP_H" || fail "the restarted app H exited with $?"
wait "$APP_I" || fail "the restarted app I exited with $?"
grep -q '^done sent=2000 received=2000 duplicates=2$' "$WORK/app_i.log" ||
  fail "app I: $(grep -E '^(done|FAIL)' "$WORK/app_i.log" | tail -n 1)"
grep -q '^done sent=2000 received=2000 duplicates=[0-2]$' "$WORK/app_h.log" ||
  fail "app H: $(grep -E '^(done|FAIL)' "$WORK/app_h.log" | tail -n 1)"
echo "crash windows through the bridges: app I $(grep '^done' "$WORK/app_i.log"); app H $(grep '^done' "$WORK/app_h.log")"
kill -TERM "$CRASH_H" "$CRASH_I"
wait "$CRASH_H" || fail "the crash test's listening bridge exited with $?"
wait "$CRASH_I" || fail "the crash test's connecting bridge exited with $?"
rm -f "/dev/shm/eshm_${NAME_H}" "/dev/shm/eshm_${NAME_I}"

# 3. CURVE: a connecting bridge with the wrong server key never gets a link (and delivers nothing), nor does
#    one whose client key is not in the allow-list; one with the right, listed keys carries 2000 checked
#    messages each way.
"$BRIDGE" --generate_curve_keypair="$WORK/server" >/dev/null || fail "cannot generate the server key pair"
"$BRIDGE" --generate_curve_keypair="$WORK/client" >/dev/null || fail "cannot generate the client key pair"
"$BRIDGE" --generate_curve_keypair="$WORK/stranger" >/dev/null || fail "cannot generate the stranger's key pair"
# The listening bridge's allow-list: the client's public key, with a comment and a blank line around it.
printf '# bridges allowed to connect\n\n%s\n' "$(cat "$WORK/client.public")" >"$WORK/allowed_clients"
NAME_C="${TAG}_c"
NAME_D="${TAG}_d"
rm -f "$WORK"/state_c "$WORK"/state_d
start app_c.log "$PEER" "$NAME_C" --role=master --count=2000 --timeout_s=30 --ring_bytes=65536
start curve_c.log "$BRIDGE" "$NAME_C" --role=slave --listen "tcp://127.0.0.1:*" --state_file="$WORK/state_c" \
  --curve_secret_key_file="$WORK/server.secret" --curve_allowed_clients="$WORK/allowed_clients" "${bridge_flags[@]}"
CURVE_C=$STARTED
wait_for 10 "the CURVE bridge's endpoint" grep -qs 'link endpoint tcp://' "$WORK/curve_c.log"
ENDPOINT=$(grep -o 'link endpoint tcp://[^ ]*' "$WORK/curve_c.log" | head -n 1 | cut -d' ' -f3)
start app_d.log "$PEER" "$NAME_D" --role=slave --count=2000 --timeout_s=30 --ring_bytes=65536
start curve_wrong.log "$BRIDGE" "$NAME_D" --role=master --connect "$ENDPOINT" --state_file="$WORK/state_d" \
  --curve_secret_key_file="$WORK/client.secret" --curve_server_key_file="$WORK/client.public" --ring_bytes=65536 \
  "${bridge_flags[@]}"
WRONG=$STARTED
sleep 1.5
if grep -q 'link up' "$WORK/curve_wrong.log" "$WORK/curve_c.log"; then fail "a bridge with the wrong server key got a link"; fi
grep -q 'received=' "$WORK/app_d.log" && fail "messages crossed a link with the wrong server key"
kill -TERM "$WRONG"
wait "$WRONG"
# A client with a valid key pair and the right server key, but not in the allow-list: refused by the
# listening bridge's ZAP handler, which logs it; no link, nothing delivered.
start curve_stranger.log "$BRIDGE" "$NAME_D" --role=master --connect "$ENDPOINT" --state_file="$WORK/state_d" \
  --curve_secret_key_file="$WORK/stranger.secret" --curve_server_key_file="$WORK/server.public" --ring_bytes=65536 \
  "${bridge_flags[@]}"
STRANGER=$STARTED
wait_for 10 "the listening CURVE bridge to log the refused client" \
  grep -qsF "with CURVE client key $(cat "$WORK/stranger.public"): not in --curve_allowed_clients" "$WORK/curve_c.log"
echo "CURVE: $(grep -m 1 -o 'refused a bridge connecting.*' "$WORK/curve_c.log")"
sleep 1
if grep -q 'link up' "$WORK/curve_stranger.log" "$WORK/curve_c.log"; then fail "a client key not in the allow-list got a link"; fi
grep -q 'received=' "$WORK/app_d.log" && fail "messages crossed a link with a client key not in the allow-list"
grep -q 'received=' "$WORK/app_c.log" && fail "messages crossed from a client key not in the allow-list"
kill -TERM "$STRANGER"
wait "$STRANGER"
start curve_d.log "$BRIDGE" "$NAME_D" --role=master --connect "$ENDPOINT" --state_file="$WORK/state_d" \
  --curve_secret_key_file="$WORK/client.secret" --curve_server_key_file="$WORK/server.public" --ring_bytes=65536 \
  "${bridge_flags[@]}"
CURVE_D=$STARTED
curve_done() { grep -q '^done' "$WORK/app_c.log" && grep -q '^done' "$WORK/app_d.log"; }
wait_for 30 "both CURVE apps to finish" curve_done
for log in app_c.log app_d.log; do
  grep -q "^done sent=2000 received=2000 duplicates=0\$" "$WORK/$log" || fail "$log: $(tail -n 1 "$WORK/$log")"
done
kill -TERM "$CURVE_C" "$CURVE_D"
wait "$CURVE_C" || fail "the listening CURVE bridge exited with $?"
wait "$CURVE_D" || fail "the connecting CURVE bridge exited with $?"
rm -f "/dev/shm/eshm_${NAME_C}" "/dev/shm/eshm_${NAME_D}"

# CURVE flags refused at start, before the bridge creates its state file or channel: a listening bridge
# without an allow-list, and a missing, an empty (comments only) and a malformed allow-list.
printf '# nobody yet\n\n' >"$WORK/allowed_empty"
printf '%s\nnot-a-key\n' "$(cat "$WORK/client.public")" >"$WORK/allowed_bad"
curve_refusal() {  # <expected text> <flags...>
  local expected=$1
  shift
  rm -f "$WORK/state_e"
  if timeout 10 "$BRIDGE" "${TAG}_e" --role=master --listen "tcp://127.0.0.1:*" --state_file="$WORK/state_e" \
    --curve_secret_key_file="$WORK/server.secret" "$@" >"$WORK/curve_refused.log" 2>&1; then
    fail "a listening CURVE bridge started with $*"
  fi
  grep -qF -- "$expected" "$WORK/curve_refused.log" || fail "CURVE with $*: $(cat "$WORK/curve_refused.log")"
  [[ ! -e "/dev/shm/eshm_${TAG}_e" && ! -e "$WORK/state_e" ]] || fail "a bridge refused for $* created files"
}
curve_refusal "needs --curve_allowed_clients=FILE"
curve_refusal "cannot read the CURVE allowed-clients file $WORK/missing" --curve_allowed_clients="$WORK/missing"
curve_refusal "the CURVE allowed-clients file $WORK/allowed_empty holds no key" \
  --curve_allowed_clients="$WORK/allowed_empty"
curve_refusal "line 2 of the CURVE allowed-clients file $WORK/allowed_bad is not a public key" \
  --curve_allowed_clients="$WORK/allowed_bad"

# 5. Far liveness. App F (master of F) <-> bridges <-> app G (slave of G); each app reports its peer_state.
NAME_F="${TAG}_f"
NAME_G="${TAG}_g"
live_flags=(--timeout_s=30 --ring_bytes=65536 --report_peer_state --linger_s=60)
start app_f.log "$PEER" "$NAME_F" --role=master --count=100 "${live_flags[@]}"
APP_F=$STARTED
start live_f.log "$BRIDGE" "$NAME_F" --role=slave --listen "tcp://127.0.0.1:*" --state_file="$WORK/state_f" \
  "${bridge_flags[@]}"
LIVE_F=$STARTED
wait_for 10 "the far-liveness bridge's endpoint" grep -qs 'link endpoint tcp://' "$WORK/live_f.log"
ENDPOINT=$(grep -o 'link endpoint tcp://[^ ]*' "$WORK/live_f.log" | head -n 1 | cut -d' ' -f3)
start live_g.log "$BRIDGE" "$NAME_G" --role=master --connect "$ENDPOINT" --state_file="$WORK/state_g" \
  --ring_bytes=65536 "${bridge_flags[@]}"
LIVE_G=$STARTED
start app_g.log "$PEER" "$NAME_G" --role=slave --count=100 "${live_flags[@]}"
APP_G=$STARTED
# The last state an app reported, and its line.
last_state_line() { grep '^peer_state=' "$WORK/$1" 2>/dev/null | tail -n 1; }
state_is() { [[ "$(last_state_line "$1")" == "peer_state=$2 "* ]]; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
live_done() { grep -q '^done' "$WORK/app_f.log" && grep -q '^done' "$WORK/app_g.log"; }
wait_for 30 "the far-liveness apps' traffic" live_done
wait_for 10 "app F to see app G alive" state_is app_f.log alive
wait_for 10 "app G to see app F alive" state_is app_g.log alive
reconnects_before=$(last_state_line app_f.log | grep -o 'reconnects=[0-9]*' | cut -d= -f2)

t0=$(date +%s%N)
kill -KILL "$APP_G"
wait "$APP_G" 2>/dev/null
wait_for 10 "app F to see the killed app G dead" state_is app_f.log dead
echo "far liveness: kill -9 of app G -> app F's peer_state dead after $(ms_since "$t0") ms"

t0=$(date +%s%N)
start app_g2.log "$PEER" "$NAME_G" --role=slave --count=0 "${live_flags[@]}"
APP_G2=$STARTED
wait_for 10 "app F to see the restarted app G alive" state_is app_f.log alive
echo "far liveness: app G restarted -> app F's peer_state alive after $(ms_since "$t0") ms: $(last_state_line app_f.log)"
[[ "$(last_state_line app_f.log)" == "peer_state=alive reconnects=$((reconnects_before + 1))" ]] ||
  fail "app F did not count the far restart once: $(last_state_line app_f.log) (before: reconnects=$reconnects_before)"

# The link down: bridge G frozen. Bridge F says unknown after --link_timeout_ms, which app F sees as kUnresponsive.
t0=$(date +%s%N)
kill -STOP "$LIVE_G"
wait_for 10 "app F to see the far side unresponsive with the link down" state_is app_f.log unresponsive
echo "far liveness: bridge G stopped -> app F's peer_state unresponsive after $(ms_since "$t0") ms (--link_timeout_ms=1000)"
kill -CONT "$LIVE_G"
wait_for 10 "app F to see app G alive once the link is back" state_is app_f.log alive
[[ "$(last_state_line app_f.log)" == "peer_state=alive reconnects=$((reconnects_before + 1))" ]] ||
  fail "a link outage counted as a reconnection: $(last_state_line app_f.log)"

t0=$(date +%s%N)
kill -KILL "$APP_F"
wait "$APP_F" 2>/dev/null
wait_for 10 "the restarted app G to see the killed app F dead" state_is app_g2.log dead
echo "far liveness: kill -9 of app F -> app G's peer_state dead after $(ms_since "$t0") ms"
kill -TERM "$APP_G2" "$LIVE_F" "$LIVE_G"
wait "$APP_G2" || fail "the restarted app G exited with $?"
wait "$LIVE_F" || fail "bridge F exited with $?"
wait "$LIVE_G" || fail "bridge G exited with $?"
rm -f "/dev/shm/eshm_${NAME_F}" "/dev/shm/eshm_${NAME_G}"

# 4. Plaintext off the host is refused before anything is created.
if "$BRIDGE" "${TAG}_e" --role=master --listen tcp://192.0.2.1:5555 --state_file="$WORK/state_e" \
  >"$WORK/insecure.log" 2>&1; then
  fail "a plaintext bridge listened on a non-loopback address"
fi
grep -q -- '--allow_insecure_remote' "$WORK/insecure.log" || fail "insecure address: $(cat "$WORK/insecure.log")"
[[ ! -e "/dev/shm/eshm_${TAG}_e" && ! -e "$WORK/state_e" ]] || fail "a refused bridge created files"

if ((FAILED)); then
  show_logs
  exit 1
fi
echo "PASS"
