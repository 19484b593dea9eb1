#!/usr/bin/env python3
"""Writes the hostile images of the hardening tests into a folder: small files whose pixels or
resized size are huge (PNG and TIFF that zlib compresses to a few KB), and JPEGs whose frame
header announces far more pixels than their data holds. Usage: make_bombs.py OUTDIR IMAGESDIR"""
import os
import struct
import sys
import zlib

out, images = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(w, h):
    """An 8-bit grayscale all-black PNG, compressed row by row so that no w*h buffer is made."""
    z = zlib.compressobj(9)
    row = bytes(1 + w)  # filter byte 0, then w black pixels
    rows_per_piece = max(1, (1 << 20) // len(row))
    body, left = [], h
    piece = row * min(rows_per_piece, h)
    while left > 0:
        n = min(rows_per_piece, left)
        body.append(z.compress(piece if n == rows_per_piece else row * n))
        left -= n
    body.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(body)) + chunk(b"IEND", b"")


def tiff(w, h):
    """A little-endian grayscale TIFF with one deflate-compressed strip."""
    data = zlib.compress(bytes(w * h), 9)
    entries = [(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 8), (262, 3, 1),
               (273, 4, 0), (277, 3, 1), (278, 4, h), (279, 4, len(data))]
    ifd_at = 8
    data_at = ifd_at + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_at if tag == 273 else value
        ifd += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
    return b"II*\x00" + struct.pack("<I", ifd_at) + ifd + struct.pack("<I", 0) + data


def announce(jpeg, w, h):
    """The same JPEG data under a frame header that announces w x h."""
    b = bytearray(jpeg)
    sof = next(i for i in range(len(b) - 1) if b[i] == 0xFF and b[i + 1] in (0xC0, 0xC2))
    b[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(b)


def write(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


for w, h in [(1, 1), (1, 100_000_000), (1, 1_000_000), (1, 40_000_000), (40_000_000, 1), (2, 20_000_000), (6324, 6324)]:
    write(f"png_{w}x{h}.png", png(w, h))
write("tiff_1x1000000.tif", tiff(1, 1_000_000))
for kind in ("baseline", "progressive"):
    with open(os.path.join(images, f"small_{kind}.jpg"), "rb") as f:
        write(f"jpeg_6000x6000_{kind}.jpg", announce(f.read(), 6000, 6000))
