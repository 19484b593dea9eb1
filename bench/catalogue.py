#!/usr/bin/env python3
"""A catalogue of up to a million distinct product photos made from Fashion-MNIST (issue #19):
each product is one of 69,000 source images (the 60,000 training images and test images
1,000-9,999) as it is, or moved, mirrored, turned, cropped and brightened by a seeded draw.
The 1,000 held-out test images 0-999 are the queries. Products are loaded as PNG bytea with COPY
into a table whose vectors the database fills itself with the shipped model (async
auto-embedding: the drainer embeds through the embedding service), printing progress and rows/s.
Then the vectors, the queries' vectors (image_embed) and the exact top 100 of each query at each
catalogue size are cached under .bench/scale/.

  catalogue.py CONNINFO --rows 1000000 [--sizes 100000,300000,1000000]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import time
import zlib

import numpy as np
import psycopg2

SRC = "/usr/share/datasets/fashion-mnist"
CATEGORIES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SEED = 19
QUERIES = 1000
CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".bench", "scale")


def idx(name):
    with gzip.open(f"{SRC}/{name}.gz", "rb") as f:
        raw = f.read()
    dims = struct.unpack(">" + "I" * raw[3], raw[4:4 + 4 * raw[3]])
    return np.frombuffer(raw[4 + 4 * raw[3]:], np.uint8).reshape(dims)


def sources():
    """(catalogue images, their labels, query images, their labels)."""
    train, test = idx("train-images-idx3-ubyte"), idx("t10k-images-idx3-ubyte")
    ltrain, ltest = idx("train-labels-idx1-ubyte"), idx("t10k-labels-idx1-ubyte")
    images = np.concatenate([train, test[QUERIES:]])
    labels = np.concatenate([ltrain, ltest[QUERIES:]])
    return images, labels, test[:QUERIES], ltest[:QUERIES]


def augment(images, rng):
    """Each image through its own affine map (turn ±12°, scale 0.85-1.1 as a crop or a margin,
    shift ±3 px, mirrored half the time), bilinear, then brightness ×0.7-1.3."""
    n = len(images)
    angle = rng.uniform(-12, 12, n) * np.pi / 180
    scale = rng.uniform(0.85, 1.1, n)
    flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    shift = rng.uniform(-3, 3, (n, 2))
    gain = rng.uniform(0.7, 1.3, n)
    ys, xs = np.mgrid[0:28, 0:28].astype(np.float32) - 13.5
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    # Where each output pixel comes from in its source image.
    sx = (flip[:, None, None] * (cos * xs + sin * ys)) * scale[:, None, None] + 13.5 - shift[:, 0, None, None]
    sy = (-sin * xs + cos * ys) * scale[:, None, None] + 13.5 - shift[:, 1, None, None]
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    padded = np.pad(images.astype(np.float32), ((0, 0), (1, 2), (1, 2)))
    b = np.arange(n)[:, None, None]

    def at(y, x):
        return padded[b, np.clip(y + 1, 0, 30), np.clip(x + 1, 0, 30)]
    out = (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
           + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)
    return np.clip(out * gain[:, None, None], 0, 255).round().astype(np.uint8)


def png(pixels):
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(28))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


def products(rows, images, labels):
    """(id, category, PNG) in batches; ids 0-68,999 the sources as they are, then variants. A
    variant that happens to equal a photo already made is drawn again, so all are distinct."""
    seen = set()
    base = len(images)
    for start in range(0, rows, 20000):
        ids = np.arange(start, min(rows, start + 20000))
        src = ids % base
        rng = np.random.default_rng([SEED, start])
        made = images[src].copy()
        variant = ids >= base
        while variant.any():
            made[variant] = augment(images[src[variant]], rng)
            again = np.zeros(len(ids), bool)
            for i in np.flatnonzero(variant):
                key = hashlib.blake2b(made[i].tobytes(), digest_size=12).digest()
                if key in seen:
                    again[i] = True
                else:
                    seen.add(key)
            variant = again
        for i in np.flatnonzero(ids < base):
            seen.add(hashlib.blake2b(made[i].tobytes(), digest_size=12).digest())
        yield [(int(ids[i]), CATEGORIES[labels[src[i]]], png(made[i])) for i in range(len(ids))]


class Rows(io.RawIOBase):
    """COPY text rows read by psycopg2's copy_expert as a file, made as they are read."""

    def __init__(self, batches, progress):
        self.batches, self.buf, self.progress = batches, b"", progress

    def readable(self):
        return True

    def readinto(self, b):
        while len(self.buf) < len(b):
            batch = next(self.batches, None)
            if batch is None:
                break
            self.buf += b"".join(f"{i}\t{c} #{i}\t{c}\t\\\\x{p.hex()}\n".encode() for i, c, p in batch)
            self.progress(len(batch))
        n = min(len(b), len(self.buf))
        b[:n], self.buf = self.buf[:n], self.buf[n:]
        return n


