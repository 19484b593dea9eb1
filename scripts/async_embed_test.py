#!/usr/bin/env python3
"""Auto-embedding in the background on a live server (issue #16), with real Fashion-MNIST photos
and the real embedding service: a COPY of 2,000 rows stored without vectors and drained (the
drainer in pg_stat_activity, the queue view's counts while it works), every vector equal to
image_embed of the row's image and each row written once, the vs_hnsw index answering for the
drained rows; 4 writers inserting, updating, deleting and rolling back while the queue drains; a
bad image recorded while the rest is drained; disable_auto_embed with work pending; the drainer
terminated mid-drain; SIGKILL of the server mid-drain, then wait_for_embeddings drains the rest;
the same with the library preloaded, where the server's start drains it without any call. Also
prints the COPY times without trigger, with the synchronous and with the asynchronous one.
Prints "async_embed_test: N passed, 0 failed". Run by async_embed_test.sh.
Usage: async_embed_test.py CLUSTER_DIR"""
import io
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing

import psycopg2

cluster = sys.argv[1]
passed = 0
DRAINER = "visual_search auto-embed"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def check(name, ok, detail=""):
    global passed
    print(f"async_embed_test: {'ok' if ok else 'FAIL'}: {name}{': ' + str(detail) if detail != '' else ''}", flush=True)
    if not ok:
        sys.exit(1)
    passed += 1


def conninfo():
    with open(os.path.join(cluster, "conninfo")) as f:
        return f.read().strip()


def connect():
    c = psycopg2.connect(conninfo())
    c.autocommit = True
    return c


def one(cur, q, *args):
    cur.execute(q, args or None)
    return cur.fetchone()[0]


def photos():
    """Fashion-MNIST PNGs, as scripts/fashion_mnist.py writes them: distinct real images."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/fashion_mnist.py"), "--limit", "6000"],
                         check=True, capture_output=True, text=True).stdout
    return [bytes.fromhex(line.split("\t")[4][3:]) for line in out.splitlines()]


PHOTOS = photos()


def copy_rows(cur, table, ids, bad=()):
    """COPY (id, image) rows with the photo of each id; ids in `bad` get a text instead."""
    lines = []
    for i in ids:
        img = b"not an image" if i in bad else PHOTOS[i % len(PHOTOS)]
        lines.append(f"{i}\t\\\\x{img.hex()}\n")
    t = time.monotonic()
    cur.copy_expert(f"COPY {table} (id, image) FROM STDIN", io.StringIO("".join(lines)))
    return time.monotonic() - t


def make_table(cur, name, mode="async", index=False):
    cur.execute(f"DROP TABLE IF EXISTS {name}")
    cur.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, image bytea, embedding embedding(32))")
    if index:
        cur.execute(f"CREATE INDEX {name}_embedding ON {name} USING vs_hnsw (embedding embedding_l2_ops)")
    if mode:
        cur.execute("SELECT visual_search.enable_auto_embed(%s, 'image', 'embedding', mode => %s)", (name, mode))


def queue(cur, table):
    cur.execute("SELECT pending, in_progress, done, failed, rows_per_s FROM visual_search.embedding_queues WHERE tbl = %s::regclass",
                (table,))
    r = cur.fetchone()
    return dict(zip(["pending", "in_progress", "done", "failed", "rows_per_s"], r)) if r else None


def right(cur, table):
    """Rows with an image whose vector is image_embed of it, bitwise, and rows without a vector."""
    cur.execute(f"SELECT count(*) FILTER (WHERE CASE WHEN embedding IS NULL THEN false ELSE embedding = image_embed(image) END), "
                f"count(*) FILTER (WHERE embedding IS NULL), count(*) FROM {table} WHERE image IS NOT NULL")
    return cur.fetchone()


def drainers(cur):
    return one(cur, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = %s AND datname = current_database()", DRAINER)


def wait_mid_drain(cur, table, claimed=False, timeout=60):
    """Waits until the drainer has written some rows of `table` and has more to do (`claimed`:
    and holds a claim on some)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        q = queue(cur, table)
        if q["done"] > 0 and q["pending"] > 0 and (q["in_progress"] > 0 or not claimed):
            return q
        time.sleep(0.005)
    return queue(cur, table)


