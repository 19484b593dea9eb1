#!/usr/bin/env python3
"""How every cost grows with the catalogue (issue #19): vs_hnsw beside pgvector's hnsw, each in
a database of its own on the same server, on the learned 128-d vectors of bench/catalogue.py.
At each size: index build time (serial and with parallel workers), peak memory of the building
backend, index size, QPS and p50/p99 latency at recall@10 >= 0.95 and >= 0.99 (one client and
CLIENTS concurrent ones), insert rows/s into the indexed table, VACUUM after deleting 10 %. At
the largest size also the build with maintenance_work_mem = 256MB and its recall.

  scale.py CONNINFO OUT [--sizes 100000,300000,1000000] [--workers 0,1] [--clients 4]
Writes OUT/scale.json (bench/scale_report.py makes the markdown and the plot from it).
"""
import argparse
import json
import os
import threading
import time

import numpy as np
import psycopg2
import psycopg2.extras

from catalogue import write_vectors

CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".bench", "scale")
SYSTEMS = {
    "vs_hnsw": {"ext": "visual_search", "type": "embedding", "am": "vs_hnsw", "ops": "embedding_l2_ops", "ef": "vs_hnsw.ef_search"},
    "pgvector": {"ext": "vector", "type": "vector", "am": "hnsw", "ops": "vector_l2_ops", "ef": "hnsw.ef_search"},
}
EFS = [10, 20, 40, 80, 160, 320, 640]
TARGETS = (0.95, 0.99)
IN_MEMORY = "4GB"  # the graph of a million 128-d vectors fits in either build with room to spare
INSERTS = 10000


def literal(v):
    return "[" + ",".join(f"{x:.6g}" for x in v) + "]"


def connect(conninfo, db=None):
    c = psycopg2.connect(conninfo if db is None else f"{conninfo} dbname={db}")
    c.autocommit = True
    return c, c.cursor()


def database(conninfo, name, ext):
    _, admin = connect(conninfo)
    admin.execute(f"DROP DATABASE IF EXISTS bench_scale_{name}")
    admin.execute(f"CREATE DATABASE bench_scale_{name}")
    conn, cur = connect(conninfo, f"bench_scale_{name}")
    cur.execute(f"CREATE EXTENSION {ext}")
    return conn, cur


def load(cur, s, vectors, labels, n):
    cur.execute("DROP TABLE IF EXISTS items")
    cur.execute(f"CREATE TABLE items (id integer PRIMARY KEY, category integer NOT NULL, e {s['type']}(128) NOT NULL)")
    # 128 floats inline: no TOAST fetch per row in either system.
    cur.execute("ALTER TABLE items ALTER COLUMN e SET STORAGE PLAIN")

    write_vectors(cur, "items (id, category, e)", np.arange(n), vectors[:n], labels[:n])
    cur.execute("VACUUM ANALYZE items")


