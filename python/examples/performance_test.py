#!/usr/bin/env python3
"""Throughput and latency of an eshm channel, measured from Python.

Usage:
    python3 python/examples/performance_test.py master [shm_name] [stats_every] [--count N] [--duration S]
                                                       [--size BYTES]
    python3 python/examples/performance_test.py slave  [shm_name] [stats_every] [--count N] [--duration S]

shm_name defaults to "eshm1"; stats_every (default 10000) is how many messages go between two statistics
lines. The master sends messages of --size bytes (default 64) carrying a sequence number and its send time,
one at a time: the slave echoes each back, and the master measures the round trip. The slave checks the
sequence numbers, measures the one-way latency (CLOCK_MONOTONIC is the same in both processes) and the
rate. Any other message (e.g. from `eshm_demo master eshm1`) is counted and answered with an ACK, so the
slave also works as a benchmark peer for the C++ demo:

    # Terminal 1                                         # Terminal 2
    python3 python/examples/performance_test.py master   python3 python/examples/performance_test.py slave
    bazel-bin/tools/eshm_demo master eshm1 --rate_hz=0   python3 python/examples/performance_test.py slave eshm1 2000

Ctrl+C (or SIGTERM) prints a summary, closes the channel and exits with status 0.
"""

import argparse
import os
import signal
import struct
import sys
import time

from eshm import ChannelNotFoundError, ESHM, ESHMRole, ESHMTimeoutError, PeerStaleError

MAGIC = b"ESHMPERF"
HEADER = struct.Struct("<8sQQ")  # magic, sequence number, send time (ns, CLOCK_MONOTONIC)


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


class Stats:
    """Counts messages and bytes, and keeps latency (ns) minimum, maximum and sum, per interval and total."""

    def __init__(self):
        self.start = time.monotonic()
        self.total = 0
        self.total_bytes = 0
        self.reset_interval()

    def reset_interval(self):
        self.interval_start = time.monotonic()
        self.count = 0
        self.bytes = 0
        self.lat_n = 0
        self.lat_sum = 0
        self.lat_min = None
        self.lat_max = 0

    def add(self, size, latency_ns=None):
        self.count += 1
        self.total += 1
        self.bytes += size
        self.total_bytes += size
        if latency_ns is not None:
            self.lat_n += 1
            self.lat_sum += latency_ns
            self.lat_min = latency_ns if self.lat_min is None else min(self.lat_min, latency_ns)
            self.lat_max = max(self.lat_max, latency_ns)

    def line(self, tag, what):
        elapsed = max(time.monotonic() - self.interval_start, 1e-9)
        text = (f"{tag} {self.total} messages: {self.count / elapsed:,.0f} msg/s, "
                f"{self.bytes / elapsed / 1e6:.2f} MB/s")
        if self.lat_n:
            text += (f", {what} avg {self.lat_sum / self.lat_n / 1000:.1f} us, "
                     f"min {self.lat_min / 1000:.1f} us, max {self.lat_max / 1000:.1f} us")
        return text

    def summary(self, tag):
        elapsed = max(time.monotonic() - self.start, 1e-9)
        return (f"{tag} Total: {self.total} messages, {self.total_bytes} bytes in {elapsed:.2f} s "
                f"({self.total / elapsed:,.0f} msg/s)")


def open_slave(name):
    """Opens the slave end, waiting (interruptibly) for a master to create the channel."""
    said_waiting = False
    while True:
        if os.path.exists(f"/dev/shm/eshm_{name}"):
            try:
                return ESHM(name, role=ESHMRole.SLAVE, max_reconnect_attempts=0)
            except ChannelNotFoundError:
                pass
        elif not said_waiting:
            print(f"[SLAVE] Waiting for a master to create /dev/shm/eshm_{name}...", flush=True)
            said_waiting = True
        time.sleep(0.05)


def run_master(args, stats):
    channel = ESHM(args.shm_name, role=ESHMRole.MASTER)
    try:
        print("[MASTER] Initialized; waiting for a slave...", flush=True)
        padding = b"x" * max(0, args.size - HEADER.size)
        end = time.monotonic() + args.duration if args.duration > 0 else None
        seq = 0
        while (end is None or time.monotonic() < end) and (args.count == 0 or seq < args.count):
            message = HEADER.pack(MAGIC, seq, time.monotonic_ns()) + padding
            try:
                channel.write(message, timeout_ms=1000)
                reply = channel.read(buffer_size=max(4096, len(message)), timeout_ms=1000)
            except (ESHMTimeoutError, PeerStaleError):
                # No slave yet (or it left): the message waits in the ring; read its echo when it comes.
                try:
                    reply = channel.read(buffer_size=max(4096, len(message)), timeout_ms=1000)
                except (ESHMTimeoutError, PeerStaleError):
                    continue
            now = time.monotonic_ns()
            if len(reply) >= HEADER.size:
                magic, rseq, sent_ns = HEADER.unpack_from(reply)
                if magic == MAGIC:
                    stats.add(len(reply), now - sent_ns)
                    seq = rseq + 1
                    if stats.total % args.stats_every == 0:
                        print(stats.line("[MASTER]", "round trip"), flush=True)
                        stats.reset_interval()
    finally:
        channel.close()


def run_slave(args, stats):
    channel = open_slave(args.shm_name)
    try:
        print("[SLAVE] Initialized; waiting for messages...", flush=True)
        end = time.monotonic() + args.duration if args.duration > 0 else None
        expected = None
        gaps = 0
        acks = 0
        while (end is None or time.monotonic() < end) and (args.count == 0 or stats.total < args.count):
            try:
                message = channel.read(buffer_size=1 << 20, timeout_ms=100)
            except (ESHMTimeoutError, PeerStaleError):
                continue
            now = time.monotonic_ns()
            if len(message) >= HEADER.size and message.startswith(MAGIC):
                _, seq, sent_ns = HEADER.unpack_from(message)
                if expected is not None and seq != expected:
                    gaps += 1
                expected = seq + 1
                stats.add(len(message), now - sent_ns)
                reply = message  # echo: the master measures the round trip
            else:
                stats.add(len(message))
                reply = f"ACK from Python slave #{acks}".encode()
                acks += 1
            try:
                channel.write(reply, timeout_ms=1000)
            except (ESHMTimeoutError, PeerStaleError):
                pass
            if stats.total % args.stats_every == 0:
                print(stats.line("[SLAVE]", "one-way latency") + f", sequence gaps {gaps}", flush=True)
                stats.reset_interval()
    finally:
        channel.close()


def main():
    parser = argparse.ArgumentParser(description="eshm Python performance test")
    parser.add_argument("role", choices=["master", "slave"])
    parser.add_argument("shm_name", nargs="?", default="eshm1", help="channel name (default: eshm1)")
    parser.add_argument("stats_every", nargs="?", type=int, default=10000,
                        help="print statistics every N messages (default 10000)")
    parser.add_argument("--count", type=int, default=0, help="stop after N messages (0 = until Ctrl+C)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0 = no limit)")
    parser.add_argument("--size", type=int, default=64, help="master: message size in bytes (default 64)")
    args = parser.parse_args()
    if args.stats_every <= 0:
        parser.error("stats_every must be positive")
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    tag = "[MASTER]" if args.role == "master" else "[SLAVE]"
    print(f"=== ESHM Python Performance Test ({args.role}) ===", flush=True)
    stats = Stats()
    try:
        if args.role == "master":
            run_master(args, stats)
        else:
            run_slave(args, stats)
    except KeyboardInterrupt:
        pass
    print(stats.summary(tag), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
