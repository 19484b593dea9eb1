#!/usr/bin/env python3
"""Golden reference values for image_embed, computed by PyTorch/torchvision themselves.

Writes pg_test/data/:
  models/tiny-vgg16/      torchvision's VGG16 layer layout at width 1/16, seeded random weights,
                          Resize(256) + CenterCrop(224) + ImageNet Normalize, global average pool
  models/tiny-vgg16-224/  the same weights, for inputs that are already 224x224 (no resize)
  images/*.crop.png       what torchvision's Resize(256) + CenterCrop(224) makes of each image
  images/chelsea_exif6.jpg  Chelsea stored rotated, with EXIF orientation 6
  golden.json             per image: torchvision's vector for the preprocessed image

Needs torch 2.11 and torchvision 0.26 (`pip install torch==2.11.0 torchvision==0.26.0`, ~3 GB);
only to regenerate the files, never in `make test`. Re-running gives the same files.
"""
import gzip
import hashlib
import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
from convert import write_safetensors  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pg_test", "data")
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
WIDTH = 1 / 16
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def fashion_sneaker(path):
    with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    # test image 9 is a sneaker (label 7)
    px = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[9]
    Image.fromarray(px, mode="L").save(path)


def main():
    torch.manual_seed(0)
    cfg = [c if c == "M" else max(1, round(c * WIDTH)) for c in CFG]
    net = torchvision.models.vgg.VGG(torchvision.models.vgg.make_layers(cfg, batch_norm=False), init_weights=True)
    with torch.no_grad():
        for m in net.features:
            if isinstance(m, torch.nn.Conv2d):
                m.bias.normal_(0.0, 0.05)
    net.eval()
    features = {k: v for k, v in net.state_dict().items() if k.startswith("features.")}

    for name, resize in (("tiny-vgg16", 256), ("tiny-vgg16-224", None)):
        d = os.path.join(ROOT, "models", name)
        os.makedirs(d, exist_ok=True)
        wpath = os.path.join(d, "weights.safetensors")
        write_safetensors(wpath, features)
        manifest = {
            "name": name,
            "description": "torchvision VGG16 layout at width 1/16, seeded random weights: a test fixture",
            "architecture": "vgg16", "width": WIDTH, "batch_norm": False,
            "input": {"resize": resize, "crop": 224, "mean": MEAN, "std": STD},
            "output": {"pooling": "avg", "normalize": False},
            "dims": cfg[-2],
            "weights": {"file": "weights.safetensors", "sha256": sha256(wpath)},
        }
        json.dump(manifest, open(os.path.join(d, "manifest.json"), "w"), indent=2)

    img_dir = os.path.join(ROOT, "images")
    fashion_sneaker(os.path.join(img_dir, "sneaker.png"))
    cat = Image.open(os.path.join(img_dir, "chelsea.png")).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after rotating 90 degrees clockwise
    cat.transpose(Image.Transpose.ROTATE_90).save(os.path.join(img_dir, "chelsea_exif6.jpg"), quality=95, exif=exif)

    prep = T.Compose([T.Resize(256), T.CenterCrop(224)])
    to_input = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    golden = {"model": "tiny-vgg16", "pooling": "avg", "images": {}}
    for fname in ("chelsea.png", "rocket.jpg", "sneaker.png"):
        img = Image.open(os.path.join(img_dir, fname)).convert("RGB")
        crop = prep(img)
        crop_name = fname.rsplit(".", 1)[0] + ".crop.png"
        crop.save(os.path.join(img_dir, crop_name))
        with torch.no_grad():
            v = net.features(to_input(crop).unsqueeze(0)).mean(dim=(2, 3))[0]
        golden["images"][fname] = {"crop": crop_name, "size": list(img.size), "vector": [float(x) for x in v]}
    # The other outputs a manifest can ask for, on Chelsea's crop: global max pool, torchvision's
    # avgpool(7x7) + flatten (the classifier's input), and the L2-normalised average pool.
    crop = T.ToTensor()(Image.open(os.path.join(img_dir, "chelsea.crop.png")).convert("RGB"))
    x = T.Normalize(MEAN, STD)(crop).unsqueeze(0)
    with torch.no_grad():
        f = net.features(x)
        golden["outputs"] = {
            "image": "chelsea.crop.png",
            "max": [float(v) for v in f.amax(dim=(2, 3))[0]],
            "flatten": [float(v) for v in torch.flatten(net.avgpool(f), 1)[0]],
            "avg_normalized": [float(v) for v in torch.nn.functional.normalize(f.mean(dim=(2, 3)), dim=1)[0]],
        }
    json.dump(golden, open(os.path.join(ROOT, "golden.json"), "w"), indent=1)
    print("wrote", ROOT)


if __name__ == "__main__":
    main()
