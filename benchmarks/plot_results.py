#!/usr/bin/env python3
"""Charts from eshm-bench JSON files (schema eshm-bench/2, or /1 before it), Python transports included.

    python3 benchmarks/plot_results.py results/eshm_bench.json [more.json ...] --out benchmarks/results

writes, into --out:
  latency_percentiles_<mode>_<size>.png  latency at p50 .. p99.99 and max, one line per transport, spin and
                                         blocking side by side, log scale; the matching floor dashed
  throughput_vs_size.png                 stream msg/s and GB/s against message size (log-log), memcpy dashed
  spin_vs_blocking.png                   round-trip p50 and p99 against message size, spin solid, blocking dashed
and, with --markdown FILE, the floors and results as Markdown tables.

Every chart names the machine and the command(s) that produced its data. Needs matplotlib (Agg backend).
"""
import argparse
import json
import math
import os
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)

PERCENTILES = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999)]
FLOOR_FOR = {("pingpong", "spin"): "atomic_pingpong", ("pingpong", "blocking"): "futex_pingpong"}
COLORS = {"eshm": "tab:blue", "pipe": "tab:orange", "unix": "tab:green", "boost_mq": "tab:red"}
EXTRA_COLORS = ["tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]


def load(paths):
    docs = []
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        if doc.get("schema") not in ("eshm-bench/1", "eshm-bench/2"):
            sys.exit(f"{path}: schema {doc.get('schema')!r}, expected 'eshm-bench/2' (or /1)")
        doc["_path"] = path
        docs.append(doc)
    # With several files, series names say where they came from (the tool, or the file if tools repeat).
    tools = [d.get("tool", "?") for d in docs]
    for d in docs:
        if len(docs) == 1:
            d["_tag"] = ""
        elif tools.count(d.get("tool")) == 1:
            d["_tag"] = f" [{d.get('tool')}]"
        else:
            d["_tag"] = f" [{os.path.splitext(os.path.basename(d['_path']))[0]}]"
    return docs


def size_label(size):
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


def ns_label(ns, _pos=None):
    if ns >= 1e6:
        return f"{ns / 1e6:g} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:g} µs"
    return f"{ns:g} ns"


def context(docs):
    """Machine and command lines for a chart's caption."""
    lines = []
    seen = set()
    for d in docs:
        m = d["machine"]
        s = d["setup"]
        pin = f"pinned to CPUs {s['cpus'][0]},{s['cpus'][1]}" if s.get("pinned") else "not pinned"
        machine = (f"{m['cpu_model']}, {m['logical_cpus']} logical CPUs, {m['kernel']}, clocksource "
                   f"{m['clocksource']}; two {s['ends']}, {pin}; median of {s['repetitions']} repetition(s)")
        if machine not in seen:
            lines.append(machine)
            seen.add(machine)
        lines.extend(textwrap.wrap(f"$ {d['command']}", 150))
    return "\n".join(lines)


def color_for(transport, tag, assigned):
    """A transport's usual colour the first time it appears (from any file), a spare colour afterwards."""
    key = transport + tag
    if key not in assigned:
        used = set(assigned.values())
        if transport in COLORS and COLORS[transport] not in used:
            assigned[key] = COLORS[transport]
        else:
            spare = [c for c in EXTRA_COLORS if c not in used] or EXTRA_COLORS
            assigned[key] = spare[0]
    return assigned[key]


def finish(fig, docs, title, path):
    fig.suptitle(title, fontsize=13, fontweight="bold")
    caption = context(docs)
    fig.text(0.01, 0.005, caption, fontsize=7, va="bottom", ha="left", family="monospace")
    bottom = 0.06 + 0.018 * (caption.count("\n") + 1)
    fig.tight_layout(rect=(0, bottom, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def x_of(q):
    """Percentile position on a 'nines' axis: p50 -> 0.3, p90 -> 1, p99 -> 2, ... ."""
    return -math.log10(1 - q)


def plot_percentiles(docs, mode, size, out_dir):
    waits = ["spin", "blocking"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.8))
    assigned = {}
    any_data = False
    for ax, wait in zip(axes, waits):
        xs = [x_of(q) for _, q in PERCENTILES] + [x_of(0.99999)]
        for d in docs:
            for r in d["results"]:
                if r["mode"] != mode or r["wait"] != wait or r["size"] != size or not r.get("latency_ns"):
                    continue
                lat = r["latency_ns"]
                ys = [lat[k] for k, _ in PERCENTILES] + [lat["max"]]
                ax.plot(xs, ys, marker="o", color=color_for(r["transport"], d["_tag"], assigned),
                        label=f"{r['transport']}{d['_tag']}")
                any_data = True
            floor_name = FLOOR_FOR.get((mode, wait))
            for f in d["floors"]:
                if f["name"] == floor_name and f.get("latency_ns"):
                    ys = [f["latency_ns"][k] for k, _ in PERCENTILES] + [f["latency_ns"]["max"]]
                    ax.plot(xs, ys, linestyle="--", color="black", alpha=0.6, label=f"floor: {floor_name}{d['_tag']}")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(ns_label))
        ax.set_xticks(xs)
        ax.set_xticklabels([k for k, _ in PERCENTILES] + ["max"])
        ax.set_xlabel("percentile")
        kind = "round trip" if mode == "pingpong" else "one way, under full load"
        ax.set_ylabel(f"latency ({kind}), log scale")
        ax.set_title(wait if mode == "pingpong" else f"{wait} (mostly queueing: ≈ buffer size ÷ throughput)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if not any_data:
        plt.close(fig)
        return
    what = "round-trip latency (ping-pong)" if mode == "pingpong" else "one-way latency (stream, full load)"
    finish(fig, docs, f"{what}, {size_label(size)} messages: percentiles by transport",
           os.path.join(out_dir, f"latency_percentiles_{mode}_{size}.png"))


def plot_throughput(docs, out_dir):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.8))
    assigned = {}
    any_data = False
    for d in docs:
        series = {}
        for r in d["results"]:
            if r["mode"] == "stream":
                series.setdefault((r["transport"], r["wait"]), []).append(r)
        for (transport, wait), rows in sorted(series.items()):
            rows.sort(key=lambda r: r["size"])
            sizes = [r["size"] for r in rows]
            style = "-" if wait == "spin" else ":"
            color = color_for(transport, d["_tag"], assigned)
            label = f"{transport}{d['_tag']} {wait}"
            axes[0].plot(sizes, [r["msgs_per_s"] for r in rows], style, marker="o", color=color, label=label)
            axes[1].plot(sizes, [r["gb_per_s"] for r in rows], style, marker="o", color=color, label=label)
            any_data = True
        memcpy = sorted((f["size"], f["gb_per_s"]) for f in d["floors"] if f["name"] == "memcpy" and f.get("gb_per_s"))
        if memcpy:
            axes[1].plot([s for s, _ in memcpy], [g for _, g in memcpy], "--", color="black", alpha=0.6,
                         label=f"floor: memcpy (one core){d['_tag']}")
    if not any_data:
        plt.close(fig)
        return
    for ax, ylabel in zip(axes, ["messages per second", "GB/s (payload, 1e9 bytes)"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size")
        ax.set_ylabel(ylabel)
        ticks = sorted({r["size"] for d in docs for r in d["results"] if r["mode"] == "stream"})
        ax.set_xticks(ticks)
        ax.set_xticklabels([size_label(t) for t in ticks], rotation=30)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_title("message rate (solid: spin, dotted: blocking)")
    axes[1].set_title("bandwidth (dashed: memcpy floor)")
    finish(fig, docs, "one-way stream throughput vs message size", os.path.join(out_dir, "throughput_vs_size.png"))


def plot_spin_vs_blocking(docs, out_dir):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.8))
    assigned = {}
    any_data = False
    for d in docs:
        series = {}
        for r in d["results"]:
            if r["mode"] == "pingpong" and r.get("latency_ns"):
                series.setdefault((r["transport"], r["wait"]), []).append(r)
        for (transport, wait), rows in sorted(series.items()):
            rows.sort(key=lambda r: r["size"])
            sizes = [r["size"] for r in rows]
            style = "-" if wait == "spin" else "--"
            color = color_for(transport, d["_tag"], assigned)
            for ax, key in zip(axes, ["p50", "p99"]):
                ax.plot(sizes, [r["latency_ns"][key] for r in rows], style, marker="o", color=color,
                        label=f"{transport}{d['_tag']} {wait}")
            any_data = True
        for f in d["floors"]:
            if f["name"] in ("atomic_pingpong", "futex_pingpong") and f.get("latency_ns"):
                for ax, key in zip(axes, ["p50", "p99"]):
                    ax.axhline(f["latency_ns"][key], color="black", alpha=0.5,
                               linestyle="-" if f["name"] == "atomic_pingpong" else "--", linewidth=0.8)
                    ax.annotate(f"{f['name']}{d['_tag']}", (1, f["latency_ns"][key]), xycoords=("axes fraction", "data"),
                                ha="right", va="bottom", fontsize=7, alpha=0.7)
    if not any_data:
        plt.close(fig)
        return
    ticks = sorted({r["size"] for d in docs for r in d["results"] if r["mode"] == "pingpong"})
    for ax, key in zip(axes, ["p50", "p99"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(ns_label))
        ax.set_xticks(ticks)
        ax.set_xticklabels([size_label(t) for t in ticks], rotation=30)
        ax.set_xlabel("message size")
        ax.set_ylabel(f"round trip {key}, log scale")
        ax.set_title(f"round trip {key} (solid: spin, dashed: blocking)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")  # the same series in both panels: one legend
    finish(fig, docs, "spin vs blocking: ping-pong round trip vs message size",
           os.path.join(out_dir, "spin_vs_blocking.png"))


def fmt_ns(ns):
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def fmt_rate(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def markdown(docs):
    """The results as Markdown tables (floors, then results), for benchmarks/README.md."""
    out = []
    for d in docs:
        out.append(f"`{d['command']}`{d['_tag']}\n")
        out.append("| floor | size | p50 | p90 | p99 | p99.9 | max | GB/s |")
        out.append("|---|---|---|---|---|---|---|---|")
        for f in d["floors"]:
            lat = f.get("latency_ns") or {}
            size = size_label(f["size"]) if f.get("size") else "-"
            gb = f"{f['gb_per_s']:.2f}" if f.get("gb_per_s") else "-"
            cells = " | ".join(fmt_ns(lat.get(k)) for k in ("p50", "p90", "p99", "p99.9", "max"))
            out.append(f"| {f['name']} | {size} | {cells} | {gb} |")
        out.append("")
        out.append("| transport | mode | wait | size | msg/s | GB/s | p50 | p99 | p99.9 | p99.99 | max | vs floor |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in d["results"]:
            lat = r.get("latency_ns") or {}
            ratio = r.get("ratio_to_floor")
            what = "p50" if r["mode"] == "pingpong" else "GB/s"
            vs = f"{ratio:.2f}× {r['floor']} {what}" if ratio is not None else "-"
            out.append(f"| {r['transport']} | {r['mode']} | {r['wait']} | {size_label(r['size'])} | "
                       f"{fmt_rate(r['msgs_per_s'])} | {r['gb_per_s']:.3f} | "
                       + " | ".join(fmt_ns(lat.get(k)) for k in ("p50", "p99", "p99.9", "p99.99", "max"))
                       + f" | {vs} |")
        out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="+", help="eshm-bench/2 (or /1) JSON files")
    parser.add_argument("--out", default=".", help="directory for the PNGs")
    parser.add_argument("--sizes", default="",
                        help="sizes for the percentile charts, comma-separated (default: 64 and 65536 when present)")
    parser.add_argument("--markdown", default="", help="also write the results as Markdown tables to this file")
    args = parser.parse_args()
    docs = load(args.json)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(docs))
        print(f"wrote {args.markdown}")
    os.makedirs(args.out, exist_ok=True)
    present = sorted({r["size"] for d in docs for r in d["results"]})
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [s for s in (64, 65536) if s in present] or present[:1]
    for mode in ("pingpong", "stream"):
        for size in sizes:
            plot_percentiles(docs, mode, size, args.out)
    plot_throughput(docs, args.out)
    plot_spin_vs_blocking(docs, args.out)


if __name__ == "__main__":
    main()
