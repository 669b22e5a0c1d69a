#!/usr/bin/env python3
"""Compares two eshm-bench binaries (say, before and after a change) in one interleaved run.

Each repetition runs the baseline and then the candidate (the order alternates every repetition), one
eshm-bench process each, with the same flags; the table gives the medians of both and the candidate's
ratio. Two builds of the engine cannot share one process, so this is how a change to the hot path is
measured "in the same run" on a noisy machine.

    bazel build --config=bench //benchmarks:eshm-bench   # in each checkout, copy the binaries out
    python3 benchmarks/compare_builds.py OLD_BIN NEW_BIN --repetitions 7 -- \\
        --mode=pingpong,stream --sizes=64,65536 --wait=spin,blocking --duration_s=0.5
"""
import argparse
import json
import statistics
import subprocess
import sys


def run(binary, flags):
    out = subprocess.run([binary, *flags, "--repetitions=1", "--json=-"], check=True, capture_output=True,
                         text=True).stdout
    results = {}
    for r in json.loads(out)["results"]:
        if r["transport"] != "eshm":
            continue
        key = (r["mode"], r["wait"], r["size"])
        results[key] = {"msgs_per_s": r["msgs_per_s"], "p50_ns": r["latency_ns"]["p50"]}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline")
    parser.add_argument("candidate")
    parser.add_argument("--repetitions", type=int, default=5)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.flags = argv[split + 1:]
    samples = {"baseline": [], "candidate": []}
    for rep in range(args.repetitions):
        order = ["baseline", "candidate"] if rep % 2 == 0 else ["candidate", "baseline"]
        for which in order:
            samples[which].append(run(getattr(args, which), args.flags))
        print(f"repetition {rep + 1}/{args.repetitions} done", file=sys.stderr)
    print(f"medians of {args.repetitions} interleaved repetitions; flags: {' '.join(args.flags)}")
    print(f"{'mode':8} {'wait':8} {'size':>7} | {'baseline msg/s':>14} {'candidate':>10} {'ratio':>6} | "
          f"{'baseline p50':>12} {'candidate':>10} {'ratio':>6}")
    for key in sorted(samples["baseline"][0]):
        def med(which, field):
            return statistics.median(s[key][field] for s in samples[which])
        b_rate, c_rate = med("baseline", "msgs_per_s"), med("candidate", "msgs_per_s")
        b_p50, c_p50 = med("baseline", "p50_ns"), med("candidate", "p50_ns")
        print(f"{key[0]:8} {key[1]:8} {key[2]:>7} | {b_rate / 1e6:>12.2f} M {c_rate / 1e6:>8.2f} M "
              f"{c_rate / b_rate:>6.2f} | {b_p50:>9.0f} ns {c_p50:>7.0f} ns {c_p50 / b_p50:>6.2f}")


if __name__ == "__main__":
    main()