def server_pids():
    with open(os.path.join(cluster, "data", "postmaster.pid")) as f:
        pm = int(f.readline())
    children = subprocess.run(["pgrep", "-P", str(pm)], capture_output=True, text=True).stdout.split()
    return pm, [int(c) for c in children]


def kill_server():
    pm, children = server_pids()
    for p in [pm] + children:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for _ in range(200):
        if not any(os.path.exists(f"/proc/{p}") for p in [pm] + children):
            break
        time.sleep(0.05)
    os.remove(os.path.join(cluster, "data", "postmaster.pid"))


def pgcluster(cmd):
    subprocess.run(["bash", os.path.join(ROOT, "scripts/pgcluster.sh"), cmd, cluster], check=True, stdout=subprocess.DEVNULL)


def server_log():
    with open(os.path.join(cluster, "server.log"), errors="replace") as f:
        return f.read()


N = 2000
ids = list(range(1, N + 1))

with closing(connect()) as c, c.cursor() as cur:
    cur.execute("SET client_min_messages = warning")
    started = one(cur, "SELECT pg_postmaster_start_time()")

    # COPY of 2,000 photos: stored without vectors in the COPY's transaction, then drained.
    make_table(cur, "products", index=True)
    c.autocommit = False
    copy_s = copy_rows(cur, "products", ids)
    check("COPY in async mode stores the rows without vectors and queues them in its transaction",
          right(cur, "products")[1] == N and queue(cur, "products")["pending"] == N, f"COPY of {N} rows in {copy_s:.2f} s")
    c.commit()
    c.autocommit = True
    t0 = time.monotonic()
    seen = {"drainer": 0, "in_progress": 0, "rows_per_s": 0.0, "pending_max": 0}
    while time.monotonic() - t0 < 120:
        q = queue(cur, "products")
        seen["drainer"] = max(seen["drainer"], drainers(cur))
        seen["in_progress"] = max(seen["in_progress"], q["in_progress"])
        seen["rows_per_s"] = max(seen["rows_per_s"], q["rows_per_s"])
        seen["pending_max"] = max(seen["pending_max"], q["pending"])
        if q["pending"] + q["in_progress"] == 0:
            break
        time.sleep(0.01)
    drain_s = time.monotonic() - t0
    check("the drainer shows in pg_stat_activity while it works", seen["drainer"] == 1, seen)
    check("embedding_queues counts pending and in-progress rows and the rate while it drains",
          seen["in_progress"] > 0 and seen["rows_per_s"] > 0 and seen["pending_max"] > 0, seen)
    check("wait_for_embeddings: the queue is empty", one(cur, "SELECT visual_search.wait_for_embeddings('products', '2 min')") is True,
          f"{N} rows drained in {drain_s:.2f} s: {N / drain_s:.0f} rows/s")
    ok_rows, nulls, rows = right(cur, "products")
    check("every drained vector is bitwise image_embed of its row's image", ok_rows == N and nulls == 0, f"{ok_rows} of {rows}")
    q = queue(cur, "products")
    check("each row written once (done counts writes)", q["done"] == N and q["failed"] == 0, q)
    cur.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in (cur.execute("EXPLAIN SELECT id FROM products ORDER BY embedding <-> (SELECT embedding FROM products "
                                                "WHERE id = 1) LIMIT 1") or cur.fetchall()))
    found = one(cur, "SELECT count(*) FROM products p WHERE id % 20 = 0 AND (SELECT p2.embedding <-> p.embedding FROM products p2 "
                     "ORDER BY p2.embedding <-> p.embedding LIMIT 1) = 0")
    cur.execute("RESET enable_seqscan")
    check("the vs_hnsw index answers for the drained rows", "products_embedding" in plan and found == N // 20,
          f"{found} of {N // 20} sampled rows find themselves first")

    # 4 writers at once while the queue drains: inserts, image updates (often twice before their
    # turn), deletes, rolled-back transactions.
    make_table(cur, "busy")
    errors, rolled_back = [], []

    def writer(k):
        rnd = random.Random(k)
        try:
            with closing(connect()) as w, w.cursor() as wc:
                w.autocommit = False
                mine = []
                for t in range(30):
                    base = 100000 * (k + 1) + 10 * t
                    new = list(range(base, base + 10))
                    wc.executemany("INSERT INTO busy VALUES (%s, %s)", [(i, PHOTOS[rnd.randrange(len(PHOTOS))]) for i in new])
                    for i in rnd.sample(mine, min(3, len(mine))):
                        for _ in range(rnd.choice([1, 2])):
                            wc.execute("UPDATE busy SET image = %s WHERE id = %s", (PHOTOS[rnd.randrange(len(PHOTOS))], i))
                    if mine and rnd.random() < 0.3:
                        wc.execute("DELETE FROM busy WHERE id = %s", (mine.pop(rnd.randrange(len(mine))),))
                    if t % 5 == 4:
                        w.rollback()
                        rolled_back.extend(new)
                    else:
                        w.commit()
                        mine.extend(new)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    check("4 writers while the queue drains: no errors", not errors, errors[:1])
    check("wait_for_embeddings after the writers", one(cur, "SELECT visual_search.wait_for_embeddings('busy', '2 min')") is True)
    ok_rows, nulls, rows = right(cur, "busy")
    check("every committed row has its newest image's vector", ok_rows == rows and nulls == 0 and rows > 0,
          f"{ok_rows} of {rows} right, {nulls} without vector")
    check("rolled-back rows are neither stored nor queued",
          one(cur, "SELECT count(*) FROM busy WHERE id = ANY(%s)", rolled_back) == 0
          and one(cur, "SELECT count(*) FROM visual_search.embedding_queue WHERE tbl = 'busy'::regclass") == 0,
          f"{len(rolled_back)} rows rolled back")
    check("deleted and updated rows left no failure", queue(cur, "busy")["failed"] == 0, queue(cur, "busy"))

    # A bad image among 200: recorded with its SQLSTATE, the others drained.
    make_table(cur, "mixed")
    copy_rows(cur, "mixed", range(1, 201), bad={77})
    check("a bad image among 200", one(cur, "SELECT visual_search.wait_for_embeddings('mixed')") is True)
    cur.execute("SELECT key, sqlstate, message FROM visual_search.embedding_failures WHERE tbl = 'mixed'::regclass")
    failures = cur.fetchall()
    ok_rows, nulls, rows = right(cur, "mixed")
    check("it is recorded with 22P03 and does not hold up the rest", failures == [(["77"], "22P03", failures[0][2] if failures else "")]
          and ok_rows == 199 and nulls == 1, failures)

    # disable_auto_embed with work pending: what is queued is dropped, nothing is written after.
    make_table(cur, "dropped")
    copy_rows(cur, "dropped", ids)
    q = wait_mid_drain(cur, "dropped")
    del c.notices[:]
    cur.execute("SET client_min_messages = notice")
    cur.execute("SELECT visual_search.disable_auto_embed('dropped', 'embedding')")
    cur.execute("SET client_min_messages = warning")
    m = re.search(r"(\d+) queued rows", " ".join(c.notices))
    n_dropped = int(m.group(1)) if m else -1
    nulls_now = right(cur, "dropped")[1]
    time.sleep(1.5)
    check("disable_auto_embed with work pending drops it, and the drainer writes nothing after",
          0 < n_dropped < N and nulls_now == n_dropped and right(cur, "dropped")[1] == n_dropped
          and one(cur, "SELECT count(*) FROM visual_search.embedding_queue WHERE tbl = 'dropped'::regclass") == 0,
          f"{n_dropped} rows dropped mid-drain ({q}), {nulls_now} left without vector")

    # The drainer terminated mid-drain: its claims are taken again.
    make_table(cur, "terminated")
    copy_rows(cur, "terminated", ids)
    wait_mid_drain(cur, "terminated")
    pid = one(cur, "SELECT pid FROM pg_stat_activity WHERE backend_type = %s AND datname = current_database()", DRAINER)
    cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    check("wait_for_embeddings after the drainer was terminated mid-drain",
          one(cur, "SELECT visual_search.wait_for_embeddings('terminated', '2 min')") is True
          and one(cur, "SELECT pid FROM pg_stat_activity WHERE backend_type = %s AND datname = current_database()", DRAINER) != pid)
    ok_rows, nulls, _ = right(cur, "terminated")
    check("and every row is embedded once", ok_rows == N and nulls == 0 and queue(cur, "terminated")["done"] == N, queue(cur, "terminated"))

    # COPY times: no trigger, the synchronous trigger, the asynchronous one (not asserted).
    times = {}
    for mode in [None, "sync", "async"]:
        make_table(cur, "timing", mode=mode)
        times[mode or "none"] = copy_rows(cur, "timing", ids)
    cur.execute("DROP TABLE timing")
    print(f"async_embed_test: COPY of {N} rows: no trigger {times['none']:.3f} s, sync {times['sync']:.3f} s, "
          f"async {times['async']:.3f} s", flush=True)
    check("the server never restarted so far", one(cur, "SELECT pg_postmaster_start_time()") == started)

    # SIGKILL of the server while the queue drains.
    make_table(cur, "crash1")
    copy_rows(cur, "crash1", ids)
    q = wait_mid_drain(cur, "crash1", claimed=True)

