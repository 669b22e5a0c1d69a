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
LATENCY_KEYS = set(PERCENTILES) | {"mean"}
FLOOR_NAMES = {"atomic_pingpong", "futex_pingpong", "memcpy"}
RESULT_KEYS = {"transport", "mode", "wait", "size", "messages", "seconds", "msgs_per_s", "gb_per_s", "latency_ns",
               "latency_kind", "floor", "ratio_to_floor", "baseline", "ratio_to_baseline", "futex_calls_per_message"}
BASELINE = "minimal_ring"
COUNTS_FUTEX = {"eshm", "eshm_ring"}
SPIN_ONLY = {"minimal_ring"}
MAX_ATOMIC_PAYLOAD = 120


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_latency(where, latency, problems):
    if latency is None:
        return
    if not isinstance(latency, dict) or set(latency) != LATENCY_KEYS:
        problems.append(f"{where}: latency_ns keys {sorted(latency) if isinstance(latency, dict) else latency}")
        return
    if not all(is_number(latency[k]) and latency[k] >= 0 for k in LATENCY_KEYS):
        problems.append(f"{where}: latency_ns has a non-number or negative value: {latency}")
        return
    values = [latency[k] for k in PERCENTILES]
    if values != sorted(values):
        problems.append(f"{where}: percentiles are not monotone: {values}")
    if not latency["min"] <= latency["mean"] <= latency["max"]:
        problems.append(f"{where}: mean outside [min, max]: {latency}")


