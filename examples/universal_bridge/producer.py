#!/usr/bin/env python3
"""The Python side of the universal bridge: writes sensor readings as JSON, at a fixed rate, to every
channel named on the command line (one channel per consumer: a ring has exactly one reader).

    producer.py NAME [NAME...] [--rate-hz 10] [--seconds 3]

It is the master of each channel. It waits (up to --wait-s) until every consumer is attached, writes
{"seq":i,"sensor":"bridge-1","celsius":...,"ts_ms":...} to each channel in turn and prints
"[python] sent <json>" once per reading, then writes the end marker {"end":true,"count":N} and waits for
the consumers to leave before closing (a master's close removes the channel names).
"""

import argparse
import json
import math
import sys
import time

import eshm


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", help="one channel per consumer")
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--wait-s", type=float, default=60.0, help="how long to wait for the consumers")
    args = parser.parse_args()

    channels = [eshm.ESHM(name, role=eshm.ESHMRole.MASTER) for name in args.names]
    try:
        deadline = time.monotonic() + args.wait_s
        while not all(ch.is_remote_alive() for ch in channels):
            if time.monotonic() > deadline:
                print(f"[python] consumers not attached within {args.wait_s} s", flush=True)
                return 1
            time.sleep(0.01)
        print(f"[python] {len(channels)} consumers attached: {', '.join(args.names)}", flush=True)

        count = max(1, round(args.seconds * args.rate_hz))
        period = 1.0 / args.rate_hz
        start = time.monotonic()
        for seq in range(count):
            # A deterministic, slowly varying temperature: easy to check on every side.
            reading = {"seq": seq, "sensor": "bridge-1", "celsius": round(21.0 + 3.0 * math.sin(seq / 5.0), 2),
                       "ts_ms": int(time.time() * 1000)}
            message = json.dumps(reading, separators=(",", ":")).encode()
            for ch in channels:
                ch.write(message, timeout_ms=5000)  # backpressure: waits if a consumer falls behind
            print(f"[python] sent {message.decode()}", flush=True)
            # Fixed rate: sleep to the next tick, not a fixed amount (the writes take time too).
            time.sleep(max(0.0, start + (seq + 1) * period - time.monotonic()))
        end = json.dumps({"end": True, "count": count}, separators=(",", ":")).encode()
        for ch in channels:
            ch.write(end, timeout_ms=5000)
        print(f"[python] done: {count} readings to {len(channels)} channels", flush=True)

        # Let each consumer drain its ring and leave before the names are removed.
        deadline = time.monotonic() + args.wait_s
        while any(ch.is_remote_alive() for ch in channels) and time.monotonic() < deadline:
            time.sleep(0.01)
        return 0
    finally:
        for ch in channels:
            ch.close()


if __name__ == "__main__":
    sys.exit(main())
