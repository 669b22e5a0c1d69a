#!/usr/bin/env bash
# eshm-bridge between two network namespaces joined by a veth pair: a link that leaves the process's own
# network stack, so that it can be cut, delayed, made lossy and throttled. Needs root and iproute2 (ip
# netns, tc), and where the kernel has no netem, iptables (tools/setup.sh installs it; the NFQUEUE rule
# feeds bridge_impair); tagged "manual" in Bazel. Run:
#   bazel build //tools:eshm-bridge //tools:bridge_test_peer //tools:bridge_impair && sudo tools/bridge_netns_test.sh
#
#   app A (master of NAME_A) <-> bridge A in namespace A, listening on ADDR_A with CURVE keys
#     <-> veth <-> bridge B in namespace B, connecting <-> app B (slave of NAME_B)
#
# The apps run in the root namespace (the namespaces share /dev/shm, not the network). Both apps write and
# read COUNT messages, each checked by sequence number, length, CRC-32C and content (bridge_test_peer, with
# a progress file so that a killed app resumes both streams when restarted).
# Under traffic, each step waiting for both apps to receive more messages before the next:
#   1. kill -9 bridge A, restart it;  2. kill -9 bridge B, restart it;
#   3. the veth link down for 3 s (app A must see its far application unresponsive), then up;
#   4. kill -9 app B, restart it (app A must see it dead, then alive); 5. kill -9 app A, restart it;
#   6. 1 % loss and 10 ms delay each way for IMPAIR_S seconds: netem where the kernel has it, otherwise
#      bridge_impair on an NFQUEUE in each namespace (iptables rule on the veth's output);
#   7. both ends of the veth throttled by tc tbf to 2 Mbit/s with 5 ms of queue (packets beyond it are
#      dropped) for 5 s.
# Both apps must receive everything, in order, with at most 4 duplicates per direction (one per bridge
# kill, and per app kill one the app was reading and one it was writing: docs/bridge.md section 3). Then
# kill -9 of app B must show as kDead in app A, and of app A as kDead in a restarted app B. Every wait has a
# deadline; the EXIT trap kills what it started, deletes the namespaces (which deletes the veth and the
# rules) and removes the segments and state files.
set -uo pipefail

if [[ $(id -u) -ne 0 ]]; then echo "FAIL: needs root (ip netns, tc)"; exit 1; fi
command -v ip >/dev/null && command -v tc >/dev/null || { echo "FAIL: needs iproute2 (ip, tc)"; exit 1; }

find_binary() {
  local candidate
  for candidate in "${TEST_SRCDIR:-}/eshm/tools/$1" "bazel-bin/tools/$1"; do
    if [[ -x "$candidate" ]]; then realpath "$candidate"; return 0; fi
  done
  echo "FAIL: $1 not found (bazel build //tools:$1)" >&2
  return 1
}
BRIDGE="$(find_binary eshm-bridge)" || exit 1
PEER="$(find_binary bridge_test_peer)" || exit 1
IMPAIR="$(find_binary bridge_impair)" || exit 1

WORK="$(mktemp -d)"
TAG="bridge_netns_$$_${RANDOM}"
NAME_A="${TAG}_a"
NAME_B="${TAG}_b"
NS_A="eshm_${TAG}_nsa"
NS_B="eshm_${TAG}_nsb"
VETH_A="ebA$$"
VETH_B="ebB$$"
OCTET=$(($$ % 200 + 20))
ADDR_A="10.251.${OCTET}.1"
ADDR_B="10.251.${OCTET}.2"
PORT=7600
COUNT=100000
IMPAIR_S=8
PIDS=()
FAILED=0

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  ip netns del "$NS_A" 2>/dev/null
  ip netns del "$NS_B" 2>/dev/null
  ip link del "$VETH_A" 2>/dev/null
  rm -f "/dev/shm/eshm_${NAME_A}" "/dev/shm/eshm_${NAME_B}"
  rm -rf "$WORK"
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
    tail -n 20 "$f"
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
    if grep -qE '^FAIL' "$WORK"/app_*.log 2>/dev/null; then
      fail "an app failed while waiting for $what"
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

