#!/usr/bin/env python3
"""Auto-embedding in the background against the synchronous trigger and no trigger (issue #16,
point 4): the COPY statement's time for ROWS Fashion-MNIST photos into a table without a trigger,
with mode 'sync' and with mode 'async' (3 runs each, the median); the time the drainer then takes
to embed them (rows/s, from the commit to wait_for_embeddings' return) beside embed_column's on the
same rows and model (3 runs each, interleaved, the medians); and the queue's lag
(oldest_pending_age) while a writer inserts 200 rows/s for 60 s. Writes async_embed.json and
async_embed.md into OUTDIR. Usage: async_embed.py CONNINFO ROWS OUTDIR"""
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import closing

import psycopg2

conninfo, rows, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
tsv = subprocess.run([sys.executable, os.path.join(root, "scripts/fashion_mnist.py"), "--limit", str(rows)],
                     check=True, capture_output=True, text=True).stdout.splitlines()
data = "".join(f"{i}\t{line.split(chr(9))[4]}\n" for i, line in enumerate(tsv[:rows]))
photos = [bytes.fromhex(line.split("\t")[4][3:]) for line in tsv[:2000]]


def connect():
    c = psycopg2.connect(conninfo)
    c.autocommit = True
    return c


def one(cur, q, args=None):
    cur.execute(q, args)
    return cur.fetchone()[0]


def table(cur, mode):
    cur.execute("DROP TABLE IF EXISTS b")
    cur.execute("CREATE TABLE b (id int PRIMARY KEY, image bytea, embedding embedding)")
    if mode:
        cur.execute("SELECT visual_search.enable_auto_embed('b', 'image', 'embedding', mode => %s)", (mode,))


def copy(cur):
    t = time.monotonic()
    cur.copy_expert("COPY b (id, image) FROM STDIN", io.StringIO(data))
    return time.monotonic() - t


def drain(cur):
    t = time.monotonic()
    assert one(cur, "SELECT visual_search.wait_for_embeddings('b', '1 hour')")
    return time.monotonic() - t


out = {"rows": rows, "model": None, "copy_s": {}, "runs": 3}
with closing(connect()) as c, c.cursor() as cur:
    cur.execute("SET client_min_messages = warning")
    # warm the service and the model
    one(cur, "SELECT vector_dims(image_embed(%s))", (psycopg2.Binary(photos[0]),))
    out["model"] = one(cur, "SHOW visual_search.default_model")
    for mode in [None, "async", "sync"]:
        times = []
        for _ in range(out["runs"] if mode != "sync" else 1):
            table(cur, mode)
            if mode == "async":
                # the drainer must not compete with the COPY it is timed against
                c.autocommit = False
                times.append(copy(cur))
                c.rollback()
                c.autocommit = True
            else:
                times.append(copy(cur))
        out["copy_s"][mode or "none"] = statistics.median(times)
        print(f"async_embed: COPY of {rows} rows, {mode or 'no trigger'}: {out['copy_s'][mode or 'none']:.3f} s "
              f"(runs: {', '.join(f'{t:.3f}' for t in times)})", flush=True)
    # drain rate vs embed_column, interleaved (this VM's speed drifts by 20 % within minutes)
    drained, column = [], []
    for _ in range(out["runs"]):
        table(cur, "async")
        copy(cur)
        drained.append(rows / drain(cur))
        table(cur, None)
        copy(cur)
        t = time.monotonic()
        cur.execute("SELECT visual_search.embed_column('b', 'image', 'embedding', 64)")
        column.append(rows / (time.monotonic() - t))
    out["drain_rows_per_s"] = statistics.median(drained)
    out["embed_column_rows_per_s"] = statistics.median(column)
    print(f"async_embed: drained {out['drain_rows_per_s']:.0f} rows/s ({', '.join(f'{r:.0f}' for r in drained)}), "
          f"embed_column (batch 64) {out['embed_column_rows_per_s']:.0f} rows/s ({', '.join(f'{r:.0f}' for r in column)})",
          flush=True)
    # lag under a steady 200 rows/s for 60 s
    table(cur, "async")
    stop, lag = threading.Event(), []

    def writer():
        with closing(connect()) as w, w.cursor() as wc:
            i, t0 = 0, time.monotonic()
            while not stop.is_set():
                wc.executemany("INSERT INTO b VALUES (%s, %s)", [(i + k, psycopg2.Binary(photos[(i + k) % len(photos)])) for k in range(20)])
                i += 20
                time.sleep(max(0.0, t0 + i / 200 - time.monotonic()))

    th = threading.Thread(target=writer)
    th.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        lag.append(one(cur, "SELECT coalesce(extract(epoch FROM oldest_pending_age), 0) FROM visual_search.embedding_queues WHERE tbl = 'b'::regclass"))
        time.sleep(0.25)
    stop.set()
    th.join()
    out["steady_200_rows_per_s_max_lag_s"] = float(max(lag))
    out["steady_200_rows_per_s_mean_lag_s"] = float(sum(lag) / len(lag))
    print(f"async_embed: 200 rows/s for 60 s: lag max {max(lag):.2f} s, mean {sum(lag) / len(lag):.2f} s", flush=True)
    cur.execute("DROP TABLE b")

out["async_over_none"] = out["copy_s"]["async"] / out["copy_s"]["none"]
out["drain_over_embed_column"] = out["drain_rows_per_s"] / out["embed_column_rows_per_s"]
with open(os.path.join(outdir, "async_embed.json"), "w") as f:
    json.dump(out, f, indent=2)
with open(os.path.join(outdir, "async_embed.md"), "w") as f:
    f.write(f"| {rows} Fashion-MNIST rows, {out['model']} | |\n|---|---:|\n")
    f.write(f"| COPY, no trigger | {out['copy_s']['none']:.3f} s |\n| COPY, async | {out['copy_s']['async']:.3f} s "
            f"({out['async_over_none']:.2f}×) |\n| COPY, sync | {out['copy_s']['sync']:.3f} s |\n")
    f.write(f"| drained | {out['drain_rows_per_s']:.0f} rows/s ({out['drain_over_embed_column']:.2f}× embed_column's "
            f"{out['embed_column_rows_per_s']:.0f}) |\n")
    f.write(f"| lag at 200 rows/s for 60 s | max {out['steady_200_rows_per_s_max_lag_s']:.2f} s, mean "
            f"{out['steady_200_rows_per_s_mean_lag_s']:.2f} s |\n")
print(json.dumps(out))
