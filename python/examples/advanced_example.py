#!/usr/bin/env python3
"""A request/response service over eshm: JSON messages, custom timeouts and options, statistics.

Usage:
    python3 python/examples/advanced_example.py master [shm_name] [--count N] [--interval S]
    python3 python/examples/advanced_example.py slave  [shm_name] [--count N] [--duration S]

shm_name defaults to "advanced_example". Start both, in either order:

    python3 python/examples/advanced_example.py master      # Terminal 1
    python3 python/examples/advanced_example.py slave       # Terminal 2

The master sends JSON requests {"id": N, "op": "square", "value": N, "sent_ns": ...}; the slave computes
the result and answers {"id": N, "result": N*N, "slave_pid": ...}; the master checks each answer and prints
the round trip. Both sides print the channel's statistics (get_stats()) at the end. The channel is opened
with custom options: a 250 ms stale threshold, ON_TIMEOUT with a 3 s reconnect window, 256 KiB rings.

--count (default 10 for the master, 0 = until Ctrl+C for the slave) bounds the run. Ctrl+C (or SIGTERM)
closes the channel and exits with status 0.
"""

import argparse
import json
import os
import signal
import sys
import time

from eshm import (
    ChannelNotFoundError,
    ESHM,
    ESHMDisconnectBehavior,
    ESHMRole,
    ESHMTimeoutError,
    PeerStaleError,
)

OPTIONS = dict(
    disconnect_behavior=ESHMDisconnectBehavior.ON_TIMEOUT,
    stale_threshold_ms=250,
    reconnect_wait_ms=3000,
    m2s_capacity=1 << 18,
    s2m_capacity=1 << 18,
)
WRITE_TIMEOUT_MS = 500
READ_TIMEOUT_MS = 2000


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def print_stats(tag, channel):
    stats = channel.get_stats()
    print(f"{tag} Statistics:", flush=True)
    for key in ("master_pid", "slave_pid", "master_alive", "slave_alive", "m2s_write_count",
                "m2s_read_count", "s2m_write_count", "s2m_read_count", "epoch", "reconnect_count",
                "max_message_bytes"):
        print(f"{tag}   {key}: {stats[key]}", flush=True)


def run_master(args):
    tag = "[MASTER]"
    with ESHM(args.shm_name, role=ESHMRole.MASTER, **OPTIONS) as channel:
        print(f"{tag} Initialized as {channel.get_role().name}; max message {channel.max_message_size} bytes",
              flush=True)
        ok = failed = 0
        n = 0
        while args.count == 0 or n < args.count:
            request = {"id": n, "op": "square", "value": n, "sent_ns": time.monotonic_ns()}
            try:
                channel.write(json.dumps(request), timeout_ms=WRITE_TIMEOUT_MS)
            except (ESHMTimeoutError, PeerStaleError) as e:
                print(f"{tag} Request {n} not sent, retrying: {type(e).__name__}", flush=True)
                time.sleep(0.1)
                continue
            print(f"{tag} Sent request: {json.dumps(request)}", flush=True)
            while True:
                try:
                    reply = json.loads(channel.read(timeout_ms=READ_TIMEOUT_MS).rstrip(b"\0"))
                except (ESHMTimeoutError, PeerStaleError) as e:
                    print(f"{tag} No answer to request {n} within {READ_TIMEOUT_MS} ms ({type(e).__name__})",
                          flush=True)
                    failed += 1
                    break
                except ValueError as e:
                    print(f"{tag} Ignoring a message that is not JSON: {e}", flush=True)
                    continue
                if reply.get("id") != n:
                    continue  # a late answer to an earlier request
                rtt_us = (time.monotonic_ns() - request["sent_ns"]) / 1000
                good = reply.get("result") == n * n
                ok += good
                failed += not good
                print(f"{tag} Received response: {json.dumps(reply)} ({'OK' if good else 'WRONG'}, "
                      f"round trip {rtt_us:.0f} us)", flush=True)
                break
            n += 1
            if args.interval > 0:
                time.sleep(args.interval)
        print(f"{tag} Done: {ok} correct, {failed} failed", flush=True)
        print_stats(tag, channel)
        return 0 if failed == 0 else 1


def run_slave(args):
    tag = "[SLAVE]"
    while not os.path.exists(f"/dev/shm/eshm_{args.shm_name}"):
        time.sleep(0.05)  # wait for the master, interruptibly
    while True:
        try:
            channel = ESHM(args.shm_name, role=ESHMRole.SLAVE, max_reconnect_attempts=0, **OPTIONS)
            break
        except ChannelNotFoundError:
            time.sleep(0.05)
    with channel:
        print(f"{tag} Initialized as {channel.get_role().name}", flush=True)
        end = time.monotonic() + args.duration if args.duration > 0 else None
        served = 0
        while (end is None or time.monotonic() < end) and (args.count == 0 or served < args.count):
            try:
                raw = channel.read(timeout_ms=200)
            except ESHMTimeoutError:
                continue
            except PeerStaleError:
                print(f"{tag} Master gone; waiting for it to come back...", flush=True)
                continue
            try:
                request = json.loads(raw.rstrip(b"\0"))
            except ValueError:
                print(f"{tag} Ignoring a message that is not JSON ({len(raw)} bytes)", flush=True)
                continue
            print(f"{tag} Received request: {json.dumps(request)}", flush=True)
            if request.get("op") == "square":
                reply = {"id": request.get("id"), "result": request.get("value", 0) ** 2, "slave_pid": os.getpid()}
            else:
                reply = {"id": request.get("id"), "error": f"unknown op {request.get('op')!r}"}
            try:
                channel.write(json.dumps(reply), timeout_ms=WRITE_TIMEOUT_MS)
                print(f"{tag} Sent response: {json.dumps(reply)}", flush=True)
            except (ESHMTimeoutError, PeerStaleError) as e:
                print(f"{tag} Response not sent: {type(e).__name__}", flush=True)
            served += 1
        print_stats(tag, channel)
    return 0


def main():
    parser = argparse.ArgumentParser(description="eshm Python advanced example (JSON request/response)")
    parser.add_argument("role", choices=["master", "slave"])
    parser.add_argument("shm_name", nargs="?", default="advanced_example",
                        help="channel name (default: advanced_example)")
    parser.add_argument("--count", type=int, default=None,
                        help="requests to send / serve (default: 10 for the master, 0 = forever for the slave)")
    parser.add_argument("--interval", type=float, default=0.2, help="master: seconds between requests")
    parser.add_argument("--duration", type=float, default=0.0, help="slave: stop after S seconds (0 = no limit)")
    args = parser.parse_args()
    if args.count is None:
        args.count = 10 if args.role == "master" else 0
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    print(f"=== ESHM Python Advanced Example ({args.role}) ===", flush=True)
    try:
        return run_master(args) if args.role == "master" else run_slave(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
