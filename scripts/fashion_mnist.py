#!/usr/bin/env python3
"""Writes Debian's Fashion-MNIST as COPY text rows for the demo catalogue:
   id, name, category, split, image (PNG bytea), pixels (embedding literal, 784 dims).
Ids 0..59999 are the training split, 60000..69999 the test split."""
import argparse
import gzip
import struct
import sys
import zlib

SRC = "/usr/share/datasets/fashion-mnist"
CATEGORIES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return raw[4 + 4 * ndim:], dims


def png_gray(pixels, w, h):
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="rows per split (0 = all)")
    ap.add_argument("--src", default=SRC)
    a = ap.parse_args()
    out = sys.stdout
    for split, prefix, base in (("train", "train", 0), ("test", "t10k", 60000)):
        images, (n, h, w) = idx(f"{a.src}/{prefix}-images-idx3-ubyte.gz")
        labels, _ = idx(f"{a.src}/{prefix}-labels-idx1-ubyte.gz")
        count = min(n, a.limit) if a.limit else n
        for i in range(count):
            px = images[i * h * w:(i + 1) * h * w]
            cat = CATEGORIES[labels[i]]
            pid = base + i
            vec = "[" + ",".join(map(str, px)) + "]"
            out.write(f"{pid}\t{cat} #{pid}\t{cat}\t{split}\t\\\\x{png_gray(px, w, h).hex()}\t{vec}\n")


if __name__ == "__main__":
    main()