def peak_kb(pid):
    """VmHWM of a backend: the most memory it has had resident, shared buffers it touched included."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))


def build(conninfo, db, s, workers, mem):
    """Seconds and the building backend's peak memory; a fresh backend, so that the peak is this build's."""
    conn, cur = connect(conninfo, db)
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    cur.execute("DROP INDEX IF EXISTS items_e")
    cur.execute(f"SET maintenance_work_mem = '{mem}'")
    cur.execute(f"SET max_parallel_maintenance_workers = {workers}")
    started = time.time()
    cur.execute(f"CREATE INDEX items_e ON items USING {s['am']} (e {s['ops']})")
    took = time.time() - started
    kb = peak_kb(pid)
    conn.close()
    return {"seconds": round(took, 2), "peak_mb": round(kb / 1024, 1)}


def run_queries(conninfo, db, s, ef, queries, out, lat):
    conn, cur = connect(conninfo, db)
    cur.execute(f"SET {s['ef']} = {ef}")
    cur.execute("SET enable_seqscan = off")
    for qi, q in queries:
        started = time.perf_counter()
        cur.execute(f"SELECT id FROM items ORDER BY e <-> %s::{s['type']} LIMIT 10", (q,))
        out[qi] = [r[0] for r in cur.fetchall()]
        lat[qi] = time.perf_counter() - started
    conn.close()


def search(conninfo, db, s, ef, qtext, truth, clients=1):
    out, lat = [None] * len(qtext), [0.0] * len(qtext)
    parts = [[(i, q) for i, q in enumerate(qtext) if i % clients == c] for c in range(clients)]
    threads = [threading.Thread(target=run_queries, args=(conninfo, db, s, ef, p, out, lat)) for p in parts]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    recall = float(np.mean([len(set(o) & set(t[:10].tolist())) / 10 for o, t in zip(out, truth)]))
    ms = np.array(lat) * 1000
    return {"ef": ef, "recall": round(recall, 4), "qps": round(len(qtext) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def at_targets(conninfo, db, s, qtext, truth, clients):
    """The sweep of ef_search, and for each recall target the first ef that meets it, measured
    again with one client and with `clients`."""
    sweep = []
    for ef in EFS:
        sweep.append(search(conninfo, db, s, ef, qtext, truth))
        print(f"    ef {ef}: recall {sweep[-1]['recall']}, {sweep[-1]['qps']} QPS", flush=True)
        if sweep[-1]["recall"] >= max(TARGETS):
            break
    found = {}
    for target in TARGETS:
        hit = next((r for r in sweep if r["recall"] >= target), None)
        if hit is None:
            found[str(target)] = None
            continue
        many = search(conninfo, db, s, hit["ef"], qtext, truth, clients)
        found[str(target)] = {"one_client": hit, f"{clients}_clients": many}
    return sweep, found


def inserts(cur, s, vectors, labels, start):
    rows = [(i, int(labels[i]), literal(vectors[i])) for i in range(start, start + INSERTS)]
    started = time.time()
    psycopg2.extras.execute_values(cur, f"INSERT INTO items (id, category, e) VALUES %s", rows,
                                   template=f"(%s, %s, %s::{s['type']})", page_size=100)
    return round(INSERTS / (time.time() - started), 1)


def vacuum(cur):
    cur.execute("DELETE FROM items WHERE id % 10 = 0")
    started = time.time()
    cur.execute("VACUUM items")
    return round(time.time() - started, 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("conninfo")
    ap.add_argument("out")
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--workers", default="0,1", help="parallel maintenance workers of the builds at every size")
    ap.add_argument("--largest-workers", default="2", help="more builds at the largest size")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--systems", default="vs_hnsw,pgvector")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    vectors, labels = np.load(f"{CACHE}/vectors.npy"), np.load(f"{CACHE}/labels.npy")
    queries = np.load(f"{CACHE}/queries.npy")[:a.queries]
    qtext = [literal(q) for q in queries]
    assert len(vectors) >= max(sizes) + INSERTS, f"the catalogue needs {max(sizes) + INSERTS:,} rows: run catalogue.py with --rows"
    results = {"sizes": sizes, "queries": len(qtext), "clients": a.clients, "runs": []}
    for name in a.systems.split(","):
        s = SYSTEMS[name]
        db = f"bench_scale_{name}"
        conn, cur = database(a.conninfo, name, s["ext"])
        for n in sizes:
            print(f"[scale] {name} at {n:,} rows", flush=True)
            truth = np.load(f"{CACHE}/truth-{n}.npy")[:a.queries]
            load(cur, s, vectors, labels, n)
            run = {"system": name, "rows": n, "builds": {}}
            workers = [int(w) for w in a.workers.split(",")]
            if n == max(sizes):
                workers += [int(w) for w in a.largest_workers.split(",") if w and int(w) not in workers]
            for w in workers:
                run["builds"][str(w)] = build(a.conninfo, db, s, w, IN_MEMORY)
                print(f"  build with {w} workers: {run['builds'][str(w)]}", flush=True)
            if n == max(sizes):
                run["build_256mb"] = build(a.conninfo, db, s, 0, "256MB")
                print(f"  build in 256MB: {run['build_256mb']}", flush=True)
                run["recall_256mb"] = at_targets(a.conninfo, db, s, qtext, truth, a.clients)[1]
                build(a.conninfo, db, s, max(workers), IN_MEMORY)
            cur.execute("SELECT pg_relation_size('items_e'), pg_relation_size('items')")
            run["index_mb"], run["table_mb"] = [round(b / 2**20, 1) for b in cur.fetchone()]
            run["sweep"], run["at_recall"] = at_targets(a.conninfo, db, s, qtext, truth, a.clients)
            run["insert_rows_per_s"] = inserts(cur, s, vectors, labels, n)
            run["vacuum_s"] = vacuum(cur)
            print(f"  index {run['index_mb']} MB, inserts {run['insert_rows_per_s']} rows/s, VACUUM {run['vacuum_s']} s", flush=True)
            results["runs"].append(run)
            with open(os.path.join(a.out, "scale.json"), "w") as f:
                json.dump(results, f, indent=1)
        conn.close()
        _, admin = connect(a.conninfo)
        admin.execute(f"DROP DATABASE IF EXISTS {db}")


if __name__ == "__main__":
    main()
