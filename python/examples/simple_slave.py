#!/usr/bin/env python3
"""The simplest eshm slave: prints every message and answers "ACK from Python slave #K".

Usage:
    python3 python/examples/simple_slave.py [shm_name] [--count N] [--duration S]
                                            [--max-reconnect-attempts N]

shm_name defaults to "eshm1" (the segment /dev/shm/eshm_eshm1), the default of the original ESHM Python
examples. The slave waits for a master to create the channel (start it before or after the master).

Try it with a master in another terminal, in either language:
    bazel-bin/tools/eshm_demo master my_shm               # or: python3 python/examples/simple_master.py my_shm
    python3 python/examples/simple_slave.py my_shm

Output:
    === ESHM Python Slave Example ===
    Initialized as SLAVE
    [SLAVE] Received (20 bytes): Hello from master #0
    [SLAVE] Sent: ACK from Python slave #0

The byte count is the length received (an old peer that sends a NUL terminator gives one byte more);
trailing NULs are stripped for display. If the master dies and a new one takes over the channel, the slave
resumes by itself. Ctrl+C (or SIGTERM) closes the channel and exits with status 0.
"""

import argparse
import os
import signal
import sys
import time

from eshm import ChannelNotFoundError, ESHM, ESHMRole, ESHMTimeoutError, PeerStaleError


def printable(data: bytes) -> str:
    """The message as text: trailing NULs (sent by old peers) dropped."""
    return data.rstrip(b"\0").decode("utf-8", "replace")


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def open_slave(name: str, max_reconnect_attempts: int) -> ESHM:
    """Opens the slave end, waiting (interruptibly, with Ctrl+C) for a master to create the channel."""
    said_waiting = False
    while True:
        if not os.path.exists(f"/dev/shm/eshm_{name}"):
            if not said_waiting:
                print(f"[SLAVE] Waiting for a master to create /dev/shm/eshm_{name}...", flush=True)
                said_waiting = True
            time.sleep(0.05)
            continue
        try:
            return ESHM(name, role=ESHMRole.SLAVE, max_reconnect_attempts=max_reconnect_attempts)
        except ChannelNotFoundError:
            continue  # the master left between the check and the open: look again


def main() -> int:
    parser = argparse.ArgumentParser(description="eshm Python slave example")
    parser.add_argument("shm_name", nargs="?", default="eshm1", help="channel name (default: eshm1)")
    parser.add_argument("--count", type=int, default=0,
                        help="exit after receiving (and answering) N messages (0 = until Ctrl+C)")
    parser.add_argument("--duration", type=float, default=0.0, help="exit after S seconds (0 = no limit)")
    parser.add_argument("--max-reconnect-attempts", type=int, default=0,
                        help="how often to look for a new master after ours left, every 100 ms "
                             "(0 = forever, the default)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)

    print("=== ESHM Python Slave Example ===", flush=True)
    channel = None
    sent = received = 0
    try:
        channel = open_slave(args.shm_name, args.max_reconnect_attempts)
        print(f"Initialized as {channel.get_role().name}", flush=True)
        end = time.monotonic() + args.duration if args.duration > 0 else None
        last_wait_note = 0.0
        while end is None or time.monotonic() < end:
            try:
                data = channel.read(buffer_size=65536, timeout_ms=100)
            except ESHMTimeoutError:
                continue
            except PeerStaleError as e:
                if time.monotonic() - last_wait_note >= 1.0:
                    print(f"[SLAVE] Waiting for master... ({e})", flush=True)
                    last_wait_note = time.monotonic()
                continue
            print(f"[SLAVE] Received ({len(data)} bytes): {printable(data)}", flush=True)
            received += 1
            reply = f"ACK from Python slave #{sent}"
            try:
                channel.write(reply, timeout_ms=1000)
                print(f"[SLAVE] Sent: {reply}", flush=True)
                sent += 1
            except (ESHMTimeoutError, PeerStaleError) as e:
                print(f"[SLAVE] Reply not sent, master gone... ({e})", flush=True)
            if args.count and received >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if channel is not None:
            channel.close()
    print(f"[SLAVE] Exiting: received {received}, sent {sent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
