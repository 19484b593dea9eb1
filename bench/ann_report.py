#!/usr/bin/env python3
"""Writes bench/results/ann.md from the harness's JSON (bench/ann.sh), next to pgvector 0.8.6's
figures from ../shared/reference/pgvector-baseline.md (same harness, same kind of machine)."""
import json
import os

R = os.path.join(os.path.dirname(__file__), "results")
# pgvector 0.8.6, HNSW m=16 ef_construction=64 (reference section 3): ef_search -> (recall, QPS)
PGV = {10: (0.9677, 2135), 20: (0.9890, 1497), 40: (0.9952, 1198), 80: (0.9982, 826),
       160: (0.9992, 529), 320: (0.9996, 313)}
PGV_BUILD = {0: 27.4, 1: 13.9}
PGV_SIZE_MIB = 234.4
PGV_INSERT = {"single": (427, 446), "batch:100": (507, 587), "copy:1000": (460, 619)}

out = ["# vs_hnsw on fashion-mnist-784-euclidean (60,000 × 784, 1,000 queries, k = 10)", "",
       "Measured with `bash bench/ann.sh` (the team's `../shared/bench/ann_bench.py`, settings as in",
       "`../shared/reference/pgvector-baseline.md`); pgvector 0.8.6 figures are that file's.", ""]
for w in (0, 1):
    p = os.path.join(R, f"ann-search-w{w}.json")
    if not os.path.exists(p):
        continue
    d = json.load(open(p))
    b = d["build"]
    out += [f"## Search, index built with max_parallel_maintenance_workers = {w}", "",
            f"build **{b['build_s']:.1f} s** (pgvector {PGV_BUILD[w]} s), "
            f"index **{b['index_bytes'] / 2**20:.1f} MiB** (pgvector {PGV_SIZE_MIB} MiB)", "",
            "| ef_search | recall@10 | QPS | p50 ms | p99 ms | pgvector recall | pgvector QPS | QPS ratio |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in d["runs"]:
        ef = int(r["value"])
        pr, pq = PGV.get(ef, (None, None))
        ratio = f"{r['qps'] / pq:.2f}×" if pq else ""
        out.append(f"| {ef} | {r['recall@10']:.4f} | {r['qps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                   f"{pr if pr else ''} | {pq if pq else ''} | {ratio} |")
    out.append("")
p = os.path.join(R, "ann-insert.json")
if os.path.exists(p):
    d = json.load(open(p))
    out += ["## Inserts into the indexed table (50,000 rows indexed, 10,000 inserted)", "",
            "| mode | rows/s | txn p50 ms | recall@10 after (ef 40) | pgvector rows/s |", "|---|---:|---:|---:|---:|"]
    for m in d["modes"]:
        lo, hi = PGV_INSERT.get(m["mode"], ("", ""))
        out.append(f"| {m['mode']} | {m['rows_per_s']:.0f} | {m['txn_p50_ms']:.2f} | {m['verify']['recall@10']:.4f} | {lo}–{hi} |")
    out.append("")
open(os.path.join(R, "ann.md"), "w").write("\n".join(out))
print("\n".join(out))
