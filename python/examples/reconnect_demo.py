#!/usr/bin/env python3
"""Automatic reconnection: a slave that outlives its master and resumes with the next one.

Usage:
    python3 python/examples/reconnect_demo.py slave  [shm_name] [--duration S]
    python3 python/examples/reconnect_demo.py master [shm_name] [--count N] [--rate-hz R]

shm_name defaults to "reconnect_demo".

    # Terminal 1 - start the slave first: it waits for a master (max_reconnect_attempts=0: forever)
    python3 python/examples/reconnect_demo.py slave
    # Terminal 2 - start the master
    python3 python/examples/reconnect_demo.py master
    # Kill the master with Ctrl+C or kill -9, then start it again (a C++ `eshm_demo master reconnect_demo`
    # works too): the slave notices the master is gone, then resumes by itself with the new one.

The slave prints "[SLAVE] Master is <state>" whenever the master's state changes, every message it
receives, and the number of reconnections (get_stats()["reconnect_count"]). Ctrl+C (or SIGTERM) closes the
channel and exits with status 0.
"""

import argparse
import os
import signal
import sys
import time

from eshm import ChannelNotFoundError, ESHM, ESHMRole, ESHMTimeoutError, PeerStaleError


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_slave(args):
    print(f"[SLAVE] Waiting for a master on '{args.shm_name}'...", flush=True)
    while True:
        # Wait for the segment here, where Ctrl+C works, then open (the open itself does not see signals).
        if os.path.exists(f"/dev/shm/eshm_{args.shm_name}"):
            try:
                channel = ESHM(args.shm_name, role=ESHMRole.SLAVE, max_reconnect_attempts=0)
                break
            except ChannelNotFoundError:
                pass
        time.sleep(0.05)
    with channel:
        print("[SLAVE] Connected to the master", flush=True)
        end = time.monotonic() + args.duration if args.duration > 0 else None
        state = None
        reconnects = 0
        received = 0
        while end is None or time.monotonic() < end:
            new_state = channel.peer_state()
            if new_state != state:
                state = new_state
                print(f"[SLAVE] Master is {state}", flush=True)
            count = channel.get_stats()["reconnect_count"]
            if count != reconnects:
                reconnects = count
                print(f"[SLAVE] Reconnected (reconnections so far: {reconnects})", flush=True)
            try:
                data = channel.read(timeout_ms=100)
            except (ESHMTimeoutError, PeerStaleError):
                continue
            received += 1
            text = data.rstrip(b"\0").decode("utf-8", "replace")
            print(f"[SLAVE] Received ({len(data)} bytes): {text}", flush=True)
            try:
                channel.write(f"ACK from Python slave #{received - 1}", timeout_ms=500)
            except (ESHMTimeoutError, PeerStaleError):
                pass
        print(f"[SLAVE] Exiting: received {received}, reconnections {reconnects}", flush=True)


def run_master(args):
    with ESHM(args.shm_name, role=ESHMRole.MASTER) as channel:
        print(f"[MASTER] Started (pid {os.getpid()}, epoch {channel.get_stats()['epoch']})", flush=True)
        period = 1.0 / args.rate_hz if args.rate_hz > 0 else 0.0
        sent = 0
        while args.count == 0 or sent < args.count:
            message = f"Message #{sent} from master pid {os.getpid()}"
            try:
                channel.write(message, timeout_ms=500)
                print(f"[MASTER] Sent: {message}", flush=True)
                sent += 1
            except (ESHMTimeoutError, PeerStaleError):
                print("[MASTER] Waiting for the slave...", flush=True)
                continue
            while channel.try_read() is not None:
                pass  # the slave's ACKs
            time.sleep(period)
        print(f"[MASTER] Exiting: sent {sent}", flush=True)


def main():
    parser = argparse.ArgumentParser(description="eshm Python reconnection demo")
    parser.add_argument("role", choices=["master", "slave"])
    parser.add_argument("shm_name", nargs="?", default="reconnect_demo",
                        help="channel name (default: reconnect_demo)")
    parser.add_argument("--count", type=int, default=0, help="master: send N messages, then exit (0 = forever)")
    parser.add_argument("--rate-hz", type=float, default=2.0, help="master: messages per second (default 2)")
    parser.add_argument("--duration", type=float, default=0.0, help="slave: stop after S seconds (0 = no limit)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    print(f"=== ESHM Python Reconnect Demo ({args.role}) ===", flush=True)
    try:
        run_slave(args) if args.role == "slave" else run_master(args)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
