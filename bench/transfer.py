#!/usr/bin/env python3
"""Transfer learning on Fashion-MNIST (issue #17, point 4): precision@10 through SQL on 2,000 test
queries among the 60,000 training images (bench/quality.py) for
  (a) EfficientNet-Lite0's ImageNet features as they are, at the fine-tuning input size,
  (b) EfficientNet-Lite0 fine-tuned from ImageNet, after 1, 3 and 5 epochs (one 5-epoch run that
      also writes its model after epochs 1 and 3: one cosine schedule, so the earlier two are
      taken mid-schedule),
  (c) fashion-vgg16, trained from scratch (the shipped model),
with the training wall time of each.

    make bench-transfer        (about an hour on 2 idle CPU cores)

Models go to .bench/transfer/; a finished training run there is reused, as is a quality run
measured after its model was written. --report-only trains and measures nothing: it writes the
results of what .bench/transfer/ holds (a run cut short: epoch times from the training log).
Writes bench/results/transfer.json and bench/results/transfer.md.
"""
import argparse
import calendar
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(REPO, ".bench", "transfer")
REPORT_ONLY = False
IMAGENET = "efficientnet-lite0-imagenet"
TUNED = "fashion-efficientnet-lite0"


def train(a):
    """Runs the fine-tuning once (or reuses it) and returns the train command's report."""
    report = os.path.join(WORK, "train.json")
    if os.path.exists(os.path.join(WORK, TUNED, "manifest.json")) and os.path.getsize(report):
        return json.load(open(report))
    if a.report_only:
        # The progress line of each finished epoch ends "test acc 0.9219 (693 s)".
        log = open(os.path.join(WORK, "train.log")).read().replace("\r", "\n")
        done = re.findall(r"test acc ([0-9.]+) \(([0-9]+) s\)", log)
        cache = re.search(r"frozen layers run once over every image: .* ([0-9]+) s", log)
        return {"epochs": len(done), "test_accuracy": float(done[-1][0]) if done else None,
                "epoch_seconds": [int(s) for _, s in done], "epoch_test_accuracy": [float(t) for t, _ in done],
                "seconds": int(cache.group(1)) + sum(int(s) for _, s in done), "cut_short": True}
    cmd = ["cargo", "run", "--release", "-q", "-p", "vs_train", "--bin", "train", "--",
           "--fashion-mnist", "/usr/share/datasets/fashion-mnist", "--name", TUNED, "--out", WORK,
           "--init", IMAGENET, "--size", str(a.size), "--lr", str(a.lr), "--epochs", "5",
           "--freeze-stages", str(a.freeze_stages), "--no-augment", "--save-after", "1,3", "--seed", "1"]
    print("+", " ".join(cmd), flush=True)
    start, end = (os.path.join(WORK, f) for f in ("train.start", "train.end"))
    if os.path.exists(start) and os.path.exists(end) and os.path.exists(os.path.join(WORK, f".{TUNED}.epoch")):
        # Resuming a run that stopped: the time between is no training time, so it counts as a pause.
        with open(os.path.join(WORK, "pauses.log"), "a") as f:
            f.write(f"{stamp(end)} STOP\n{int(time.time())} CONT\n")
    else:
        subprocess.run(["date", "-u"], check=True, stdout=open(start, "w"))
    try:
        out = subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.PIPE, text=True).stdout
    finally:
        subprocess.run(["date", "-u"], check=True, stdout=open(end, "w"))
    open(report, "w").write(out)
    return json.loads(out)


def stamp(path):
    """The Unix time of a `date -u` line in a file."""
    return calendar.timegm(time.strptime(open(path).read().strip(), "%a %b %d %H:%M:%S UTC %Y"))


def started():
    """When the training run began (.bench/transfer/train.start; a resumed run keeps the first)."""
    return stamp(os.path.join(WORK, "train.start"))


def paused_before(t):
    """Seconds the training was stopped (SIGSTOP) before time t, from .bench/transfer/pauses.log
    ("<unix time> STOP|CONT" lines), written by whoever paused it to measure beside it."""
    path = os.path.join(WORK, "pauses.log")
    if not os.path.exists(path):
        return 0.0
    total, since = 0.0, None
    for line in open(path):
        at, what = line.split()
        at = min(float(at), t)
        if what == "STOP" and since is None:
            since = at
        elif what == "CONT" and since is not None:
            total, since = total + at - since, None
    return total + (t - since if since is not None else 0.0)


def imagenet_as_is(size):
    """The ImageNet model with the fine-tuning input size and L2-normalised vectors, as the
    fine-tuned model has them: only the weights differ."""
    src = os.path.join(REPO, "models", IMAGENET)
    name = f"{IMAGENET}-{size}"
    dst = os.path.join(WORK, name)
    os.makedirs(dst, exist_ok=True)
    m = json.load(open(os.path.join(src, "manifest.json")))
    m.update(name=name)
    m["input"].update(resize=size, crop=size)
    m["output"]["normalize"] = True
    # Written once: a copy made anew would look newer than the figures measured with it.
    if not os.path.exists(os.path.join(dst, m["weights"]["file"])):
        shutil.copy(os.path.join(src, m["weights"]["file"]), dst)
        json.dump(m, open(os.path.join(dst, "manifest.json"), "w"), indent=2)
    return name