kill_server()
pgcluster("start")
with closing(connect()) as c, c.cursor() as cur:
    log = server_log()
    check("SIGKILL mid-drain (with rows claimed), then crash recovery",
          q["in_progress"] > 0 and ("was interrupted" in log or "not properly shut down" in log), f"killed at {q}")
    check("wait_for_embeddings drains the rest after recovery",
          one(cur, "SELECT visual_search.wait_for_embeddings('crash1', '3 min')") is True)
    ok_rows, nulls, _ = right(cur, "crash1")
    q = queue(cur, "crash1")
    check("every row embedded once from its image", ok_rows == N and nulls == 0 and q["done"] == N and q["failed"] == 0,
          f"{ok_rows} right, {nulls} without vector, {q}")
    cur.execute("ALTER SYSTEM SET shared_preload_libraries = 'visual_search'")

# Preloaded: the server's start drains what a crash left, without any call.
pgcluster("stop")
pgcluster("start")
with closing(connect()) as c, c.cursor() as cur:
    cur.execute("SET client_min_messages = warning")
    make_table(cur, "crash2")
    copy_rows(cur, "crash2", ids)
    q = wait_mid_drain(cur, "crash2", claimed=True)
kill_server()
pgcluster("start")
with closing(connect()) as c, c.cursor() as cur:
    t0 = time.monotonic()
    while time.monotonic() - t0 < 180:
        q2 = queue(cur, "crash2")
        if q2["pending"] + q2["in_progress"] == 0:
            break
        time.sleep(0.05)
    drained_s = time.monotonic() - t0
    ok_rows, nulls, _ = right(cur, "crash2")
    q2 = queue(cur, "crash2")
    check("preloaded: after a SIGKILL mid-drain the server's start drains the rest, nobody asking",
          q["in_progress"] > 0 and ok_rows == N and nulls == 0 and q2["done"] == N, f"killed at {q}, then {q2} {drained_s:.1f} s after the restart")
    log = server_log()
    check("no backend crashed", "terminated by signal 11" not in log and "PANIC" not in log)

print(f"async_embed_test: {passed} passed, 0 failed")
