#!/usr/bin/env python3
"""image_embed on hostile input, on a live server: peak memory of the backend (VmHWM) for each
hostile image and for an array of 8 large PNGs at the default settings; a superuser who lifts
the ceilings gets a vector or an ERROR, never a crash; statement_timeout, pg_cancel_backend and
pg_terminate_backend end long image_embed and embed_column calls at once (waiting on the
embedding service). Prints
"limits_test: N passed, 0 failed". Usage: limits_test.py CONNINFO BOMBDIR"""
import sys
import threading
import time
from contextlib import closing

import psycopg2
import psycopg2.errors

from live import Checks, one
import live

conninfo, bombs = sys.argv[1], sys.argv[2]
GIB_KB = 1 << 20
check = Checks("limits_test")


def connect():
    return live.connect(conninfo)


def peak_kb(cur):
    return one(cur, r"SELECT substring(pg_read_file('/proc/self/status') FROM 'VmHWM:\s*(\d+)')::int")


def embed_in_fresh_backend(q, *args, setup=()):
    """Runs q in a new backend that runs the engine itself (the service's process decodes the
    same way, with the same bounds); returns (SQLSTATE or 'ok', VmHWM in kB, seconds)."""
    with closing(connect()) as c, c.cursor() as cur:
        for s in ("SET visual_search.embed_in = 'backend'", *setup):
            cur.execute(s)
        t = time.monotonic()
        try:
            cur.execute(q, args)
            state = "ok"
        except psycopg2.Error as e:
            state = e.pgcode
        return state, peak_kb(cur), time.monotonic() - t


with closing(connect()) as c, c.cursor() as cur:
    cur.execute("CREATE EXTENSION IF NOT EXISTS visual_search")
    cur.execute("DROP TABLE IF EXISTS shop")
    cur.execute("CREATE TABLE shop (id int PRIMARY KEY, image bytea, embedding embedding)")
    cur.execute("INSERT INTO shop SELECT i, pg_read_binary_file(%s) FROM generate_series(1, 5000) i",
                (f"{bombs}/sneaker.png",))
    started = one(cur, "SELECT pg_postmaster_start_time()")

# Peak memory: every hostile image alone in a fresh backend, at the default settings.
base_state, base, _ = embed_in_fresh_backend("SELECT image_embed(pg_read_binary_file(%s))", f"{bombs}/sneaker.png")
print(f"limits_test: a backend that embedded one 28 x 28 PNG peaks at {base / 1024:.0f} MiB", flush=True)
for f in ["png_1x1000000.png", "png_1x40000000.png", "png_40000000x1.png", "png_2x20000000.png",
          "png_6324x6324.png", "tiff_1x1000000.tif", "png_1x100000000.png", "jpeg_6000x6000_progressive.jpg"]:
    state, kb, s = embed_in_fresh_backend("SELECT image_embed(pg_read_binary_file(%s))", f"{bombs}/{f}")
    check(f"{f} at the defaults: peak under 1 GiB", kb < GIB_KB and state in ("ok", "54000", "22P03"),
          f"{state}, peak {kb / 1024:.0f} MiB, {s:.2f} s")
state, kb, s = embed_in_fresh_backend(
    "SELECT image_embed(array_fill(pg_read_binary_file(%s), ARRAY[8]))", f"{bombs}/png_6324x6324.png")
check("8 x png(6324, 6324) in one array: peak under 1 GiB", state == "ok" and kb < GIB_KB,
      f"peak {kb / 1024:.0f} MiB, {s:.2f} s (30 of them took 3.6 GB before)")
# The crash of the issue, with a superuser's blessing: the ceilings lifted, no abort.
lifted = ["SET visual_search.max_image_pixels_ceiling = 2147483647", "SET visual_search.max_image_pixels = 2147483647"]
state, kb, s = embed_in_fresh_backend("SELECT image_embed(pg_read_binary_file(%s))", f"{bombs}/png_1x100000000.png",
                                      setup=lifted)
check("png(1, 100000000) with the ceilings lifted: a vector, no crash", state == "ok",
      f"peak {kb / 1024:.0f} MiB, {s:.2f} s")
with closing(connect()) as c, c.cursor() as cur:
    check("the server never restarted", one(cur, "SELECT pg_postmaster_start_time()") == started)


def warm_up(cur):
    """Has the embedding service load the model (about a second), so that what is timed is the
    work; the cancels below end a backend's wait for the service."""
    cur.execute("SELECT image_embed(image) FROM shop WHERE id = 1")


def cancel_latency(q, how):
    """Starts q in a backend, asks `how` (cancel / terminate) after 1 s; returns (error class, seconds
    from the ask to the end of the call)."""
    c = connect()
    cur = c.cursor()
    pid = one(cur, "SELECT pg_backend_pid()")
    warm_up(cur)
    done = {}

    def run():
        try:
            cur.execute(q)
            done["error"] = None
        except psycopg2.Error as e:
            done["error"] = e
        done["at"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.0)
    with closing(connect()) as k, k.cursor() as kc:
        asked = time.monotonic()
        kc.execute(f"SELECT pg_{how}_backend(%s)", (pid,))
    t.join(60)
    try:
        c.close()
    except psycopg2.Error:
        pass
    return done.get("error"), done.get("at", float("inf")) - asked


long_array = "SELECT image_embed(array_agg(image)) FROM shop"
long_column = "SELECT visual_search.embed_column('shop', 'image', 'embedding', batch => 5000)"
for name, q in [("a 5,000-image array", long_array), ("embed_column with batch 5000", long_column)]:
    err, s = cancel_latency(q, "cancel")
    check(f"pg_cancel_backend ends {name}", isinstance(err, psycopg2.errors.QueryCanceled) and s < 1.0,
          f"{s * 1000:.0f} ms after the cancel (4.2-4.4 s before)")
err, s = cancel_latency(long_array, "terminate")
check("pg_terminate_backend ends a 5,000-image array", isinstance(err, psycopg2.OperationalError) and s < 1.0,
      f"{s * 1000:.0f} ms after the terminate (13 s before)")

# statement_timeout = 200 ms: the call ends soon after the timer fires.
with closing(connect()) as c, c.cursor() as cur:
    warm_up(cur)
    cur.execute("SET statement_timeout = '200ms'")
    for name, q in [("a 5,000-image array", long_array), ("embed_column with batch 5000", long_column),
                    ("one 40-megapixel PNG", f"SELECT image_embed(pg_read_binary_file('{bombs}/png_6324x6324.png'))")]:
        t = time.monotonic()
        try:
            cur.execute(q)
            err = None
        except psycopg2.Error as e:
            err = e
        s = time.monotonic() - t
        check(f"statement_timeout 200 ms ends {name}", isinstance(err, psycopg2.errors.QueryCanceled) and s < 1.2,
              f"ended after {s * 1000:.0f} ms")

with closing(connect()) as c, c.cursor() as cur:
    check("the server never restarted", one(cur, "SELECT pg_postmaster_start_time()") == started)
check.done()
