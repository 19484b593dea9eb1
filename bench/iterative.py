#!/usr/bin/env python3
"""Filtered nearest-neighbour queries under each iterative-scan mode, vs_hnsw beside pgvector's
hnsw in the same server (bench/iterative.sh): Fashion-MNIST's 60,000 training images as 784-d
pixel vectors with their category, 200 test images as queries, each filtered to a category
drawn at random (seeded): about 10 % of the rows pass, and most of a query's nearest rows do not.

For off, relaxed_order and strict_order: QPS (one client), recall@10 against the exact filtered
answer, rows returned (LIMIT 10), the share of queries whose rows come back out of distance
order, and the QPS of the same queries without the filter. JSON and markdown into OUT
(bench/results).

  iterative.py CONNINFO OUT [--rows N --queries Q]
"""
import argparse
import gzip
import io
import json
import os
import struct
import time

import numpy as np
import psycopg2

SRC = "/usr/share/datasets/fashion-mnist"
SEED = 7
MODES = ["off", "relaxed_order", "strict_order"]
SYSTEMS = {
    "vs_hnsw": {"ext": "visual_search", "type": "embedding", "am": "vs_hnsw", "ops": "embedding_l2_ops", "guc": "vs_hnsw"},
    "pgvector": {"ext": "vector", "type": "vector", "am": "hnsw", "ops": "vector_l2_ops", "guc": "hnsw"},
}
ap = argparse.ArgumentParser()
ap.add_argument("conninfo")
ap.add_argument("out")
ap.add_argument("--rows", type=int, default=60000)
ap.add_argument("--queries", type=int, default=200)
a = ap.parse_args()
full = a.rows == 60000 and a.queries == 200
out = a.out if full else os.path.join(a.out, "tmp")  # bench/results/tmp is ignored by git


def idx(name):
    with gzip.open(f"{SRC}/{name}.gz", "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim:], np.uint8).reshape(dims)


train = idx("train-images-idx3-ubyte")[:a.rows].reshape(a.rows, 784).astype(np.float32)
labels = idx("train-labels-idx1-ubyte")[:a.rows].astype(np.int32)
queries = idx("t10k-images-idx3-ubyte")[:a.queries].reshape(a.queries, 784).astype(np.float32)
wanted = np.random.default_rng(SEED).integers(0, 10, a.queries)


def literal(v):
    return "[" + ",".join(str(int(x)) for x in v) + "]"


def exact(qi):
    rows = np.flatnonzero(labels == wanted[qi])
    d = ((train[rows] - queries[qi]) ** 2).sum(1)
    return set(rows[np.argsort(d, kind="stable")[:10]].tolist())


truth = [exact(i) for i in range(a.queries)]
qtext = [literal(q) for q in queries]


def connect(conninfo, db=None):
    c = psycopg2.connect(conninfo if db is None else f"{conninfo} dbname={db}")
    c.autocommit = True
    return c, c.cursor()


def load(name, s):
    _, admin = connect(a.conninfo)
    admin.execute(f"DROP DATABASE IF EXISTS bench_{name}")
    admin.execute(f"CREATE DATABASE bench_{name}")
    conn, cur = connect(a.conninfo, f"bench_{name}")
    cur.execute(f"CREATE EXTENSION {s['ext']}")
    cur.execute(f"CREATE TABLE items (id int PRIMARY KEY, category int, v {s['type']}(784))")
    text = "".join(f"{i}\t{labels[i]}\t{literal(train[i])}\n" for i in range(a.rows))
    cur.copy_expert("COPY items FROM STDIN", io.StringIO(text))
    t0 = time.time()
    cur.execute(f"CREATE INDEX ON items USING {s['am']} (v {s['ops']})")
    build = time.time() - t0
    cur.execute("ANALYZE items")
    print(f"[{name}] loaded {a.rows} rows, index built in {build:.1f} s", flush=True)
    return cur, build


def measure(cur, s, mode):
    cur.execute(f"SET {s['guc']}.iterative_scan = {mode}")
    cur.execute("SET enable_seqscan = off")
    sql = f"SELECT id, v <-> %s::{s['type']} FROM items WHERE category = %s ORDER BY v <-> %s::{s['type']} LIMIT 10"
    hits = returned = unordered = 0
    t0 = time.time()
    for i in range(a.queries):
        cur.execute(sql, (qtext[i], int(wanted[i]), qtext[i]))
        rows = cur.fetchall()
        returned += len(rows)
        hits += len(truth[i] & {r[0] for r in rows})
        d = [r[1] for r in rows]
        unordered += any(x > y for x, y in zip(d, d[1:]))
    secs = time.time() - t0
    # The same queries without the filter: what the mode costs a query the first beam answers.
    plain = f"SELECT id FROM items ORDER BY v <-> %s::{s['type']} LIMIT 10"
    t0 = time.time()
    for i in range(a.queries):
        cur.execute(plain, (qtext[i],))
        cur.fetchall()
    unfiltered = time.time() - t0
    return {"qps": round(a.queries / secs, 1), "unfiltered_qps": round(a.queries / unfiltered, 1), "recall_at_10": round(hits / (10 * a.queries), 4),
            "rows_per_query": round(returned / a.queries, 2), "queries_out_of_order": round(unordered / a.queries, 4)}


res = {"rows": a.rows, "queries": a.queries, "ef_search": 40, "limit": 10, "filter": "category = one of 10, drawn per query",
       "loadavg_1min_start": os.getloadavg()[0], "systems": {}}
for name, s in SYSTEMS.items():
    cur, build = load(name, s)
    res["systems"][name] = {"build_s": round(build, 1), "modes": {}}
    for mode in MODES:
        measure(cur, s, mode)  # warm the cache
        m = measure(cur, s, mode)
        res["systems"][name]["modes"][mode] = m
        print(f"[{name}] {mode}: {m}", flush=True)
res["loadavg_1min_end"] = os.getloadavg()[0]

os.makedirs(out, exist_ok=True)
with open(f"{out}/iterative.json", "w") as f:
    json.dump(res, f, indent=1)
lines = [f"# Filtered queries under each iterative-scan mode ({a.rows} × 784 Fashion-MNIST, {a.queries} queries)", "",
         f"Filter: {res['filter']} (about 10 % of the rows pass); ef_search 40, LIMIT 10, one client; "
         f"load average {res['loadavg_1min_start']:.1f} → {res['loadavg_1min_end']:.1f}.", "",
         "| system | mode | QPS | recall@10 | rows per query | queries out of order | QPS without the filter |", "|---|---|---|---|---|---|---|"]
for name, r in res["systems"].items():
    for mode, m in r["modes"].items():
        lines.append(f"| {name} | {mode} | {m['qps']} | {m['recall_at_10']} | {m['rows_per_query']} | {m['queries_out_of_order']} | {m['unfiltered_qps']} |")
with open(f"{out}/iterative.md", "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
