#!/usr/bin/env python3
"""Per-binding throughput: one-way 64-byte messages, writer and reader as two processes, through each
binding in turn; medians of --reps repetitions, all measured in the same run. run.sh builds what this needs
and calls it; run it directly only with the paths it asks for.

Each repetition runs every binding once (round robin, so slow phases of a noisy machine spread over all of
them). A run's rate is the reader's: 64-byte messages counted from the first to the writer's stop message,
over that time. The writer's count must equal the reader's (nothing lost), or the run fails.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent


def bindings(args):
    """name -> (description, argv prefix of a peer: + writer NAME SECONDS | reader NAME)."""
    py_peer = [args.python, str(HERE / "py_peer.py")]
    table = {
        "cpp": ("C++ eshm::Channel Write/Read", [args.cpp_peer]),
        "python": ("Python (Cython) write/read", py_peer + ["--api", "cython"]),
        "python_batch": ("Python (Cython) write_many/read_many", py_peer + ["--api", "cython_batch"]),
        "ctypes": ("Python ctypes over libeshm.so", py_peer + ["--api", "ctypes", "--lib", args.lib]),
        "node": ("Node.js (koffi) sync write/read", [args.node, str(HERE / "node_peer.js")]),
    }
    if args.only:
        table = {k: v for k, v in table.items() if k in args.only.split(",")}
    return table


def pinned(argv, cpu):
    # One core each, the same two for every binding: fair, and no migration mid-run.
    if cpu is None:
        return argv
    return ["taskset", "-c", str(cpu)] + argv


def run_once(name, peer, args, cpus):
    channel = f"bindings_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, ESHM_LIBESHM=args.lib)
    timeout = args.seconds + 90
    reader = subprocess.Popen(pinned(peer + ["reader", channel], cpus[1]), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    writer = subprocess.Popen(pinned(peer + ["writer", channel, str(args.seconds)], cpus[0]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        w_out, w_err = writer.communicate(timeout=timeout)
        r_out, r_err = reader.communicate(timeout=timeout)
    finally:
        for proc in (writer, reader):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        try:
            os.unlink(f"/dev/shm/eshm_{channel}")
        except FileNotFoundError:
            pass
    if writer.returncode != 0 or reader.returncode != 0:
        raise RuntimeError(f"{name}: writer exit {writer.returncode}, reader exit {reader.returncode}\n"
                           f"writer: {w_out}{w_err}\nreader: {r_out}{r_err}")
    sent = int(w_out.split()[1])
    _, count, seconds = r_out.split()
    count, seconds = int(count), float(seconds)
    if count != sent:
        raise RuntimeError(f"{name}: the writer sent {sent} messages, the reader got {count}")
    return count / seconds if seconds > 0 else 0.0


def machine():
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except FileNotFoundError:
        pass
    return f"{model or platform.processor()}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpp-peer", required=True)
    parser.add_argument("--lib", required=True, help="libeshm.so")
    parser.add_argument("--python", default=sys.executable, help="an interpreter that can import eshm")
    parser.add_argument("--node", default=shutil.which("node") or "node")
    parser.add_argument("--seconds", type=float, default=1.5, help="writer time per run")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", help="comma-separated: cpp,python,python_batch,ctypes,node")
    parser.add_argument("--pin", choices=["auto", "off"], default="auto")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--command", default=" ".join(sys.argv), help="the command shown with the results")
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be at least 1")

    cpus = (None, None)
    if args.pin == "auto" and shutil.which("taskset"):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) >= 2:
            cpus = (allowed[0], allowed[1])
    table = bindings(args)
    rates = {name: [] for name in table}
    for rep in range(args.reps):
        for name, (_, peer) in table.items():
            rate = run_once(name, peer, args, cpus)
            rates[name].append(rate)
            print(f"  rep {rep + 1}/{args.reps} {name:13s} {rate:14,.0f} msg/s", file=sys.stderr, flush=True)

    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    result = {
        "command": args.command,
        "date": when,
        "machine": machine(),
        "pinned_cpus": list(cpus) if cpus[0] is not None else None,
        "message_bytes": 64,
        "seconds_per_run": args.seconds,
        "repetitions": args.reps,
        "bindings": {name: {"description": table[name][0], "median_msg_per_s": statistics.median(r),
                            "runs_msg_per_s": r} for name, r in rates.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"One-way 64-byte messages, writer and reader in two processes"
          f"{f' pinned to CPUs {cpus[0]} and {cpus[1]}' if cpus[0] is not None else ''}; "
          f"median of {args.reps} runs of {args.seconds:g} s each.")
    print(f"{when}; {result['machine']}")
    print(f"Command: {args.command}")
    print()
    print(f"| {'binding':38s} | {'median msg/s':>14s} | {'min':>12s} | {'max':>12s} |")
    print(f"|{'-' * 40}|{'-' * 15}:|{'-' * 13}:|{'-' * 13}:|")
    for name, r in rates.items():
        print(f"| {table[name][0]:38s} | {statistics.median(r):14,.0f} | {min(r):12,.0f} | {max(r):12,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