def load(conn, rows, images, labels):
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS visual_search")
    cur.execute("DROP TABLE IF EXISTS catalogue")
    cur.execute("CREATE TABLE catalogue (id integer PRIMARY KEY, name text NOT NULL, category text NOT NULL, image bytea NOT NULL, embedding embedding(128))")
    cur.execute("SELECT visual_search.enable_auto_embed('catalogue', 'image', 'embedding', mode => 'async')")
    started, done = time.time(), [0]

    def progress(n):
        done[0] += n
        print(f"[catalogue] COPY {done[0]:,} of {rows:,} photos, {done[0] / (time.time() - started):,.0f} rows/s", flush=True)
    cur.copy_expert("COPY catalogue (id, name, category, image) FROM STDIN", Rows(products(rows, images, labels), progress))
    copy_s = time.time() - started
    print(f"[catalogue] loaded {rows:,} photos in {copy_s:.0f} s; the drainer embeds them", flush=True)
    started = time.time()
    while True:
        cur.execute("SELECT coalesce(sum(pending + in_progress), 0)::bigint, coalesce(sum(failed), 0)::bigint FROM visual_search.embedding_queues WHERE tbl = 'catalogue'::regclass")
        left, failed = cur.fetchone()
        took = time.time() - started
        print(f"[catalogue] embedded {rows - left:,} of {rows:,}, {(rows - left) / max(took, 1e-3):,.0f} rows/s, {failed} failed", flush=True)
        if failed:
            sys.exit("[catalogue] photos failed to embed: see visual_search.embedding_failures")
        if left == 0:
            break
        time.sleep(10)
    return {"rows": rows, "copy_s": round(copy_s, 1), "copy_rows_per_s": round(rows / copy_s), "embed_s": round(took, 1), "embed_rows_per_s": round(rows / took)}


# A row of COPY's binary format with (integer, 128-d vector): both extensions send and receive
# a vector as int16 dimensions, int16 zero, then big-endian float4s.
HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
ROW = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i4"), ("v_len", ">i4"), ("dim", ">u2"), ("zero", ">u2"), ("v", ">f4", (128,))])


def read_vectors(cur, sql):
    """(ids, vectors) of `sql` (SELECT integer, vector), through binary COPY: a million rows in
    seconds, where text would take minutes and gigabytes."""
    buf = io.BytesIO()
    cur.copy_expert(f"COPY ({sql}) TO STDOUT (FORMAT binary)", buf)
    rows = np.frombuffer(buf.getbuffer()[len(HEADER):-2], ROW)
    assert (rows["dim"] == 128).all(), "128-d vectors"
    return rows["id"].astype(np.int64), rows["v"].astype(np.float32)


def write_vectors(cur, table_columns, ids, vectors, extra=None):
    """COPY table (id, [extra integer,] vector) FROM binary rows made with numpy."""
    fields = [("fields", ">i2"), ("id_len", ">i4"), ("id", ">i4")]
    if extra is not None:
        fields += [("x_len", ">i4"), ("x", ">i4")]
    fields += [("v_len", ">i4"), ("dim", ">u2"), ("zero", ">u2"), ("v", ">f4", (128,))]
    rows = np.zeros(len(ids), np.dtype(fields))
    rows["fields"], rows["id_len"], rows["id"], rows["v_len"], rows["dim"], rows["v"] = 2 + (extra is not None), 4, ids, 516, 128, vectors
    if extra is not None:
        rows["x_len"], rows["x"] = 4, extra
    cur.copy_expert(f"COPY {table_columns} FROM STDIN (FORMAT binary)", io.BytesIO(HEADER + rows.tobytes() + b"\xff\xff"))


def truth(base, queries, k=100):
    """Exact top k by L2, in chunks of the catalogue so that memory stays small."""
    best_d = np.full((len(queries), 0), np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    qn = (queries ** 2).sum(1)[:, None]
    for s in range(0, len(base), 100000):
        chunk = base[s:s + 100000]
        d = qn - 2 * queries @ chunk.T + (chunk ** 2).sum(1)[None, :]
        d_all, i_all = np.concatenate([best_d, d], 1), np.concatenate([best_i, np.arange(s, s + len(chunk))[None, :].repeat(len(queries), 0)], 1)
        keep = np.argsort(d_all, 1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(d_all, keep, 1), np.take_along_axis(i_all, keep, 1)
    return best_i


def embedded(cur, rows):
    """Whether the table holds this catalogue already (or a larger one, whose first rows are
    the same draws), every row with its vector."""
    cur.execute("SELECT to_regclass('catalogue') IS NOT NULL")
    if not cur.fetchone()[0]:
        return False
    cur.execute("SELECT count(*), count(embedding), coalesce(max(id), -1) FROM catalogue")
    n, with_vector, last = cur.fetchone()
    return n == with_vector == last + 1 >= rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("conninfo")
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--sizes", default="100000,300000,1000000")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",") if int(s) <= a.rows]
    os.makedirs(CACHE, exist_ok=True)
    images, labels, qimages, qlabels = sources()
    conn = psycopg2.connect(a.conninfo)
    conn.autocommit = True
    cur = conn.cursor()
    stats = {"rows": a.rows, "reused": True}
    if not embedded(cur, a.rows):
        stats = load(conn, a.rows, images, labels)
    ids, base = read_vectors(cur, f"SELECT id, embedding FROM catalogue WHERE id < {a.rows} ORDER BY id")
    assert (ids == np.arange(a.rows)).all(), "the catalogue's ids are 0..rows-1"
    photos = [psycopg2.Binary(png(q)) for q in qimages]
    _, queries = read_vectors(cur, cur.mogrify("SELECT i::int, e FROM unnest(image_embed(%s::bytea[])) WITH ORDINALITY AS u(e, i) ORDER BY i", (photos,)).decode())
    np.save(f"{CACHE}/vectors.npy", base)
    np.save(f"{CACHE}/queries.npy", queries)
    np.save(f"{CACHE}/labels.npy", labels[np.arange(a.rows) % len(images)])
    np.save(f"{CACHE}/query_labels.npy", qlabels)
    for n in sizes:
        started = time.time()
        np.save(f"{CACHE}/truth-{n}.npy", truth(base[:n], queries))
        print(f"[catalogue] exact top 100 of {QUERIES} queries among {n:,} in {time.time() - started:.0f} s", flush=True)
    with open(f"{CACHE}/catalogue.json", "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    main()
