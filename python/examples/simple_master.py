#!/usr/bin/env python3
"""The simplest eshm master: sends "Hello from Python master #N" and prints every reply.

Usage:
    python3 python/examples/simple_master.py [shm_name] [--count N] [--rate-hz R] [--duration S]

shm_name defaults to "eshm1" (the segment /dev/shm/eshm_eshm1), the default of the original ESHM Python
examples, so that `eshm_demo slave eshm1` or `python3 python/examples/simple_slave.py` find it.

Try it with a slave in another terminal, in either language:
    python3 python/examples/simple_master.py my_shm
    python3 python/examples/simple_slave.py my_shm        # or: bazel-bin/tools/eshm_demo slave my_shm

Output:
    === ESHM Python Master Example ===
    Initialized as MASTER
    [MASTER] Sent: Hello from Python master #0
    [MASTER] Received: ACK from slave #0

Messages are sent without a NUL terminator (eshm messages are length-delimited); trailing NULs sent by
old peers are stripped for display. Ctrl+C (or SIGTERM) closes the channel and exits with status 0.
"""

import argparse
import signal
import sys
import time

from eshm import ESHM, ESHMRole, ESHMTimeoutError, PeerStaleError


def printable(data: bytes) -> str:
    """The message as text: trailing NULs (sent by old peers) dropped."""
    return data.rstrip(b"\0").decode("utf-8", "replace")


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description="eshm Python master example")
    parser.add_argument("shm_name", nargs="?", default="eshm1", help="channel name (default: eshm1)")
    parser.add_argument("--count", type=int, default=0,
                        help="send N messages, wait for their N replies, then exit (0 = until Ctrl+C)")
    parser.add_argument("--rate-hz", type=float, default=10.0, help="messages per second (default 10)")
    parser.add_argument("--duration", type=float, default=0.0, help="exit after S seconds (0 = no limit)")
    parser.add_argument("--reply-timeout", type=float, default=10.0,
                        help="with --count: how long to wait for the last replies, seconds (default 10)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)

    print("=== ESHM Python Master Example ===", flush=True)
    channel = None
    sent = received = 0
    try:
        channel = ESHM(args.shm_name, role=ESHMRole.MASTER)
        print(f"Initialized as {channel.get_role().name}", flush=True)
        period = 1.0 / args.rate_hz if args.rate_hz > 0 else 0.0
        end = time.monotonic() + args.duration if args.duration > 0 else None
        next_send = time.monotonic()
        last_wait_note = 0.0
        all_sent_at = None
        while end is None or time.monotonic() < end:
            now = time.monotonic()
            if (args.count == 0 or sent < args.count) and now >= next_send:
                message = f"Hello from Python master #{sent}"
                try:
                    channel.write(message, timeout_ms=100)
                    print(f"[MASTER] Sent: {message}", flush=True)
                    sent += 1
                    next_send = max(next_send + period, now - period)
                except (ESHMTimeoutError, PeerStaleError) as e:
                    if now - last_wait_note >= 1.0:
                        print(f"[MASTER] Waiting for slave... ({e})", flush=True)
                        last_wait_note = now
            # Print every reply already queued.
            while True:
                reply = channel.try_read(buffer_size=65536)
                if reply is None:
                    break
                print(f"[MASTER] Received: {printable(reply)}", flush=True)
                received += 1
            if args.count:
                if sent >= args.count and received >= args.count:
                    break
                if sent >= args.count:
                    all_sent_at = all_sent_at or time.monotonic()
                    if time.monotonic() - all_sent_at > args.reply_timeout:
                        print(f"[MASTER] Gave up waiting for replies: {received} of {sent}", flush=True)
                        break
            # Wait for a reply until the next message is due (at most 100 ms).
            wait_s = min(max(next_send - time.monotonic(), 0.0), 0.1)
            if args.count and sent >= args.count:
                wait_s = 0.1
            if wait_s > 0:
                try:
                    reply = channel.read(buffer_size=65536, timeout_ms=wait_s * 1000)
                    print(f"[MASTER] Received: {printable(reply)}", flush=True)
                    received += 1
                except (ESHMTimeoutError, PeerStaleError):
                    pass
    except KeyboardInterrupt:
        pass
    finally:
        if channel is not None:
            channel.close()
    print(f"[MASTER] Exiting: sent {sent}, received {received}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
