#!/usr/bin/env python3
"""Converts a PyTorch state dict (.pth) into a visual_search model: <out>/<name>/weights.safetensors
and <out>/<name>/manifest.json. Needs numpy only: the .pth is read by models/pth.py, which
refuses any pickled global but the tensor-rebuild ones, so converting a hostile file runs none
of its code.

    python3 models/convert.py vgg16-397923af.pth --name vgg16-imagenet --pooling avg   # or max / flatten
    python3 models/convert.py efficientnet-lite0-57934424.pth --name efficientnet-lite0-imagenet

The architecture is told by the tensors' names: torchvision's VGG16 (`features.N.*`; BatchNorm
when there are running means) or EfficientNet-Lite0 in the efficientnet-lite-pytorch layout
(`_conv_stem.*`). VGG16 keeps its convolutional part; EfficientNet keeps its classifier `_fc`
too, which image_embed never runs and the tests use to check ImageNet classes.
"""
import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pth import PthError, load  # noqa: E402

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# TensorFlow's EfficientNet-Lite builder normalises as (x - 127) / 128 on 0-255 pixels: with it
# the weights are sure of the test photos' classes (coffee.jpg espresso 0.96 against 0.84 with
# ImageNet's mean and deviation, motorcycle.jpg moped 0.58 against 0.27).
LITE_MEAN = [127 / 255] * 3
LITE_STD = [128 / 255] * 3
LAST_CHANNELS = {"efficientnet-lite0": 1280}


def write_safetensors(path, tensors):
    """The safetensors format: u64 header length, JSON header, raw little-endian f32 data. Takes
    numpy arrays or torch tensors; the same tensors always give the same bytes."""
    header, blobs, offset = {}, [], 0
    for name, t in sorted(tensors.items()):
        if hasattr(t, "detach"):
            t = t.detach().cpu().float().numpy()
        data = np.ascontiguousarray(t, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    raw = struct.pack("<Q", len(h)) + h + b"".join(blobs)
    with open(path, "wb") as f:
        f.write(raw)
    return hashlib.sha256(raw).hexdigest()


def manifest(name, sha, pooling, normalize, width=1.0, batch_norm=False, resize=256, crop=224,
             mean=IMAGENET_MEAN, std=IMAGENET_STD, description="", architecture="vgg16", licence="", source=""):
    channels = LAST_CHANNELS.get(architecture) or max(1, round(512 * width))
    m = {
        "name": name, "description": description, "architecture": architecture,
        "input": {"resize": resize, "crop": crop, "mean": mean, "std": std},
        "output": {"pooling": pooling, "normalize": normalize},
        "dims": channels * (49 if pooling == "flatten" else 1),
        "weights": {"file": "weights.safetensors", "sha256": sha},
        "licence": licence, "source": source,
    }
    if architecture == "vgg16":
        m.update(width=width, batch_norm=batch_norm)
    return m


def architecture(state):
    if "_conv_stem.weight" in state:
        # EfficientNet-B0 in the same layout has squeeze-and-excitation (and swish): read as Lite0
        # it would give wrong features without a word.
        if any("._se_" in k for k in state) or "_blocks.16._project_conv.weight" in state or "_blocks.15._project_conv.weight" not in state:
            raise PthError("an EfficientNet other than Lite0 (squeeze-and-excitation, or not 16 blocks): not supported")
        return "efficientnet-lite0"
    if "features.0.weight" in state:
        return "vgg16"
    raise PthError("neither torchvision's VGG16 (features.0.weight) nor EfficientNet-Lite0 (_conv_stem.weight, 16 blocks)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pth", help="a state dict saved by torch.save (zip or legacy serialisation)")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--name", required=True)
    ap.add_argument("--pooling", choices=["avg", "max", "flatten"], default="avg")
    ap.add_argument("--normalize", action="store_true", help="L2-normalise the output vectors")
    ap.add_argument("--licence", default="")
    ap.add_argument("--source", default="")
    a = ap.parse_args()
    try:
        state = load(a.pth)
        arch = architecture(state)
    except (PthError, OSError) as e:
        sys.exit(f"convert: {a.pth}: {e}")
    floats = {k: v for k, v in state.items() if v.dtype.kind == "f"}
    batch_norm = False
    if arch == "vgg16":
        floats = {k: v for k, v in floats.items() if k.startswith("features.")}
        batch_norm = any(k.endswith(".running_mean") for k in floats)
        mean, std, desc = IMAGENET_MEAN, IMAGENET_STD, f"VGG16{' (BatchNorm)' if batch_norm else ''} from {os.path.basename(a.pth)}"
    else:
        mean, std, desc = LITE_MEAN, LITE_STD, f"EfficientNet-Lite0 from {os.path.basename(a.pth)}"
    d = os.path.join(a.out, a.name)
    os.makedirs(d, exist_ok=True)
    sha = write_safetensors(os.path.join(d, "weights.safetensors"), floats)
    m = manifest(a.name, sha, a.pooling, a.normalize, batch_norm=batch_norm, mean=mean, std=std, description=desc,
                 architecture=arch, licence=a.licence, source=a.source or os.path.basename(a.pth))
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(m, f, indent=2)
        f.write("\n")
    print(f"wrote {d}: {arch}, {len(floats)} tensors, {m['dims']} dims, sha256 {sha}")


if __name__ == "__main__":
    main()
