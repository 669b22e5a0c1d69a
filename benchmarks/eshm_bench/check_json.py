"""Checks an eshm-bench JSON file against schema eshm-bench/2 and against what the run was asked for.

Standard library only (Bazel tests run the system python3). Exits 1 with one line per problem.

  check_json.py FILE --modes=pingpong,stream --waits=spin,blocking --sizes=64,4096 \
      --transports=eshm,pipe,unix [--messages=N]
"""
import argparse
import json
import math
import sys

PERCENTILES = ["min", "p50", "p90", "p99", "p99.9", "p99.99", "max"]
RESULT_KEYS = {"transport", "mode", "wait", "size", "messages", "seconds", "msgs_per_s", "gb_per_s", "latency_ns",
               "latency_kind", "floor", "ratio_to_floor", "baseline", "ratio_to_baseline", "futex_calls_per_message"}
BASELINE = "minimal_ring"
COUNTS_FUTEX = {"eshm", "eshm_ring"}
SPIN_ONLY = {"minimal_ring"}
MAX_ATOMIC_PAYLOAD = 120


def number(v, positive=False):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return ok and (v > 0 if positive else v >= 0)


def check(doc, args):
    problems = []

    def expect(cond, what):
        if not cond:
            problems.append(what)

    def latency(where, lat):
        if lat is None:
            return
        if not isinstance(lat, dict) or set(lat) != set(PERCENTILES) | {"mean"} or not all(map(number, lat.values())):
            return problems.append(f"{where}: latency_ns is not numbers for {PERCENTILES} and mean: {lat}")
        values = [lat[k] for k in PERCENTILES]
        expect(values == sorted(values), f"{where}: percentiles are not monotone: {values}")
        expect(lat["min"] <= lat["mean"] <= lat["max"], f"{where}: mean outside [min, max]: {lat}")

    expect(set(doc) == {"schema", "tool", "command", "machine", "setup", "floors", "results"},
           f"top-level keys: {sorted(doc)}")
    expect(doc.get("schema") == "eshm-bench/2" and doc.get("tool") == "eshm-bench", "schema or tool")
    expect(isinstance(doc.get("command"), str) and "eshm-bench" in doc["command"], "command missing")
    m = doc.get("machine", {})
    expect(set(m) == {"cpu_model", "logical_cpus", "kernel", "clocksource", "hostname"}, f"machine keys: {sorted(m)}")
    expect(isinstance(m.get("logical_cpus"), int) and m["logical_cpus"] >= 1, "machine.logical_cpus")
    expect(all(isinstance(m.get(k), str) for k in ("cpu_model", "kernel", "clocksource", "hostname")),
           "machine: a field is not a string")
    s = doc.get("setup", {})
    expect(set(s) == {"ends", "pinned", "cpus", "warmup_s", "repetitions"}, f"setup keys: {sorted(s)}")
    expect(s.get("ends") == "processes" and isinstance(s.get("pinned"), bool), "setup.ends or setup.pinned")
    cpus = s.get("cpus")
    expect(cpus is None or (isinstance(cpus, list) and len(cpus) == 2 and all(isinstance(c, int) for c in cpus)),
           f"setup.cpus: {cpus}")
    expect(s.get("pinned") == (cpus is not None), "setup.pinned disagrees with setup.cpus")
    expect(number(s.get("warmup_s")), "setup.warmup_s")
    expect(isinstance(s.get("repetitions"), int) and s["repetitions"] >= 1, "setup.repetitions")

    floors = doc.get("floors", [])
    for i, f in enumerate(floors):
        where = f"floors[{i}]"
        expect(set(f) == {"name", "size", "latency_ns", "gb_per_s"}, f"{where} keys: {sorted(f)}")
        latency(where, f.get("latency_ns"))
        name, size = f.get("name"), f.get("size")
        if name == "memcpy":
            expect(isinstance(size, int) and number(f.get("gb_per_s"), True), f"{where}: memcpy needs a size, gb_per_s")
        elif name in ("atomic_pingpong", "futex_pingpong"):
            sized = name == "atomic_pingpong" and isinstance(size, int) and 8 <= size <= MAX_ATOMIC_PAYLOAD
            expect((size is None or sized) and f.get("latency_ns") is not None, f"{where}: ping-pong floor shape")
        else:
            problems.append(f"{where}: name {name}")
    floor_names = {f.get("name") for f in floors}
    expect({"atomic_pingpong", "futex_pingpong"} <= floor_names, f"ping-pong floors missing: {floor_names}")

    results = doc.get("results", [])
    seen = {(r.get("transport"), r.get("mode"), r.get("wait"), r.get("size")) for r in results}
    for r in results:
        where = f"result ({r.get('transport')} {r.get('mode')} {r.get('wait')} {r.get('size')})"
        mode, wait = r.get("mode"), r.get("wait")
        expect(set(r) == RESULT_KEYS, f"{where} keys: {sorted(r)}")
        expect(mode in ("pingpong", "stream") and wait in ("spin", "blocking"), f"{where}: mode or wait")
        expect(r.get("latency_kind") == ("round_trip" if mode == "pingpong" else "one_way"), f"{where}: latency_kind")
        for k in ("seconds", "msgs_per_s", "gb_per_s"):
            expect(number(r.get(k), True), f"{where}: {k} = {r.get(k)}")
        expect(isinstance(r.get("messages"), int) and r["messages"] > 0, f"{where}: messages")
        expect(not args.messages or r.get("messages") == args.messages, f"{where}: {r.get('messages')} messages")
        expect(r.get("latency_ns") is not None, f"{where}: no latency")
        latency(where, r.get("latency_ns"))
        if r.get("floor") is not None:
            want = ("atomic_pingpong" if wait == "spin" else "futex_pingpong") if mode == "pingpong" else "memcpy"
            expect(r["floor"] == want and want in floor_names, f"{where}: floor {r['floor']}, expected {want}")
            expect(number(r.get("ratio_to_floor"), True), f"{where}: ratio_to_floor")
        else:
            expect(r.get("ratio_to_floor") is None, f"{where}: a ratio without a floor")
        # Every result beside a baseline result of the same measurement is compared with it.
        has_baseline = r.get("transport") != BASELINE and (BASELINE, mode, wait, r.get("size")) in seen
        expect(r.get("baseline") == (BASELINE if has_baseline else None), f"{where}: baseline {r.get('baseline')}")
        expect((r.get("baseline") is None) == (r.get("ratio_to_baseline") is None) and
               (r.get("baseline") is None or number(r.get("ratio_to_baseline"), True)), f"{where}: ratio_to_baseline")
        futex = r.get("futex_calls_per_message")
        expect(number(futex) if r.get("transport") in COUNTS_FUTEX else futex is None,
               f"{where}: futex_calls_per_message = {futex}")

    wanted = {(t, m, w, int(z)) for t in args.transports.split(",") for m in args.modes.split(",")
              for w in args.waits.split(",") for z in args.sizes.split(",") if not (t in SPIN_ONLY and w != "spin")}
    problems += [f"no result for {missing}" for missing in sorted(wanted - seen)]
    problems += [f"a result nobody asked for: {extra}" for extra in sorted(seen - wanted)]
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    for flag in ("--modes", "--waits", "--sizes", "--transports"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--messages", type=int, default=0)
    args = parser.parse_args()
    with open(args.file) as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        print(f"{args.file}: not JSON ({e}); starts with {text[:200]!r}")
        return 1
    problems = check(doc, args)
    for p in problems:
        print(f"{args.file}: {p}")
    if not problems:
        print(f"{args.file}: OK ({len(doc['results'])} results, {len(doc['floors'])} floors)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
