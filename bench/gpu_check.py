#!/usr/bin/env python3
"""The embedding service on a GPU (issue #15, point 5), driven by scripts/gpu_check.sh against a
running server: image_embed on CUDA against the CPU's vectors (f32 with TF32 off, and f16), a
vector bitwise the same alone and batched with other connections', then images/s of full-width
VGG16 (seeded random weights) at 224² with 1, 8 and 32 concurrent clients, the batch sizes the
service formed, the GPU memory and CUDA contexts held, f32 and f16; and the background queue's
drain rate beside embed_column's (issue #16, point 4). Writes gpu.md and gpu.json.

Only the standard library and psql: the GPU machine has no network to fetch a driver.
Without a GPU (--dry-run, or none found) the same steps run on the CPU, smaller, and the GPU
checks are skipped with a message.

Usage: gpu_check.py CONNINFO MODELDIR IMAGEDIR OUTDIR [--dry-run]"""
import json
import os
import platform
import subprocess
import sys
import time

conninfo, model_dir, image_dir, out_dir = sys.argv[1:5]
MODEL = "vgg16-random"
failures = []


def psql(sql, conn=None):
    r = subprocess.run(["psql", conn or conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t"], input=sql,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"gpu_check: psql failed: {r.stderr.strip()}\n{sql[:300]}")
    return r.stdout


def check(name, ok, detail=""):
    print(f"gpu_check: {'ok' if ok else 'FAIL'}: {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        failures.append(name)


def stats():
    cols = ["pid", "requests", "images", "batches", "batch_sizes", "info"]
    row = psql(f"SELECT {', '.join(cols)} FROM visual_search.service_stats()").strip().split("\t")
    s = dict(zip(cols, row))
    s["sizes"] = {int(a): int(b) for a, b in (p.split(":") for p in s["batch_sizes"].split())}
    return s


def gpu_apps():
    """(pid, MiB) of every process holding a CUDA context, from nvidia-smi."""
    try:
        r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [tuple(int(x) for x in line.split(",")) for line in r.stdout.strip().splitlines() if line.strip()]


def make_model():
    import torch
    import torchvision
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
    from convert import manifest, write_safetensors
    torch.manual_seed(0)
    net = torchvision.models.vgg16(weights=None)
    d = os.path.join(model_dir, MODEL)
    os.makedirs(d, exist_ok=True)
    sha = write_safetensors(os.path.join(d, "weights.safetensors"),
                            {k: v for k, v in net.state_dict().items() if k.startswith("features.")})
    json.dump(manifest(MODEL, sha, "avg", False, description="gpu_check: seeded random weights"),
              open(os.path.join(d, "manifest.json"), "w"))
    for f in os.listdir(d):  # the server runs as another user
        os.chmod(os.path.join(d, f), 0o644)
    os.chmod(d, 0o755)


def vectors(setup, table="imgs"):
    """{i: (text of the vector's floats, hex of its binary form)} of every image of `table`."""
    # OFFSET 0 keeps the subquery: one image_embed call per image.
    out = psql(f"{setup}\nSELECT i, e::real[], encode(embedding_send(e), 'hex') "
               f"FROM (SELECT i, image_embed(img, '{MODEL}') AS e FROM {table} OFFSET 0) s ORDER BY i;")
    rows = {}
    for line in out.strip().splitlines():
        i, arr, hexed = line.split("\t")
        rows[int(i)] = ([float(x) for x in arr.strip("{}").split(",")], hexed)
    return rows


def max_diff(a, b):
    return max(max(abs(x - y) for x, y in zip(a[i][0], b[i][0])) for i in a)


def throughput(setup, clients, per_client):
    """Aggregate images/s of `clients` psql sessions each embedding `per_client` images one call
    at a time (one request per row), started together."""
    before = stats()
    q = (f"{setup}\nSELECT count(image_embed(img, '{MODEL}')) FROM "
         f"(SELECT img FROM stream WHERE i % {clients} = {{k}} ORDER BY i LIMIT {per_client}) s;")
    t = time.monotonic()
    procs = [subprocess.Popen(["psql", conninfo, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(clients)]
    for k, p in enumerate(procs):
        p.stdin.write(q.format(k=k))
        p.stdin.close()
    errs = [p.stderr.read() for p in procs]
    [p.wait() for p in procs]
    secs = time.monotonic() - t
    after = stats()
    sizes = {n: after["sizes"].get(n, 0) - before["sizes"].get(n, 0) for n in after["sizes"]}
    apps = gpu_apps()
    return {
        "clients": clients,
        "images": clients * per_client,
        "seconds": round(secs, 3),
        "images_per_s": round(clients * per_client / secs, 1),
        "batches": int(after["batches"]) - int(before["batches"]),
        "batch_sizes": {n: c for n, c in sorted(sizes.items()) if c},
        "gpu_processes": len(apps),
        "gpu_mib": sum(m for _, m in apps),
        "errors": [e.strip() for e in errs if e.strip()][:2],
    }


def main():
    dry = "--dry-run" in sys.argv
    make_model()
    psql("SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS visual_search;")
    names = sorted(f for f in os.listdir(image_dir) if f.endswith((".png", ".jpg")) and "bomb" not in f)
    values = ", ".join(f"({i}, pg_read_binary_file('{os.path.join(image_dir, n)}'))" for i, n in enumerate(names))
    n = len(names)
    psql(f"DROP TABLE IF EXISTS imgs, stream; CREATE TABLE imgs (i int, img bytea); INSERT INTO imgs VALUES {values};"
         f"CREATE TABLE stream AS SELECT g AS i, img FROM generate_series(0, 9999) g JOIN imgs ON imgs.i = g % {n};")
    cpu = vectors("SET visual_search.embed_in = 'backend'; SET visual_search.device = 'cpu';")
    psql(f"SELECT vector_dims(image_embed(img, '{MODEL}')) FROM imgs LIMIT 1;")  # starts the service
    info = stats()["info"]
    has_gpu = "cuda=true" in info and not dry
    device = "cuda" if has_gpu else "cpu"
    print(f"gpu_check: service engine: {info}; {'GPU found' if has_gpu else 'no GPU: CPU dry run, GPU checks skipped'}",
          flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(), "engine_info": info, "gpu": has_gpu,
              "model": "VGG16 full width, seeded random weights, 224x224, avg pooling (512-d)", "runs": []}
    report["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                           "--format=csv,noheader"], capture_output=True, text=True).stdout.strip() \
        if has_gpu else ""
    for half in (False, True):
        label = "f16" if half and has_gpu else "f32"
        setup = f"SET visual_search.device = '{device}'; SET visual_search.half_precision = {'on' if half else 'off'};"
        alone = vectors(setup)
        d = max_diff(cpu, alone)
        bound = 5e-2 if half and has_gpu else 1e-4
        check(f"{device} {label} vectors against the CPU's", d < bound, f"max |difference| {d:.2e} (bound {bound:g})")
        # The same images while other connections' images share their batches.
        bg = subprocess.Popen(["psql", conninfo, "-X", "-q", "-At"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, text=True)
        bg.stdin.write(f"{setup}\nSELECT count(image_embed(img, '{MODEL}')) FROM stream WHERE i < 200;")
        bg.stdin.close()
        busy = vectors(setup)
        bg.wait()
        check(f"{device} {label}: a vector bitwise the same alone and in company", all(alone[i][1] == busy[i][1] for i in alone))
        if half and not has_gpu:
            break
        counts = (1, 8, 32) if has_gpu else (1, 2, 4)
        for clients in counts:
            per = max(2, (3200 if has_gpu else 16) // clients)
            r = throughput(setup, clients, per)
            r["precision"] = label
            report["runs"].append(r)
            print(f"gpu_check: {label} {clients:>2} clients: {r['images_per_s']:>8} images/s, batches {r['batch_sizes']}, "
                  f"{r['gpu_processes']} CUDA processes, {r['gpu_mib']} MiB", flush=True)
            check(f"{label} {clients} clients: no errors", not r["errors"], "; ".join(r["errors"]))
            if has_gpu:
                svc = int(stats()["pid"])
                held = [p for p, _ in gpu_apps()]
                check(f"{label} {clients} clients: one CUDA context for the server, the service's", held == [svc], str(held))
    report["drain"] = drain_rate(device, 2000 if has_gpu else 24)
    # A dry run's figures are the CPU's: kept out of bench/results.
    write(report, out_dir if has_gpu else os.path.join(os.path.dirname(model_dir), "results"))
    if failures:
        sys.exit(f"gpu_check: {len(failures)} failed: {', '.join(failures)}")
    print("gpu_check: all checks passed" + ("" if has_gpu else " (CPU dry run)"))


def drain_rate(device, rows):
    """Issue #16, point 4: rows/s of the background queue's drainer (its settings are the
    database's) beside embed_column's in a backend, on the same rows and model, f32."""
    db = psql("SELECT current_database()").strip()
    psql(f"ALTER DATABASE \"{db}\" SET visual_search.device = '{device}';"
         f"ALTER DATABASE \"{db}\" SET visual_search.half_precision = off;")
    fill = "DROP TABLE IF EXISTS q; CREATE TABLE q (i int PRIMARY KEY, img bytea, e embedding);"
    psql(fill + f"SELECT visual_search.enable_auto_embed('q', 'img', 'e', model => '{MODEL}', mode => 'async');")
    t = time.monotonic()
    drained = psql(f"INSERT INTO q SELECT i, img FROM stream WHERE i < {rows};"
                   "SELECT visual_search.wait_for_embeddings('q', '30 minutes');").strip()
    drain = rows / (time.monotonic() - t)
    filled = int(psql("SELECT count(e) FROM q").strip())
    check(f"{device}: the queue drained, every row embedded", drained == "t" and filled == rows, f"{filled} of {rows}")
    psql(fill + f"INSERT INTO q SELECT i, img FROM stream WHERE i < {rows};")
    t = time.monotonic()
    psql(f"SET visual_search.device = '{device}'; SELECT visual_search.embed_column('q', 'img', 'e', 64, '{MODEL}');")
    column = rows / (time.monotonic() - t)
    print(f"gpu_check: {device} drain of {rows} queued rows: {drain:.1f} rows/s, embed_column (batch 64) {column:.1f} "
          f"rows/s ({drain / column:.2f}x)", flush=True)
    psql(f"DROP TABLE q; ALTER DATABASE \"{db}\" RESET visual_search.device; ALTER DATABASE \"{db}\" RESET visual_search.half_precision;")
    return {"rows": rows, "drain_rows_per_s": round(drain, 1), "embed_column_rows_per_s": round(column, 1)}


def write(report, out_dir):
    print(f"gpu_check: writing {out_dir}/gpu.md", flush=True)
    os.makedirs(out_dir, exist_ok=True)
    json.dump(report, open(os.path.join(out_dir, "gpu.json"), "w"), indent=1)
    lines = ["# The embedding service on a GPU", "",
             f"{report['date']}, {report['nvidia_smi'] or 'no GPU (CPU dry run of scripts/gpu_check.sh)'}; "
             f"engine: {report['engine_info']}. {report['model']}; single-image `image_embed` calls, one request per "
             "row, from N concurrent psql sessions through the one embedding service.", "",
             "| precision | clients | images/s | batches formed (size: count) | CUDA processes | GPU MiB |",
             "| --- | ---: | ---: | --- | ---: | ---: |"]
    for r in report["runs"]:
        sizes = ", ".join(f"{k}: {v}" for k, v in r["batch_sizes"].items())
        lines.append(f"| {r['precision']} | {r['clients']} | {r['images_per_s']} | {sizes} | {r['gpu_processes']} | {r['gpu_mib']} |")
    d = report["drain"]
    lines += ["", f"Background auto-embedding (issue #16): {d['rows']} queued rows drained at {d['drain_rows_per_s']} rows/s, "
              f"`embed_column` (batch 64) {d['embed_column_rows_per_s']} rows/s on the same rows, f32."]
    open(os.path.join(out_dir, "gpu.md"), "w").write("\n".join(lines) + "\n")


main()
