#!/usr/bin/env python3
"""The old library's Python benchmark slave, on eshm: reads each message and answers with an ACK, printing the
exchange rate every STATS_EVERY messages, as py/tests/performance/benchmark_slave.py did.

Usage:
    python3 python/benchmarks/benchmark_slave.py [shm_name] [stats_every] [--count N] [--duration S]

shm_name defaults to "eshm1", stats_every to 1000. Start it beside any master on the same name:

    python3 python/benchmarks/benchmark_master.py eshm1 10000      # Python master, or
    bazel-bin/tools/eshm_demo master eshm1 --rate_hz=0 --quiet=100000   # the C++ demo, as fast as it can
    python3 python/benchmarks/benchmark_slave.py eshm1 10000

Output (one line per stats_every messages, then the average):
    [  1000] Total:    0.3s, 3875.5 msg/s | Interval: 3875.5 msg/s

Each exchange is one read() of the master's message and one write() of "ACK from Python slave #N" (no NUL
terminator). The clock starts at the first message. Ctrl+C (or SIGTERM) prints the average and exits 0.
"""

import argparse
import os
import signal
import sys
import time

from _progress import Progress

from eshm import ChannelNotFoundError, ESHM, ESHMTimeoutError, PeerStaleError


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def open_slave(name):
    """The slave end, once a master has created the channel (waits for it, interruptibly)."""
    said = False
    while True:
        if os.path.exists(f"/dev/shm/eshm_{name}"):
            try:
                return ESHM(name, role="slave", max_reconnect_attempts=0)
            except ChannelNotFoundError:
                pass
        elif not said:
            print(f"Waiting for a master to create /dev/shm/eshm_{name}...", flush=True)
            said = True
        time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description="eshm benchmark slave (read + ACK)")
    parser.add_argument("shm_name", nargs="?", default="eshm1", help="channel name (default: eshm1)")
    parser.add_argument("stats_every", nargs="?", type=int, default=1000,
                        help="messages between two progress lines (default 1000)")
    parser.add_argument("--count", type=int, default=0, help="stop after N messages (0 = until Ctrl+C)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop S seconds after the first message (0 = no limit)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)

    print("=== ESHM Python Benchmark Slave ===", flush=True)
    channel = None
    progress = None
    try:
        channel = open_slave(args.shm_name)
        print(f"Initialized as SLAVE on '{args.shm_name}'; answering every message with an ACK", flush=True)
        read, write = channel.read, channel.write
        end = None
        while True:
            try:
                read(timeout_ms=1000)
            except (ESHMTimeoutError, PeerStaleError):
                if end is not None and time.monotonic() >= end:
                    break
                continue  # no master yet, or it paused or left: wait for the next one
            if progress is None:
                progress = Progress(args.stats_every)
                end = progress.start + args.duration if args.duration > 0 else None
            try:
                write(b"ACK from Python slave #%d" % progress.count, timeout_ms=1000)
            except (ESHMTimeoutError, PeerStaleError):
                pass
            progress.add()
            if (args.count and progress.count >= args.count) or (end is not None and time.monotonic() >= end):
                break
    except KeyboardInterrupt:
        pass
    finally:
        if channel is not None:
            channel.close()
    if progress is not None:
        print(progress.summary("messages read and acknowledged"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