received() { grep -o 'received=[0-9]*' "$WORK/$1" 2>/dev/null | tail -n 1 | cut -d= -f2; }
received_at_least() { local n; n=$(received "$1"); [[ -n "$n" && "$n" -ge "$2" ]]; }
both_progress() {  # both apps received at least $1 more than at the last mark
  received_at_least app_a.log $((MARK_A + $1)) && received_at_least app_b.log $((MARK_B + $1))
}
mark() { MARK_A=$(received app_a.log); MARK_A=${MARK_A:-0}; MARK_B=$(received app_b.log); MARK_B=${MARK_B:-0}; }
last_state_line() { grep '^peer_state=' "$WORK/$1" 2>/dev/null | tail -n 1; }
state_is() { [[ "$(last_state_line "$1")" == "peer_state=$2 "* ]]; }
ever_state() { grep -q "^peer_state=$2 " "$WORK/$1"; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# The two namespaces and the veth pair between them.
ip netns add "$NS_A" && ip netns add "$NS_B" || { fail "ip netns add"; exit 1; }
ip link add "$VETH_A" type veth peer name "$VETH_B" || { fail "ip link add veth"; exit 1; }
ip link set "$VETH_A" netns "$NS_A" && ip link set "$VETH_B" netns "$NS_B" || { fail "moving the veth ends"; exit 1; }
ip -n "$NS_A" addr add "$ADDR_A/30" dev "$VETH_A" && ip -n "$NS_B" addr add "$ADDR_B/30" dev "$VETH_B" &&
  ip -n "$NS_A" link set "$VETH_A" up && ip -n "$NS_B" link set "$VETH_B" up &&
  ip -n "$NS_A" link set lo up && ip -n "$NS_B" link set lo up || { fail "configuring the veth"; exit 1; }

"$BRIDGE" --generate_curve_keypair="$WORK/server" >/dev/null && "$BRIDGE" --generate_curve_keypair="$WORK/client" >/dev/null ||
  { fail "generating CURVE keys"; exit 1; }

bridge_flags=(--window_bytes=1048576 --heartbeat_ms=50 --link_timeout_ms=1000 --retransmit_ms=300)
start_bridge_a() {
  start bridge_a.log ip netns exec "$NS_A" "$BRIDGE" "$NAME_A" --role=slave --listen "tcp://$ADDR_A:$PORT" \
    --state_file="$WORK/state_a" --curve_secret_key_file="$WORK/server.secret" \
    --curve_allowed_clients="$WORK/client.public" "${bridge_flags[@]}"
  BRIDGE_A=$STARTED
}
start_bridge_b() {
  start bridge_b.log ip netns exec "$NS_B" "$BRIDGE" "$NAME_B" --role=master --connect "tcp://$ADDR_A:$PORT" \
    --state_file="$WORK/state_b" --curve_secret_key_file="$WORK/client.secret" \
    --curve_server_key_file="$WORK/server.public" --ring_bytes=65536 "${bridge_flags[@]}"
  BRIDGE_B=$STARTED
}

peer_flags=(--count=$COUNT --interval_us=300 --max_duplicates=4 --timeout_s=300 --ring_bytes=65536
  --report_peer_state --linger_s=120)
start_app_a() {
  start app_a.log "$PEER" "$NAME_A" --role=master --progress_file="$WORK/progress_a" "${peer_flags[@]}"
  APP_A=$STARTED
}
start_app_b() {
  start app_b.log "$PEER" "$NAME_B" --role=slave --progress_file="$WORK/progress_b" "${peer_flags[@]}"
  APP_B=$STARTED
}
still_flowing() {
  [[ "$(received app_b.log)" -lt $COUNT && "$(received app_a.log)" -lt $COUNT ]] ||
    fail "the traffic ended before $1: the test proves less than it says"
}
start_app_a
start_bridge_a
start_bridge_b
start_app_b
mark
wait_for 60 "the first 2000 messages each way" both_progress 2000
echo "traffic flows between the namespaces"

# 1, 2. kill -9 each bridge under traffic and restart it.
for side in A B; do
  mark
  pid_var="BRIDGE_$side"
  kill -KILL "${!pid_var}"
  wait "${!pid_var}" 2>/dev/null
  echo "killed bridge $side at app A received=$(received app_a.log), app B received=$(received app_b.log)"
  if [[ $side == A ]]; then start_bridge_a; else start_bridge_b; fi
  wait_for 60 "2000 more messages each way after the restart of bridge $side" both_progress 2000
done

# 3. The link down for 3 s.
mark
t0=$(date +%s%N)
ip -n "$NS_A" link set "$VETH_A" down
wait_for 10 "app A to see its far application unresponsive with the link down" state_is app_a.log unresponsive
echo "link down: app A's peer_state unresponsive after $(ms_since "$t0") ms"
sleep $((3 - ($(ms_since "$t0") / 1000) > 0 ? 3 - ($(ms_since "$t0") / 1000) : 0))
ip -n "$NS_A" link set "$VETH_A" up
t0=$(date +%s%N)
wait_for 30 "app A to see its far application alive after the link came back" state_is app_a.log alive
echo "link up: app A's peer_state alive after $(ms_since "$t0") ms"
wait_for 60 "2000 more messages each way after the link came back" both_progress 2000

# 4, 5. kill -9 each application under traffic and restart it: it resumes from its progress file, and the
# other application sees it dead and then alive.
for side in B A; do
  other=$(tr 'AB' 'ab' <<<"$([[ $side == A ]] && echo B || echo A)")
  mark
  pid_var="APP_$side"
  t0=$(date +%s%N)
  kill -KILL "${!pid_var}"
  wait "${!pid_var}" 2>/dev/null
  echo "killed app $side at app A received=$(received app_a.log), app B received=$(received app_b.log)"
  wait_for 10 "app ${other^^} to see the killed app $side dead" state_is "app_$other.log" dead
  echo "kill -9 app $side under traffic: app ${other^^}'s peer_state dead after $(ms_since "$t0") ms"
  t0=$(date +%s%N)
  if [[ $side == A ]]; then start_app_a; else start_app_b; fi
  wait_for 10 "app ${other^^} to see the restarted app $side alive" state_is "app_$other.log" alive
  echo "app $side restarted: app ${other^^}'s peer_state alive after $(ms_since "$t0") ms; $(grep '^resuming' "$WORK/app_$(tr 'AB' 'ab' <<<"$side").log" | tail -n 1)"
  wait_for 60 "2000 more messages each way after the restart of app $side" both_progress 2000
done
still_flowing "the application kills were done"

# 6. 1 % loss and 10 ms delay each way.
mark
IMPAIRS=()
if ip netns exec "$NS_A" tc qdisc add dev "$VETH_A" root netem delay 10ms loss 1% 2>/dev/null; then
  ip netns exec "$NS_B" tc qdisc add dev "$VETH_B" root netem delay 10ms loss 1% || { fail "netem on $VETH_B"; exit 1; }
  NETEM=1
  echo "impaired: netem 10 ms delay, 1 % loss, each way"
else
  NETEM=0
  command -v iptables >/dev/null || { fail "no netem in this kernel and no iptables for bridge_impair (tools/setup.sh)"; exit 1; }
  for end in "$NS_A $VETH_A" "$NS_B $VETH_B"; do
    read -r ns dev <<<"$end"
    ip netns exec "$ns" iptables -A OUTPUT -o "$dev" -j NFQUEUE --queue-num 7 --queue-bypass ||
      { fail "iptables NFQUEUE rule on $dev"; exit 1; }
    start "impair_$dev.log" ip netns exec "$ns" "$IMPAIR" --queue=7 --delay_ms=10 --loss_percent=1
    IMPAIRS+=("$STARTED")
  done
  echo "impaired: bridge_impair 10 ms delay, 1 % loss, each way (no netem in this kernel)"
fi
sleep "$IMPAIR_S"
if ((NETEM)); then
  for end in "$NS_A $VETH_A" "$NS_B $VETH_B"; do
    read -r ns dev <<<"$end"
    ip netns exec "$ns" tc -s qdisc show dev "$dev" | tr '\n' ' ' | sed 's/  */ /g'
    echo
    ip netns exec "$ns" tc qdisc del dev "$dev" root
  done
else
  for pid in "${IMPAIRS[@]}"; do kill -TERM "$pid"; wait "$pid" || fail "bridge_impair exited with $?"; done
  for end in "$NS_A $VETH_A" "$NS_B $VETH_B"; do
    read -r ns dev <<<"$end"
    ip netns exec "$ns" iptables -D OUTPUT -o "$dev" -j NFQUEUE --queue-num 7 --queue-bypass
  done
  cat "$WORK"/impair_*.log | grep 'packets='
fi
still_flowing "the loss and delay ended"
echo "during the loss and delay (${IMPAIR_S} s): app A received $(( $(received app_a.log) - MARK_A )), app B $(( $(received app_b.log) - MARK_B )) more"
wait_for 60 "2000 more messages each way after the loss and delay" both_progress 2000

# 7. Throttled for 5 s.
mark
for end in "$NS_A $VETH_A" "$NS_B $VETH_B"; do
  read -r ns dev <<<"$end"
  ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate 2mbit burst 16kb latency 5ms ||
    { fail "tc qdisc add on $dev"; exit 1; }
done
echo "throttled: tbf 2 Mbit/s, 5 ms queue"
sleep 5
for end in "$NS_A $VETH_A" "$NS_B $VETH_B"; do
  read -r ns dev <<<"$end"
  ip netns exec "$ns" tc -s qdisc show dev "$dev" | tr '\n' ' ' | sed 's/  */ /g'
  echo
  ip netns exec "$ns" tc qdisc del dev "$dev" root
done
still_flowing "the throttling did"
wait_for 60 "messages to flow again after the throttling" both_progress 500
echo "during and after the throttling: app A received $(( $(received app_a.log) - MARK_A )), app B $(( $(received app_b.log) - MARK_B )) more"

# All of it, checked.
both_done() { grep -q '^done' "$WORK/app_a.log" && grep -q '^done' "$WORK/app_b.log"; }
wait_for 180 "both apps to finish" both_done
for app in a b; do
  grep -q "^done sent=$COUNT received=$COUNT duplicates=[0-4]\$" "$WORK/app_$app.log" ||
    fail "app $app: $(grep -E '^(done|FAIL)' "$WORK/app_$app.log" | tail -n 2)"
  echo "app $app: $(grep '^done' "$WORK/app_$app.log")"
done

# Far liveness across the namespaces: kill -9 of either application.
t0=$(date +%s%N)
kill -KILL "$APP_B"
wait "$APP_B" 2>/dev/null
wait_for 10 "app A to see the killed app B dead" state_is app_a.log dead
echo "kill -9 app B: app A's peer_state dead after $(ms_since "$t0") ms"
start app_b2.log "$PEER" "$NAME_B" --role=slave --count=0 --ring_bytes=65536 --report_peer_state --linger_s=60
APP_B2=$STARTED
wait_for 10 "app A to see the restarted app B alive" state_is app_a.log alive
t0=$(date +%s%N)
kill -KILL "$APP_A"
wait "$APP_A" 2>/dev/null
wait_for 10 "the restarted app B to see the killed app A dead" state_is app_b2.log dead
echo "kill -9 app A: app B's peer_state dead after $(ms_since "$t0") ms"
kill -TERM "$APP_B2"
wait "$APP_B2"

kill -TERM "$BRIDGE_A" "$BRIDGE_B"
wait "$BRIDGE_A" || fail "bridge A exited with $?"
wait "$BRIDGE_B" || fail "bridge B exited with $?"
grep -h 'stopped:' "$WORK"/bridge_*.log
for log in bridge_a.log bridge_b.log; do
  grep -q 'invalid_frames=0$' <(grep 'stopped:' "$WORK/$log" | tail -n 1) ||
    fail "$log: $(grep 'stopped:' "$WORK/$log" | tail -n 1)"
done

if ((FAILED)); then
  show_logs
  exit 1
fi
echo "PASS"
