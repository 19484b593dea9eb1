#!/usr/bin/env python3
"""A full-width VGG16 with seeded random weights whose vectors are torchvision's flattened conv5
(7 x 7 x 512 = 25,088-d), for regress's vs_hnsw_flatten: the original design's feature fed end
to end from image_embed into a quantized index. 59 MB of weights, so written at test time (numpy
only, the same bytes every run) rather than kept in the repository. The input is 96 x 96, upscaled
Fashion-MNIST: conv5 is then 3 x 3, which the average pool spreads over 7 x 7 as torchvision's
does, at 1/5 of the 224 x 224 cost.

    python3 scripts/make_vgg16_flatten.py OUT_DIR [NAME]
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
from convert import manifest, write_safetensors  # noqa: E402

CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def main(out, name="vgg16-flatten-96"):
    rng = np.random.default_rng(25088)
    tensors, c_in, i = {}, 3, 0
    for c in CFG:  # torchvision numbers every layer: conv, ReLU, ..., max pool
        if c == "M":
            i += 1
            continue
        # He initialisation, as torchvision's kaiming_normal_(fan_out): activations keep their scale
        # through 13 layers instead of vanishing, so the vectors tell images apart.
        std = np.sqrt(2.0 / (c * 9))
        tensors[f"features.{i}.weight"] = (rng.standard_normal((c, c_in, 3, 3)) * std).astype(np.float32)
        tensors[f"features.{i}.bias"] = np.zeros(c, np.float32)
        c_in, i = c, i + 2
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    sha = write_safetensors(os.path.join(d, "weights.safetensors"), tensors)
    m = manifest(name, sha, "flatten", False, resize=96, crop=96,
                 description="full-width VGG16, seeded random weights, 96 x 96 input: a test fixture")
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(m, f, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:])
