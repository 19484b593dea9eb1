#!/usr/bin/env python3
"""image_embed throughput: VGG16 (full width, seeded random weights) at 224x224, batch 1, 8 and
32, on the CPU, next to PyTorch eager in the same run with the same weights, threads and batch.

The extension is measured end to end through SQL (bytea in, vector out: decode + preprocess +
forward + returning the vectors), PyTorch on forward only (already-preprocessed tensors), and
visual_search.embed_profile() splits the extension's time into decode / preprocess / forward.

    make bench-embed          (needs torch + torchvision in python3: ~3 GB from PyPI)

Writes bench/results/embed.json and bench/results/embed.md.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "models"))
from convert import manifest, write_safetensors  # noqa: E402

BENCH_DIR = "/tmp/visual_search_bench"


def psql(conninfo, sql):
    r = subprocess.run(["psql", conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"], input=sql,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    return r.stdout


def make_model(torch, torchvision):
    torch.manual_seed(0)
    net = torchvision.models.vgg16(weights=None).eval()
    d = os.path.join(BENCH_DIR, "models", "vgg16-random")
    os.makedirs(d, exist_ok=True)
    feats = {k: v for k, v in net.state_dict().items() if k.startswith("features.")}
    sha = write_safetensors(os.path.join(d, "weights.safetensors"), feats)
    json.dump(manifest("vgg16-random", sha, "avg", False, description="benchmark: random weights"),
              open(os.path.join(d, "manifest.json"), "w"))
    subprocess.run(["chmod", "-R", "a+rX", BENCH_DIR], check=True)
    return net


def torch_eager(torch, net, batch, threads, seconds):
    torch.set_num_threads(threads)
    x = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        net.features(x).mean(dim=(2, 3))  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2:
            net.features(x).mean(dim=(2, 3))
            n += 1
        return n * batch / (time.perf_counter() - t0)


def extension(conninfo, batch, threads, seconds):
    setup = (f"SET visual_search.model_dir = '{BENCH_DIR}/models'; SET visual_search.threads = {threads};\n")
    q = (f"SELECT count(*) FROM unnest(image_embed((SELECT array_agg(img) FROM "
         f"(SELECT img FROM bench_images ORDER BY i LIMIT {batch}) s), 'vgg16-random'));\n")
    psql(conninfo, setup + q)  # loads the model in a throw-away backend: page cache warm
    # one session: warm-up, then timed repetitions measured by the server-side clock
    reps = max(2, int(seconds * 4 / batch))
    out = psql(conninfo, setup + "\\timing on\n" + q + q * reps)
    times = [float(m) for m in re.findall(r"Time: ([0-9.]+) ms", out)][1:]
    # keep going until the time budget is used, in the same way
    total = sum(times) / 1e3
    prof = psql(conninfo, setup + q + f"SELECT stage, ms FROM visual_search.embed_profile((SELECT array_agg(img) FROM "
                f"(SELECT img FROM bench_images ORDER BY i LIMIT {batch}) s), 'vgg16-random');\n")
    split = {}
    for line in prof.strip().splitlines()[1:]:
        stage, ms = line.split("|")
        split[stage] = float(ms)
    return len(times) * batch / total, split


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=20.0, help="time per measurement")
    a = ap.parse_args()
    import torch
    import torchvision

    net = make_model(torch, torchvision)
    subprocess.run(["bash", os.path.join(REPO, "scripts/pgcluster.sh"), "start", os.path.join(REPO, ".bench")],
                   check=True, capture_output=True)
    conninfo = open(os.path.join(REPO, ".bench/conninfo")).read().strip()
    imgs = [os.path.join(REPO, "pg_test/data/images", f) for f in ("chelsea.png", "rocket.jpg")]
    psql(conninfo, "CREATE EXTENSION IF NOT EXISTS visual_search;\nDROP TABLE IF EXISTS bench_images;\n"
                   "CREATE TABLE bench_images (i int, img bytea);\n")
    for i in range(32):
        data = open(imgs[i % 2], "rb").read().hex()
        psql(conninfo, f"INSERT INTO bench_images VALUES ({i}, '\\x{data}');")

    rows = []
    for b in [int(x) for x in a.batches.split(",")]:
        ext_ips, split = extension(conninfo, b, a.threads, a.seconds)
        pt_ips = torch_eager(torch, net, b, a.threads, a.seconds)
        rows.append({"batch": b, "threads": a.threads, "extension_img_s": round(ext_ips, 2),
                     "pytorch_forward_img_s": round(pt_ips, 2), "ratio": round(ext_ips / pt_ips, 3),
                     "extension_split_ms": {k: round(v, 1) for k, v in split.items()}})
        print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "image_embed VGG16 224x224 CPU", "torch": torch.__version__,
              "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": "),
              "images": "chelsea.png (451x300 PNG), rocket.jpg (640x427 JPEG), alternating", "rows": rows}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    json.dump(result, open(os.path.join(HERE, "results", "embed.json"), "w"), indent=1)
    md = ["| batch | threads | extension img/s (bytea in, vector out) | PyTorch eager img/s (forward only) | ratio | decode ms | preprocess ms | forward ms |",
          "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = r["extension_split_ms"]
        md.append(f"| {r['batch']} | {r['threads']} | {r['extension_img_s']} | {r['pytorch_forward_img_s']} | "
                  f"{r['ratio']} | {s.get('decode')} | {s.get('preprocess')} | {s.get('forward')} |")
    open(os.path.join(HERE, "results", "embed.md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
