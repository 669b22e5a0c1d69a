#!/usr/bin/env python3
"""The old library's Python benchmark master, on eshm: sends a message, waits for the slave's ACK, again, printing
the exchange rate every STATS_EVERY exchanges, as py/tests/performance/benchmark_master.py did.

Usage:
    python3 python/benchmarks/benchmark_master.py [shm_name] [stats_every] [--count N] [--duration S]
                                                  [--size BYTES]

shm_name defaults to "eshm1", stats_every to 1000. Pair it with the benchmark slave (or with
`bazel-bin/tools/eshm_demo slave eshm1 --quiet=100000`, which also answers every message):

    python3 python/benchmarks/benchmark_master.py eshm1 10000
    python3 python/benchmarks/benchmark_slave.py eshm1 10000

Output (one line per stats_every exchanges, then the average):
    [  1000] Total:    0.5s, 2078.5 msg/s | Interval: 2078.5 msg/s

Each exchange is one write() of "Benchmark message #N" (padded to --size bytes if larger) and one read() of
the reply; the clock starts at the first reply. Ctrl+C (or SIGTERM) prints the average and exits 0.
"""

import argparse
import signal
import sys
import time

from _progress import Progress

from eshm import ESHM, ESHMTimeoutError, PeerStaleError


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def main():
    parser = argparse.ArgumentParser(description="eshm benchmark master (write + read the ACK)")
    parser.add_argument("shm_name", nargs="?", default="eshm1", help="channel name (default: eshm1)")
    parser.add_argument("stats_every", nargs="?", type=int, default=1000,
                        help="exchanges between two progress lines (default 1000)")
    parser.add_argument("--count", type=int, default=0, help="stop after N exchanges (0 = until Ctrl+C)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop S seconds after the first reply (0 = no limit)")
    parser.add_argument("--size", type=int, default=0, help="pad each message to this many bytes")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)

    print("=== ESHM Python Benchmark Master ===", flush=True)
    progress = None
    sent = 0
    with ESHM(args.shm_name, role="master") as channel:
        print(f"Initialized as MASTER on '{args.shm_name}'; waiting for a slave...", flush=True)
        read, write = channel.read, channel.write
        end = None
        try:
            while True:
                message = b"Benchmark message #%d" % sent
                if len(message) < args.size:
                    message += b"\0" * (args.size - len(message))
                try:
                    write(message, timeout_ms=1000)
                    sent += 1
                    read(timeout_ms=-1 if progress is None else 1000)  # the first reply: whenever a slave comes
                except (ESHMTimeoutError, PeerStaleError):
                    if end is not None and time.monotonic() >= end:
                        break
                    continue  # the slave paused or left: its successor gets the queued message
                if progress is None:
                    progress = Progress(args.stats_every)
                    end = progress.start + args.duration if args.duration > 0 else None
                progress.add()
                if (args.count and progress.count >= args.count) or \
                        (end is not None and progress.count % 64 == 0 and time.monotonic() >= end):
                    break
        except KeyboardInterrupt:
            pass
    if progress is not None:
        print(progress.summary("exchanges (write + read of the ACK)"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
