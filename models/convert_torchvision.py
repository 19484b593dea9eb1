#!/usr/bin/env python3
"""Converts torchvision's VGG16 ImageNet weights (vgg16-397923af.pth) into a visual_search model:
<out>/<name>/weights.safetensors (the conv part, features.*) and <out>/<name>/manifest.json.

    python3 models/convert_torchvision.py vgg16-397923af.pth --out models --pooling avg

The .pth file is read with torch.load(weights_only=True), which refuses arbitrary pickled objects;
the extension itself only ever reads the safetensors file. Needs torch (pip install torch).
"""
import argparse
import hashlib
import json
import os
import struct

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def write_safetensors(path, tensors):
    """The safetensors format: u64 header length, JSON header, raw little-endian f32 data."""
    import torch

    header, blobs, offset = {}, [], 0
    for name, t in sorted(tensors.items()):
        data = t.detach().contiguous().to(torch.float32).numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def manifest(name, sha, pooling, normalize, width=1.0, batch_norm=False, resize=256, crop=224,
             mean=IMAGENET_MEAN, std=IMAGENET_STD, description=""):
    channels = max(1, round(512 * width))
    return {
        "name": name, "description": description,
        "architecture": "vgg16", "width": width, "batch_norm": batch_norm,
        "input": {"resize": resize, "crop": crop, "mean": mean, "std": std},
        "output": {"pooling": pooling, "normalize": normalize},
        "dims": channels * (49 if pooling == "flatten" else 1),
        "weights": {"file": "weights.safetensors", "sha256": sha},
    }


def main():
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pth", help="torchvision's vgg16-397923af.pth (or vgg16_bn-6c64b313.pth with --batch-norm)")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--name", default="vgg16-imagenet")
    ap.add_argument("--pooling", choices=["avg", "max", "flatten"], default="avg")
    ap.add_argument("--normalize", action="store_true", help="L2-normalise the output vectors")
    ap.add_argument("--batch-norm", action="store_true")
    a = ap.parse_args()
    state = torch.load(a.pth, map_location="cpu", weights_only=True)
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    d = os.path.join(a.out, a.name)
    os.makedirs(d, exist_ok=True)
    sha = write_safetensors(os.path.join(d, "weights.safetensors"), features)
    m = manifest(a.name, sha, a.pooling, a.normalize, batch_norm=a.batch_norm,
                 description=f"torchvision VGG16 ImageNet weights from {os.path.basename(a.pth)}")
    json.dump(m, open(os.path.join(d, "manifest.json"), "w"), indent=2)
    print(f"wrote {d}: {len(features)} tensors, {m['dims']} dims, sha256 {sha}")


if __name__ == "__main__":
    main()