def quality(model, model_dir):
    """bench/quality.py's figures for a model, reused when measured after its weights were written."""
    out = os.path.join(WORK, "quality-" + model)
    done = os.path.join(out, "quality.json")
    weights = os.path.join(model_dir or os.path.join(REPO, "models"), model, "weights.safetensors")
    if os.path.exists(done) and os.path.getmtime(done) > os.path.getmtime(weights):
        return json.load(open(done))
    if REPORT_ONLY or not os.path.exists(weights):
        return None
    cmd = [sys.executable, os.path.join(HERE, "quality.py"), "--model", model, "--queries", "2000",
           "--out", out, "--no-pixels", "--jobs", "2"]
    if model_dir:
        cmd += ["--model-dir", model_dir]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.load(open(os.path.join(out, "quality.json")))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--freeze-stages", type=int, default=3)
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    global REPORT_ONLY
    REPORT_ONLY = a.report_only
    os.makedirs(WORK, exist_ok=True)
    r = train(a)
    # Preprocessing and the frozen stages' one pass come before the first epoch (in a run cut
    # short: the frozen pass alone).
    setup_s = r["seconds"] - sum(r["epoch_seconds"])
    rows = [("(a) ImageNet features as they are", imagenet_as_is(a.size), WORK, 0.0)]
    for k in (1, 3, 5):
        name = TUNED if k == 5 else f"{TUNED}-epoch{k}"
        # From the start to the model's weights on disk, less any pauses.
        weights = os.path.join(WORK, name, "weights.safetensors")
        trained = None
        if os.path.exists(weights):
            done = os.path.getmtime(weights)
            trained = done - started() - paused_before(done)
        rows.append((f"(b) fine-tuned from ImageNet, {k} epoch{'s' if k > 1 else ''}", name, WORK, trained))
    # The shipped model's recorded training time (models/fashion-vgg16/README.md: 10 min 32 s).
    rows.append(("(c) fashion-vgg16 from scratch, 15 epochs", "fashion-vgg16", "", 632.0))
    results = []
    for label, model, model_dir, train_s in rows:
        q = quality(model, model_dir)
        if q is None:
            results.append({"run": label, "model": model, "measured": False})
            continue
        size = os.path.getsize(os.path.join(model_dir or os.path.join(REPO, "models"), model, "weights.safetensors"))
        results.append({"run": label, "model": model, "measured": True, "dims": q["dims"], "train_seconds": round(train_s),
                        "p_at_10": q["model_precision"]["all"]["p_at_10"], "per_category": q["model_precision"],
                        "embed_seconds": q["embed_seconds"], "search_seconds": q["search_seconds"],
                        "weights_bytes": size})
        json.dump({"benchmark": "transfer learning, Fashion-MNIST precision@10 through SQL", "queries": 2000,
                   "size": a.size, "lr": a.lr, "freeze_stages": a.freeze_stages, "train": r, "results": results},
                  open(os.path.join(HERE, "results", "transfer.json"), "w"), indent=1)
    md = [f"EfficientNet-Lite0 at {a.size}×{a.size} (Fashion-MNIST's 28×28 upscaled), stem and first "
          f"{a.freeze_stages} stages frozen, SGD lr {a.lr}, batch 128, no augmentation; 2,000 test queries "
          "among 60,000 training images, exact search through SQL.", "",
          "| run | model | dims | precision@10 | training wall time | embed 70,000 rows | weights |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for x in results:
        if not x["measured"]:
            md.append(f"| {x['run']} | `{x['model']}` | | not measured | | | |")
            continue
        t = f"{x['train_seconds'] // 60} min {x['train_seconds'] % 60} s" if x["train_seconds"] else "none"
        md.append(f"| {x['run']} | `{x['model']}` | {x['dims']} | {x['p_at_10']:.4f} | {t} | "
                  f"{x['embed_seconds']:.0f} s | {x['weights_bytes'] / 1e6:.1f} MB |")
    # A resumed run reports only the epochs it ran itself.
    ran = len(r["epoch_seconds"])
    first = r.get("epochs", ran) - ran + 1
    resumed = f" (the run resumed after epoch {first - 1}: epochs {first}–{first + ran - 1})" if first > 1 else ""
    md += ["", f"Epoch wall times{resumed}: {', '.join(f'{s:.0f} s' for s in r['epoch_seconds'])}; "
           f"before the first epoch (preprocessing, the frozen stages' pass) {setup_s:.0f} s; classifier test accuracy (10,000 images) after the "
           f"last epoch {r['test_accuracy']}. (c)'s training time is the one "
           "recorded in models/fashion-vgg16/README.md; its precision is measured here."]
    if r.get("cut_short"):
        md += ["", f"The training run was stopped after epoch {len(r['epoch_seconds'])} of 5: runs not reached are "
               "not measured (the same command resumes it from its checkpoint in .bench/transfer/)."]
    paused = paused_before(float("inf"))
    if paused:
        md += ["", f"The training was paused for {paused:.0f} s while quality runs used the CPU; the training "
               "wall times above leave the pauses out, the epoch times include them."]
    open(os.path.join(HERE, "results", "transfer.md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
