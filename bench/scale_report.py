#!/usr/bin/env python3
"""bench/results/scale.md and scale.png from bench/scale.py's scale.json: each cost at each
catalogue size, vs_hnsw beside pgvector, the ratios the issue sets targets for, and a log-log
plot of build time and QPS against rows.   scale_report.py bench/results/scale.json"""
import json
import os
import sys

d = json.load(open(sys.argv[1]))
out_dir = os.path.dirname(os.path.abspath(sys.argv[1]))
runs = {(r["system"], r["rows"]): r for r in d["runs"]}
systems = [s for s in ("vs_hnsw", "pgvector") if any(k[0] == s for k in runs)]
sizes = d["sizes"]
clients = d["clients"]


def at(r, target, key, who="one_client"):
    hit = (r.get("at_recall") or {}).get(str(target))
    return hit[who][key] if hit else None


def fmt(v):
    if v is None:
        return "—"
    return f"{v:,.1f}" if isinstance(v, float) else (f"{v:,}" if isinstance(v, int) else str(v))


ROWS = [
    ("build, serial (s)", lambda r: r["builds"].get("0", {}).get("seconds"), "lower"),
    ("build, 1 worker (s)", lambda r: r["builds"].get("1", {}).get("seconds"), "lower"),
    ("build, 2 workers (s)", lambda r: r["builds"].get("2", {}).get("seconds"), "lower"),
    ("peak memory of the building backend, serial (MB)", lambda r: r["builds"].get("0", {}).get("peak_mb"), "lower"),
    ("build in maintenance_work_mem = 256MB (s)", lambda r: (r.get("build_256mb") or {}).get("seconds"), "lower"),
    ("index size (MB)", lambda r: r["index_mb"], "lower"),
    ("ef_search for recall@10 ≥ 0.95", lambda r: at(r, 0.95, "ef"), None),
    ("QPS at recall ≥ 0.95, 1 client", lambda r: at(r, 0.95, "qps"), "higher"),
    (f"QPS at recall ≥ 0.95, {clients} clients", lambda r: at(r, 0.95, "qps", f"{clients}_clients"), "higher"),
    ("p50 / p99 ms at recall ≥ 0.95", lambda r: f"{at(r, 0.95, 'p50_ms')} / {at(r, 0.95, 'p99_ms')}" if at(r, 0.95, "ef") else None, None),
    ("ef_search for recall@10 ≥ 0.99", lambda r: at(r, 0.99, "ef"), None),
    ("QPS at recall ≥ 0.99, 1 client", lambda r: at(r, 0.99, "qps"), "higher"),
    (f"QPS at recall ≥ 0.99, {clients} clients", lambda r: at(r, 0.99, "qps", f"{clients}_clients"), "higher"),
    ("p50 / p99 ms at recall ≥ 0.99", lambda r: f"{at(r, 0.99, 'p50_ms')} / {at(r, 0.99, 'p99_ms')}" if at(r, 0.99, "ef") else None, None),
    ("inserts into the indexed table (rows/s)", lambda r: r["insert_rows_per_s"], "higher"),
    ("VACUUM after deleting 10 % (s)", lambda r: r["vacuum_s"], "lower"),
]

lines = [f"# A catalogue as it grows: vs_hnsw beside pgvector ({', '.join(f'{n:,}' for n in sizes)} products)", "",
         "`make bench-scale` (bench/catalogue.py, bench/scale.py, this report): learned 128-d vectors of the shipped",
         "`fashion-vgg16` for distinct augmented Fashion-MNIST photos, embedded by the server; "
         f"{d['queries']:,} held-out queries, exact top 10 as the truth; m = 16, ef_construction = 64 for both;",
         "each system in a database of its own on the same server, in the same run. Ratio: vs_hnsw's advantage",
         "(> 1 is better for vs_hnsw whether lower or higher is better for the figure).", ""]
for n in sizes:
    lines += [f"## {n:,} rows", "", "| figure | " + " | ".join(systems) + " | ratio |", "|---|" + "---:|" * (len(systems) + 1)]
    for name, get, better in ROWS:
        vals = [get(runs[(s, n)]) if (s, n) in runs else None for s in systems]
        ratio = ""
        if better and len(vals) == 2 and all(isinstance(v, (int, float)) and v for v in vals):
            ratio = f"{(vals[1] / vals[0]) if better == 'lower' else (vals[0] / vals[1]):.2f}×"
        if all(v is None for v in vals):
            continue
        lines.append(f"| {name} | " + " | ".join(fmt(v) for v in vals) + f" | {ratio} |")
    for s in systems:
        r = runs.get((s, n))
        if r and r.get("recall_256mb"):
            hit = r["recall_256mb"].get("0.95")
            lines.append(f"\n{s}, built in 256MB: recall {hit['one_client']['recall'] if hit else '< 0.95'} at ef_search "
                         f"{hit['one_client']['ef'] if hit else '—'}.")
    lines.append("")
lines += ["![build time and QPS against rows](scale.png)", ""]
open(os.path.join(out_dir, "scale.md"), "w").write("\n".join(lines))
print("\n".join(lines))

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("scale_report.py: no matplotlib (apt-get install python3-matplotlib): scale.png not written")
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
for s, colour in zip(systems, ("tab:blue", "tab:orange")):
    ns = [n for n in sizes if (s, n) in runs]
    for workers, style in (("0", "-"), ("1", "--")):
        ys = [runs[(s, n)]["builds"].get(workers, {}).get("seconds") for n in ns]
        left.plot(ns, ys, style, marker="o", color=colour, label=f"{s}, {'serial' if workers == '0' else '1 worker'}")
    for target, style in ((0.95, "-"), (0.99, "--")):
        right.plot(ns, [at(runs[(s, n)], target, "qps") for n in ns], style, marker="o", color=colour, label=f"{s}, recall ≥ {target}")
for ax, title, unit in ((left, "index build", "seconds"), (right, "search, one client", "queries per second")):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(out_dir, "scale.png"), dpi=110)