def check(doc, args):
    problems = []
    expect = lambda cond, what: cond or problems.append(what)
    expect(set(doc) == {"schema", "tool", "command", "machine", "setup", "floors", "results"},
           f"top-level keys: {sorted(doc)}")
    expect(doc.get("schema") == "eshm-bench/2", "schema is not eshm-bench/2")
    expect(doc.get("tool") == "eshm-bench", "tool is not eshm-bench")
    expect(isinstance(doc.get("command"), str) and "eshm-bench" in doc["command"], "command missing")
    m = doc.get("machine", {})
    expect(set(m) == {"cpu_model", "logical_cpus", "kernel", "clocksource", "hostname"}, f"machine keys: {sorted(m)}")
    expect(isinstance(m.get("logical_cpus"), int) and m["logical_cpus"] >= 1, "machine.logical_cpus")
    for k in ("cpu_model", "kernel", "clocksource", "hostname"):
        expect(isinstance(m.get(k), str), f"machine.{k} is not a string")
    s = doc.get("setup", {})
    expect(set(s) == {"ends", "pinned", "cpus", "warmup_s", "repetitions"}, f"setup keys: {sorted(s)}")
    expect(s.get("ends") == "processes", "setup.ends is not processes")
    expect(isinstance(s.get("pinned"), bool), "setup.pinned is not a bool")
    cpus = s.get("cpus")
    expect(cpus is None or (isinstance(cpus, list) and len(cpus) == 2 and all(isinstance(c, int) for c in cpus)),
           f"setup.cpus: {cpus}")
    expect(s.get("pinned") == (cpus is not None), "setup.pinned disagrees with setup.cpus")
    expect(is_number(s.get("warmup_s")), "setup.warmup_s")
    expect(isinstance(s.get("repetitions"), int) and s["repetitions"] >= 1, "setup.repetitions")

    floors = doc.get("floors", [])
    for i, f in enumerate(floors):
        where = f"floors[{i}]"
        expect(set(f) == {"name", "size", "latency_ns", "gb_per_s"}, f"{where} keys: {sorted(f)}")
        expect(f.get("name") in FLOOR_NAMES, f"{where}: name {f.get('name')}")
        check_latency(where, f.get("latency_ns"), problems)
        if f.get("name") == "memcpy":
            expect(isinstance(f.get("size"), int) and is_number(f.get("gb_per_s")) and f["gb_per_s"] > 0,
                   f"{where}: memcpy needs a size and gb_per_s")
        elif f.get("name") == "atomic_pingpong" and f.get("size") is not None:
            expect(isinstance(f["size"], int) and 8 <= f["size"] <= MAX_ATOMIC_PAYLOAD and
                   f.get("latency_ns") is not None, f"{where}: atomic ping-pong carrying a payload: shape")
        else:
            expect(f.get("size") is None and f.get("latency_ns") is not None, f"{where}: ping-pong floor shape")
    floor_names = {f.get("name") for f in floors}
    expect({"atomic_pingpong", "futex_pingpong"} <= floor_names, f"ping-pong floors missing: {floor_names}")

    results = doc.get("results", [])
    seen = set()
    for i, r in enumerate(results):
        where = f"results[{i}] ({r.get('transport')} {r.get('mode')} {r.get('wait')} {r.get('size')})"
        expect(set(r) == RESULT_KEYS, f"{where} keys: {sorted(r)}")
        expect(r.get("mode") in ("pingpong", "stream"), f"{where}: mode")
        expect(r.get("wait") in ("spin", "blocking"), f"{where}: wait")
        expect(r.get("latency_kind") == ("round_trip" if r.get("mode") == "pingpong" else "one_way"),
               f"{where}: latency_kind {r.get('latency_kind')}")
        for k in ("seconds", "msgs_per_s", "gb_per_s"):
            expect(is_number(r.get(k)) and r[k] > 0, f"{where}: {k} = {r.get(k)}")
        expect(isinstance(r.get("messages"), int) and r["messages"] > 0, f"{where}: messages")
        if args.messages:
            expect(r.get("messages") == args.messages, f"{where}: {r.get('messages')} messages, asked {args.messages}")
        check_latency(where, r.get("latency_ns"), problems)
        expect(r.get("latency_ns") is not None, f"{where}: no latency")
        if r.get("floor") is not None:
            expect(r["floor"] in floor_names, f"{where}: floor {r['floor']} was not measured")
            expect(is_number(r.get("ratio_to_floor")) and r["ratio_to_floor"] > 0, f"{where}: ratio_to_floor")
            want = {"pingpong": {"spin": "atomic_pingpong", "blocking": "futex_pingpong"}}.get(
                r.get("mode"), {"spin": "memcpy", "blocking": "memcpy"})[r.get("wait")]
            expect(r["floor"] == want, f"{where}: floor {r['floor']}, expected {want}")
        else:
            expect(r.get("ratio_to_floor") is None, f"{where}: a ratio without a floor")
        if r.get("baseline") is not None:
            expect(r["baseline"] == BASELINE and r.get("transport") != BASELINE, f"{where}: baseline {r['baseline']}")
            expect(is_number(r.get("ratio_to_baseline")) and r["ratio_to_baseline"] > 0, f"{where}: ratio_to_baseline")
        else:
            expect(r.get("ratio_to_baseline") is None, f"{where}: a ratio without a baseline")
        futex = r.get("futex_calls_per_message")
        if r.get("transport") in COUNTS_FUTEX:
            expect(is_number(futex) and futex >= 0, f"{where}: futex_calls_per_message = {futex}")
        else:
            expect(futex is None, f"{where}: futex calls from a transport that does not count them")
        seen.add((r.get("transport"), r.get("mode"), r.get("wait"), r.get("size")))
    # Every result beside a baseline result of the same measurement is compared with it.
    for r in results:
        key = (r.get("mode"), r.get("wait"), r.get("size"))
        has_baseline = (BASELINE, *key) in seen
        if r.get("transport") != BASELINE:
            expect((r.get("baseline") is not None) == has_baseline,
                   f"{r.get('transport')} {key}: baseline {r.get('baseline')} but a {BASELINE} result: {has_baseline}")

    wanted = {(t, m, w, int(z)) for t in args.transports.split(",") for m in args.modes.split(",")
              for w in args.waits.split(",") for z in args.sizes.split(",") if not (t in SPIN_ONLY and w != "spin")}
    for missing in sorted(wanted - seen):
        problems.append(f"no result for {missing}")
    for extra in sorted(seen - wanted):
        problems.append(f"a result nobody asked for: {extra}")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--modes", required=True)
    parser.add_argument("--waits", required=True)
    parser.add_argument("--sizes", required=True)
    parser.add_argument("--transports", required=True)
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
