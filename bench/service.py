#!/usr/bin/env python3
"""Issue #15, point 6: the embedding service against in-backend embedding, in figures.

Two models: vgg16-random (full-width VGG16, seeded random weights, 224x224, real photos) and the
shipped fashion-vgg16 (32x32, Fashion-MNIST PNGs). For each model x mode (visual_search.embed_in =
service | backend) x clients (1, 4, 16): N connections (psycopg2, autocommit, one thread each)
send single-image `SELECT image_embed(img, model)` calls back to back, rotating the images.
Every client first makes one call (the service, or each backend, loads the model), then the
clients run; after a ramp (a tenth of the window) the window opens, and calls completed inside
it give images/s and the p50/p99 latency of a call (as the client sees it). Then, with the
clients still connected and idle, the memory of the whole server: VmRSS (/proc/PID/status) and
Pss (/proc/PID/smaps_rollup) summed over the postmaster and all its descendants (the service
process is a grandchild: the background worker's child). Every row runs in a freshly restarted
server, so that each figure holds only that row's processes; service and backend rows alternate
per client count, so that other work on a shared machine tends to hit both sides of a comparison.
Before each row it waits (up to --wait-quiet seconds) for an idle machine, and it reports the CPU
the rest of the machine used during each window. The server's default threads: the service uses
every core (visual_search.service_threads = 0), a backend 1 (visual_search.threads = 1).

    bash bench/service.sh [--quick]   (make bench-service): makes the models and the cluster
    service.py CLUSTER_DIR [--seconds-vgg S] [--seconds-fashion S] [--clients 1,4,16]
               [--models vgg16-random,fashion-vgg16] [--modes service,backend] [--wait-quiet S]
               [--quick] [--out DIR]

Run as root (smaps_rollup of the server's processes). Writes OUT/service.json and OUT/service.md
(OUT: bench/results; --quick: 5 s and 2 s windows into bench/results/tmp, which git ignores).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "scripts"))
from live import connect, one, proc_kb, service_stats  # noqa: E402
PHOTOS = ["chelsea.png", "rocket.jpg", "sneaker.png", "chelsea.crop.png", "rocket.crop.png", "sneaker.crop.png",
          "chelsea_exif6.jpg", "chelsea_progressive.jpg"]
MODELS = {
    "vgg16-random": {"input": "224x224", "images": "photos"},
    "fashion-vgg16": {"input": "32x32", "images": "fashion"},
}
MB = 1024.0  # kB per MB
# the floor a connection costs without embedding: plain PostgreSQL, and the main library loaded
BARE = ["SELECT 1", "SELECT '[1,2,3]'::embedding"]


# ---------------------------------------------------------------- the cluster

def cluster(cmd, cdir):
    subprocess.run(["bash", os.path.join(REPO, "scripts/pgcluster.sh"), cmd, cdir], check=True, capture_output=True)


def conninfo(cdir):
    return open(os.path.join(cdir, "conninfo")).read().strip()


def restart_in(cdir, mode):
    """embed_in = mode through ALTER SYSTEM, then a fresh server (new port, new conninfo)."""
    c = connect(conninfo(cdir))
    # the library loaded first, so that the setting is known
    for q in ("LOAD 'visual_search'", f"ALTER SYSTEM SET visual_search.embed_in = '{mode}'"):
        c.cursor().execute(q)
    c.close()
    cluster("stop", cdir)
    cluster("start", cdir)
    dsn = conninfo(cdir)
    c = connect(dsn)
    with c.cursor() as cur:
        cur.execute("LOAD 'visual_search'")
        settings = {k: one(cur, f"SHOW visual_search.{k}") for k in
                    ("embed_in", "threads", "max_threads", "service_threads", "service_max_batch", "service_max_wait",
                     "model_dir")}
        data = one(cur, "SHOW data_directory")
    c.close()
    assert settings["embed_in"] == mode, settings
    return dsn, data, settings


# ---------------------------------------------------------------- memory of the server

def children_map():
    kids = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(p))
    return kids


def exe_name(pid):
    # " (deleted)": the binary was reinstalled while the process ran
    return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")


def proc_mem(pid):
    return {**proc_kb(pid, "status", ("VmRSS", "RssAnon", "RssFile", "RssShmem")),
            **proc_kb(pid, "smaps_rollup", ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem"))}


def server_memory(data, client_pids):
    """kB summed over the postmaster and every descendant, in total and per kind of process."""
    root, pids = server_pids(data)
    keys = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Pss", "Pss_Anon", "Pss_File", "Pss_Shmem")
    total = {k: 0 for k in keys}
    kinds = {}
    for p in pids:
        try:
            m = proc_mem(p)
            exe = exe_name(p)
            title = open(f"/proc/{p}/cmdline").read().replace("\0", " ").strip()
        except OSError:  # ended while we looked
            continue
        kind = ("postmaster" if p == root else "service" if exe == "visual_search_service"
                else "client backends" if p in client_pids
                else "service worker" if title.endswith("visual_search embedding service") else "other")
        k = kinds.setdefault(kind, {"processes": 0, **{x: 0 for x in keys}, "titles": []})
        k["processes"] += 1
        if kind == "other":
            k["titles"].append(title)
        for x in keys:
            total[x] += m.get(x, 0)
            k[x] += m.get(x, 0)
    return {"processes": sum(k["processes"] for k in kinds.values()), **total, "by_kind": kinds}


def maps_libtorch(pid):
    try:
        return "libtorch_cpu" in open(f"/proc/{pid}/maps").read()
    except OSError:
        return None


def proc_cpu_s(pids):
    """user + system seconds of these processes (every thread), those that still run."""
    hz, t = os.sysconf("SC_CLK_TCK"), 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        v = f[f.rindex(")") + 2:].split()
        t += int(v[11]) + int(v[12])
    return t / hz


def server_pids(data):
    root = int(open(os.path.join(data, "postmaster.pid")).readline())
    kids = children_map()
    pids, todo = [], [root]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(kids.get(p, []))
    return root, pids


def own_cpu_s():
    t = os.times()
    return t.user + t.system


def service_pid(data):
    root = int(open(os.path.join(data, "postmaster.pid")).readline())
    kids = children_map()
    for w in kids.get(root, []):
        for p in kids.get(w, []):
            try:
                if exe_name(p) == "visual_search_service":
                    return p
            except OSError:
                pass
    return None


def cpu_ticks():
    f = open("/proc/stat").readline().split()[1:]
    v = list(map(int, f))
    idle = v[3] + v[4]
    return sum(v[:8]), idle


# ---------------------------------------------------------------- one configuration

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def sizes_hist(s):
    return {int(a): int(b) for a, b in (p.split(":") for p in (s or "").split())}


def wait_quiet(max_s):
    """Waits (up to max_s) until the machine has been idle for two seconds in a row (under 0.15 busy
    cores: between configurations nothing of ours runs), so that a row does not start while someone
    else's build shares the cores. Returns the seconds waited and whether it was quiet."""
    hz, t0, calm = os.sysconf("SC_CLK_TCK"), time.perf_counter(), 0
    while True:
        a = cpu_ticks()
        time.sleep(1)
        b = cpu_ticks()
        busy = ((b[0] - a[0]) - (b[1] - a[1])) / hz
        calm = calm + 1 if busy < 0.15 else 0
        waited = time.perf_counter() - t0
        if calm >= 2 or waited >= max_s:
            return waited, calm >= 2


def run_config(dsn, data, model, mode, n, seconds, images):
    sql = f"SELECT vector_dims(image_embed(%s, '{model}'))"
    clients = [connect(dsn) for _ in range(n)]
    curs = [c.cursor() for c in clients]
    pids = [one(cur, "SELECT pg_backend_pid()") for cur in curs]
    errors = []
    lock = threading.Lock()

    # Warm-up: one call per client, all at once (in backend mode, N model loads).
    first = [None] * n

    warm_errors = []

    def warm(i):
        t = time.perf_counter()
        try:
            first[i] = (one(curs[i], sql, images[i % len(images)]), time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - reported, then retried once
            with lock:
                warm_errors.append(f"client {i}: {str(e).strip()[:300]}")

    t0 = time.perf_counter()
    ths = [threading.Thread(target=warm, args=(i,)) for i in range(n)]
    [t.start() for t in ths]
    [t.join() for t in ths]
    # A failed warm-up call is a finding (reported in the notes); the row goes on if a second try works.
    for i in range(n):
        if first[i] is None:
            try:
                t = time.perf_counter()
                first[i] = (one(curs[i], sql, images[i % len(images)]), time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001
                raise SystemExit(f"service.py: {model} {mode} {n} clients: warm-up client {i} failed twice: {e}")
    warm_s = time.perf_counter() - t0
    dims = first[0][0]

    mon = connect(dsn)
    mcur = mon.cursor()
    mon_pid = one(mcur, "SELECT pg_backend_pid()")
    stop = threading.Event()
    start = threading.Barrier(n + 1)
    calls = [[] for _ in range(n)]  # (start, end) per call

    def client(i):
        k = 1
        start.wait()
        while not stop.is_set():
            img = images[(i * 7 + k) % len(images)]
            k += 1
            t = time.perf_counter()
            try:
                curs[i].execute(sql, (img,))
                curs[i].fetchone()
            except Exception as e:  # noqa: BLE001 - reported
                with lock:
                    errors.append(f"client {i}: {str(e).strip()[:300]}")
                return
            calls[i].append((t, time.perf_counter()))

    ths = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    [t.start() for t in ths]
    start.wait()
    ramp = seconds / 10
    time.sleep(ramp)
    s_a = service_stats(mcur) if mode == "service" else None
    spid = service_pid(data) if mode == "service" else None
    cpu_a, svc_a, be_a = cpu_ticks(), proc_cpu_s([spid] if spid else []), proc_cpu_s(pids)
    srv_pids = server_pids(data)[1]
    srv_a, own_a = proc_cpu_s(srv_pids), own_cpu_s()
    ta = time.perf_counter()
    time.sleep(seconds)
    tb = time.perf_counter()
    cpu_b, svc_b, be_b = cpu_ticks(), proc_cpu_s([spid] if spid else []), proc_cpu_s(pids)
    srv_b, own_b = proc_cpu_s(srv_pids), own_cpu_s()
    s_b = service_stats(mcur) if mode == "service" else None
    stop.set()
    [t.join() for t in ths]
    tail_s = time.perf_counter() - tb
    mon.close()
    for _ in range(200):  # the monitor's backend gone before the memory is summed
        if not os.path.exists(f"/proc/{mon_pid}"):
            break
        time.sleep(0.01)
    time.sleep(0.3)
    mem = server_memory(data, set(pids))
    libtorch = sum(1 for p in pids if maps_libtorch(p))
    for c in clients:
        c.close()

    done = [(s, e) for cl in calls for s, e in cl if ta <= e <= tb]
    # images/s: each client's calls completed in the window after its first one there, over the
    # time from that first completion to its last, summed over the clients. Calls completed in the
    # window over its length is kept too (raw_images_per_s), but it moves with where the window
    # cuts: a 16-image VGG16 batch takes seconds and completes at once.
    steady, fallback = 0.0, False
    for cl in calls:
        ends = [e for _, e in cl if ta <= e <= tb]
        if len(ends) >= 2:
            steady += (len(ends) - 1) / (ends[-1] - ends[0])
        else:
            fallback = True
    if fallback:  # a client with under two completions: no span to measure
        steady = len(done) / (tb - ta)
    lat = [(e - s) * 1e3 for s, e in done]
    per_client = [sum(1 for _, e in cl if ta <= e <= tb) for cl in calls]
    busy = 1 - (cpu_b[1] - cpu_a[1]) / max(1, cpu_b[0] - cpu_a[0])
    # what the rest of the machine ran meanwhile (other users of a shared box), in cores
    hz, ncpu = os.sysconf("SC_CLK_TCK"), os.cpu_count()
    machine_s = (cpu_b[0] - cpu_a[0] - (cpu_b[1] - cpu_a[1])) / hz
    other = max(0.0, machine_s - (srv_b - srv_a) - (own_b - own_a)) / (tb - ta)
    r = {
        "model": model, "mode": mode, "clients": n, "seconds": round(tb - ta, 3), "ramp_s": ramp,
        "dims": dims, "calls": len(done), "images_per_s": steady, "images_per_s_from_window": fallback,
        "raw_images_per_s": len(done) / (tb - ta),
        "latency_ms": {**{f"p{q * 100:g}": pct(lat, q) for q in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)},
                       "max": max(lat, default=None), "mean": statistics.mean(lat) if lat else None},
        "calls_over_5x_p50": sum(1 for x in lat if x > 5 * pct(lat, 0.5)),
        "calls_per_client": per_client, "warmup_s": warm_s, "warmup_first_call_s": [round(f[1], 3) for f in first],
        "tail_s": tail_s, "cpu_busy": busy, "warmup_errors": warm_errors,
        "cpu_s_in_window": {"service": svc_b - svc_a if spid else None, "client backends": be_b - be_a,
                            "server": srv_b - srv_a, "this client program": own_b - own_a, "machine": machine_s},
        "other_load_cores": other, "errors": errors, "backend_pids": pids,
        "backends_mapping_libtorch": libtorch, "memory_kb": mem,
    }
    if mode == "service":
        ha, hb = sizes_hist(s_a["batch_sizes"]), sizes_hist(s_b["batch_sizes"])
        hist = {k: hb.get(k, 0) - ha.get(k, 0) for k in sorted(set(ha) | set(hb))}
        hist = {k: v for k, v in hist.items() if v}
        dimg, dbat, dreq = (s_b[k] - s_a[k] for k in ("images", "batches", "requests"))
        wait = (s_b["mean_queue_wait_ms"] or 0) * s_b["requests"] - (s_a["mean_queue_wait_ms"] or 0) * s_a["requests"]
        r["service"] = {
            "window": {"requests": dreq, "images": dimg, "batches": dbat, "mean_batch": dimg / dbat if dbat else None,
                       "mean_queue_wait_ms": wait / dreq if dreq else None,
                       "batch_sizes": " ".join(f"{k}:{v}" for k, v in hist.items())},
            "stats_after": {k: (list(v) if isinstance(v, list) else v) for k, v in s_b.items()},
        }
    return r


def bare_growth(dsn, data, counts, sql):
    """The floor: server memory with N idle connections that ran only `sql`, no image_embed."""
    out = {}
    for n in (min(counts), max(counts)):
        cs = [connect(dsn) for _ in range(n)]
        pids = set()
        for c in cs:
            with c.cursor() as cur:
                cur.execute(sql)
                cur.fetchall()
                pids.add(one(cur, "SELECT pg_backend_pid()"))
        time.sleep(0.3)
        out[n] = server_memory(data, pids)
        for c in cs:
            c.close()
        time.sleep(0.3)
    return out


# ---------------------------------------------------------------- the report

def mb(kb):
    return kb / MB


def growth(rows, model, mode, key, kind=None):
    """(mem(max clients) - mem(min clients)) / added clients, MB; kind: one kind of process only."""
    rs = sorted((r for r in rows if r["model"] == model and r["mode"] == mode), key=lambda r: r["clients"])
    return growth_of(rs, key, kind)


def growth_of(rs, key, kind=None):
    if len(rs) < 2:
        return None
    lo, hi = rs[0], rs[-1]

    def get(r):
        m = r["memory_kb"]
        return m[key] if kind is None else m["by_kind"].get(kind, {}).get(key, 0)
    return mb(get(hi) - get(lo)) / (hi["clients"] - lo["clients"])


def report(res):
    rows = res["rows"]
    lo_n, hi_n = min(res["clients"]), max(res["clients"])
    lines = ["# The embedding service against in-backend embedding (issue #15, point 6)", "",
             f"`make bench-service` (bench/service.sh, bench/service.py), {res['date']}: {res['cpu']}, {res['nproc']} cores "
             f"(a shared machine: figures move by 10-30 % between runs). N connections (psycopg2, autocommit, one thread "
             f"each) send single-image `SELECT image_embed(img, model)` calls back to back; after one warm-up call per "
             f"client and a ramp of a tenth of the window, the window: {res['seconds']['vgg16-random']:g} s for vgg16-random, "
             f"{res['seconds']['fashion-vgg16']:g} s for fashion-vgg16. images/s: calls completed / seconds, per client from "
             f"its first completion in the window to its last, summed over the clients (a batch of VGG16 images takes "
             f"seconds and completes at once, so a plain count over the window would move by a whole batch with where "
             f"the window cuts; that count is in the JSON, raw_images_per_s); calls: completed in the window; "
             f"p50/p99: one call as the client sees it. Memory: with the clients connected and idle after the "
             f"window, VmRSS and Pss summed over the postmaster and all its descendants (the service process included). "
             f"The server's default threads: the service {res['service_threads_seen']} (visual_search.service_threads = 0: "
             f"every core), each backend {res['settings']['threads']} (visual_search.threads), so in backend mode one client "
             f"uses one of the {res['nproc']} cores. Every row runs in a fresh server (restarted with that mode), service and backend rows interleaved per client count; service_max_batch "
             f"{res['settings']['service_max_batch']}, service_max_wait {res['settings']['service_max_wait']}. "
             f"Mean batch and batch sizes (size:count): the service's counters over the window. Service CPU: the "
             f"service process's CPU time over the window, in cores; server CPU per image: CPU time of all the server's "
             f"processes over the window / calls completed in it; other load: CPU time the rest of the machine "
             f"(not the server, not this client program) used meanwhile, in cores: a figure above ~0.1 means that "
             f"row shared the {res['nproc']} cores with someone else.", ""]
    for model in res["models"]:
        spec = MODELS[model]
        lines += [f"## {model} ({spec['input']}; {res['images'][model]})", "",
                  "| mode | clients | images/s | calls | p50 ms | p99 ms | RSS MB | PSS MB | mean batch | batch sizes | backends with libtorch | service CPU, cores | server CPU ms / image | other load, cores |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
        for r in rows:
            if r["model"] != model:
                continue
            s = r.get("service", {}).get("window", {})
            m = r["memory_kb"]
            batch = f"{s['mean_batch']:.2f} | {s['batch_sizes']}" if s else "- | -"
            c = r["cpu_s_in_window"]["service"]
            svc_cores = f"{c / r['seconds']:.2f}" if c is not None else "-"
            per_img = f"{r['cpu_s_in_window']['server'] * 1e3 / r['calls']:.0f}" if r["calls"] else "-"
            lines.append(f"| {r['mode']} | {r['clients']} | {r['images_per_s']:.2f} | {r['calls']} | {r['latency_ms']['p50']:.1f} | "
                         f"{r['latency_ms']['p99']:.1f} | {mb(m['VmRSS']):.0f} | {mb(m['Pss']):.0f} | {batch} | "
                         f"{r['backends_mapping_libtorch']}/{r['clients']} | {svc_cores} | {per_img} | {r['other_load_cores']:.2f} |")
        lines += ["", f"Memory growth per added client, (mem({hi_n}) - mem({lo_n})) / {hi_n - lo_n}, MB:", "",
                  "| mode | RSS | PSS | RssAnon (private) | client backends' RSS | client backends' PSS | service RSS |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for mode in res["modes"]:
            g = [growth(rows, model, mode, "VmRSS"), growth(rows, model, mode, "Pss"), growth(rows, model, mode, "RssAnon"),
                 growth(rows, model, mode, "VmRSS", "client backends"), growth(rows, model, mode, "Pss", "client backends"),
                 growth(rows, model, mode, "VmRSS", "service")]
            if g[0] is not None:
                lines.append(f"| {mode} | " + " | ".join(f"{x:+.1f}" for x in g) + " |")
        for label, b in res["bare"].items():
            rs = [{"clients": n, "memory_kb": m} for n, m in sorted(b.items())]
            g = [growth_of(rs, "VmRSS"), growth_of(rs, "Pss"), growth_of(rs, "RssAnon"),
                 growth_of(rs, "VmRSS", "client backends"), growth_of(rs, "Pss", "client backends")]
            lines.append(f"| for comparison: idle connections that ran only `{label}` | " + " | ".join(f"{x:+.1f}" for x in g)
                         + " | - |")
        lines.append("")
    lines += ["## Targets", ""] + [f"- {t['verdict']}: {t['text']}" for t in res["targets"]] + [""]
    if res["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    return "\n".join(lines)


def targets(res):
    rows, out, notes = res["rows"], [], []
    hi_n = max(res["clients"])

    def row(model, mode, n):
        return next((r for r in rows if r["model"] == model and r["mode"] == mode and r["clients"] == n), None)
    for model in res["models"]:
        s, b = row(model, "service", hi_n), row(model, "backend", hi_n)
        if s and b:
            ok = s["images_per_s"] >= b["images_per_s"]
            out.append({"target": "throughput", "model": model, "pass": ok, "verdict": "PASS" if ok else "FAIL",
                        "text": f"{model}, {hi_n} clients: the service's {s['images_per_s']:.2f} images/s >= the backends' "
                                f"{b['images_per_s']:.2f} ({s['images_per_s'] / b['images_per_s']:.2f}x)"})
    bare = res["bare"].get("SELECT 1")
    bare_g = None
    if bare:
        rs = [{"clients": n, "memory_kb": m} for n, m in sorted(bare.items())]
        bare_g = (growth_of(rs, "VmRSS"), growth_of(rs, "Pss"), growth_of(rs, "RssAnon"))
    for model in res["models"]:
        rss, pss = growth(rows, model, "service", "VmRSS"), growth(rows, model, "service", "Pss")
        if rss is None:
            continue
        anon = growth(rows, model, "service", "RssAnon")
        be_rss, be_pss, be_anon = (growth(rows, model, "service", k, "client backends") for k in ("VmRSS", "Pss", "RssAnon"))
        svc = growth(rows, model, "service", "VmRSS", "service")
        brss, bpss = growth(rows, model, "backend", "VmRSS"), growth(rows, model, "backend", "Pss")
        ok = rss < 5
        text = (f"{model}: in service mode the server grows by {rss:+.1f} MB RSS per added client (< 5 MB wanted; PSS "
                f"{pss:+.1f} MB, private RssAnon {anon:+.1f} MB); of that, the client backends {be_rss:+.1f} MB RSS / "
                f"{be_pss:+.1f} MB PSS / {be_anon:+.1f} MB RssAnon each and the service process {svc:+.1f} MB RSS")
        if bare_g:
            text += (f"; an idle plain PostgreSQL connection (`SELECT 1`) adds {bare_g[0]:+.1f} MB RSS / {bare_g[1]:+.1f} MB PSS"
                     f" / {bare_g[2]:+.1f} MB RssAnon")
        if brss is not None:
            text += f". Backend mode: {brss:+.1f} MB RSS ({bpss:+.1f} MB PSS) per client"
        if not ok and pss < 5:
            text += (". RSS fails only because every PostgreSQL backend counts in its own RSS the shared pages it maps "
                     "(shared_buffers it touched, the postgres binary, the libraries); PSS, which divides shared pages "
                     "among the processes that map them, is under 5 MB per client")
        elif not ok and be_pss < 5:
            text += (f". RSS counts every backend's shared pages (see PSS); PSS is over 5 MB too, but not because of the "
                     f"connections (the client backends' PSS grows by {be_pss:+.1f} MB each): the service process grew by "
                     f"{svc * (max(res['clients']) - min(res['clients'])):.0f} MB between {min(res['clients'])} and "
                     f"{max(res['clients'])} clients, its working memory for larger batches")
        out.append({"target": "memory", "model": model, "pass": ok, "verdict": "PASS" if ok else "FAIL", "text": text + ".",
                    "rss_mb_per_client": rss, "pss_mb_per_client": pss, "anon_mb_per_client": anon,
                    "client_backends_rss_mb_per_client": be_rss, "client_backends_pss_mb_per_client": be_pss,
                    "service_rss_mb_per_client": svc, "backend_rss_mb_per_client": brss, "backend_pss_mb_per_client": bpss,
                    "bare_connection_rss_pss_anon_mb": bare_g})
    if res["install"] != res["install_after"]:
        notes.append("the installation changed during the run (someone reinstalled the extension): the figures mix two "
                     "builds; run again")
    g = res["git"]
    notes.append(f"built from {g['head']}" + (f" with uncommitted changes to {', '.join(g['modified_tracked_files'])}"
                                               if g["modified_tracked_files"] else "")
                 + "; installed files: " + ", ".join(f"{k} {v['sha256'] if isinstance(v, dict) else v}"
                                                     for k, v in res["install"].items()))
    noisy = [r for r in rows if r["other_load_cores"] > 0.1]
    if noisy:
        notes.append(f"{len(noisy)} of {len(rows)} rows shared the machine with other work (other load > 0.1 cores: "
                     + ", ".join(f"{r['model']} {r['mode']} {r['clients']}: {r['other_load_cores']:.2f}" for r in noisy)
                     + "): their figures are not comparable with those of a quiet machine")
    for r in rows:
        if r["warmup_errors"]:
            msgs = sorted({e.split(": ", 1)[1] for e in r["warmup_errors"]})
            notes.append(f"{r['model']} {r['mode']} {r['clients']} clients, on a freshly started server: "
                         f"{len(r['warmup_errors'])} of the {r['clients']} concurrent warm-up calls failed "
                         f"({'; '.join(msgs)}); each worked when tried again")
        if r["errors"]:
            notes.append(f"{r['model']} {r['mode']} {r['clients']} clients: errors {r['errors'][:3]}")
        want = r["clients"] if r["mode"] == "backend" else 0
        if r["backends_mapping_libtorch"] != want:
            notes.append(f"{r['model']} {r['mode']} {r['clients']} clients: {r['backends_mapping_libtorch']} client backends "
                         f"map libtorch (expected {want})")
    return out, notes


def install_fingerprint():
    """The installed libraries and service binary (size, time, sha256): what the figures are of."""
    import hashlib
    lib = subprocess.run([os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config"), "--pkglibdir"],
                         capture_output=True, text=True).stdout.strip()
    out = {}
    for f in ("visual_search.so", "visual_search_engine.so", "visual_search_service"):
        p = os.path.join(lib, f)
        try:
            st = os.stat(p)
            out[f] = {"bytes": st.st_size, "mtime": datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
                      .strftime("%Y-%m-%d %H:%M:%S UTC"), "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]}
        except OSError as e:
            out[f] = str(e)
    return out


def git_state():
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.split("\n")
    return {"head": head, "modified_tracked_files": [l[3:] for l in dirty if l.strip()]}


def load_images(kind):
    if kind == "photos":
        return [psycopg2.Binary(open(os.path.join(REPO, "pg_test/data/images", f), "rb").read()) for f in PHOTOS]
    out = subprocess.run([sys.executable, os.path.join(REPO, "scripts/fashion_mnist.py"), "--limit", "200"],
                         check=True, capture_output=True, text=True).stdout
    # column 5: the PNG as COPY text's bytea, "\\x" + hex
    return [psycopg2.Binary(bytes.fromhex(line.split("\t")[4][3:])) for line in out.splitlines()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cluster", help="the cluster folder (scripts/pgcluster.sh), visual_search created, model_dir set")
    ap.add_argument("--seconds-vgg", type=float, default=20.0)
    ap.add_argument("--seconds-fashion", type=float, default=8.0)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--models", default="vgg16-random,fashion-vgg16")
    ap.add_argument("--modes", default="service,backend")
    ap.add_argument("--quick", action="store_true", help="5 s and 2 s windows, results into bench/results/tmp")
    ap.add_argument("--out", default=None)
    ap.add_argument("--wait-quiet", type=float, default=20.0,
                    help="before each configuration, wait up to this many seconds for an idle machine (0: never)")
    a = ap.parse_args()
    if a.quick:
        a.seconds_vgg, a.seconds_fashion = min(a.seconds_vgg, 5.0), min(a.seconds_fashion, 2.0)
    out = a.out or os.path.join(HERE, "results", "tmp" if a.quick else "")
    clients = [int(x) for x in a.clients.split(",")]
    models, modes = a.models.split(","), a.modes.split(",")
    seconds = {"vgg16-random": a.seconds_vgg, "fashion-vgg16": a.seconds_fashion}
    imgs = {k: load_images(k) for k in ("photos", "fashion")}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    res = {"benchmark": "image_embed through the embedding service vs in the backend (issue #15, point 6)",
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "nproc": os.cpu_count(),
           "cpu": cpu, "kernel": platform.release(), "mem_total_kb": int(open("/proc/meminfo").readline().split()[1]),
           "clients": clients, "models": models, "modes": modes, "seconds": seconds,
           "images": {"vgg16-random": f"{len(PHOTOS)} photos of pg_test/data/images ({', '.join(PHOTOS)})",
                      "fashion-vgg16": f"{len(imgs['fashion'])} Fashion-MNIST PNGs (28x28)"},
           "rows": [], "settings_by_run": [], "git": git_state(), "install": install_fingerprint()}
    t_all = time.perf_counter()
    # Modes interleaved per client count (a fresh server for every row), so that a neighbour's
    # build on the shared cores tends to hit both modes of a comparison alike.
    for model in models:
        for n in clients:
            for mode in modes:
                dsn, data, settings = restart_in(a.cluster, mode)
                res["settings"] = settings
                if "bare" not in res:
                    res["bare"] = {q: bare_growth(dsn, data, clients, q) for q in BARE}
                res["settings_by_run"].append({"model": model, "mode": mode, "clients": n, **settings})
                waited, quiet = wait_quiet(a.wait_quiet) if a.wait_quiet > 0 else (0.0, None)
                r = run_config(dsn, data, model, mode, n, seconds[model], imgs[MODELS[model]["images"]])
                r["waited_for_quiet_s"], r["quiet_before"] = round(waited, 1), quiet
                res["rows"].append(r)
                s = r.get("service", {}).get("window", {})
                print(f"[service] {model:13} {mode:7} {n:2} clients: {r['images_per_s']:8.2f} images/s  "
                      f"p50 {r['latency_ms']['p50']:8.1f} ms  p99 {r['latency_ms']['p99']:8.1f} ms  "
                      f"RSS {mb(r['memory_kb']['VmRSS']):6.0f} MB  PSS {mb(r['memory_kb']['Pss']):6.0f} MB  "
                      f"warm-up {r['warmup_s']:.1f} s  other load {r['other_load_cores']:.2f} cores"
                      + (f"  mean batch {s['mean_batch']:.2f} [{s['batch_sizes']}]  queue wait {s['mean_queue_wait_ms']:.1f} ms"
                         if s else ""), flush=True)
    res["rows"].sort(key=lambda r: (models.index(r["model"]), modes.index(r["mode"]), r["clients"]))
    # back to the default mode for whoever uses the cluster next
    c = connect(conninfo(a.cluster))
    for q in ("LOAD 'visual_search'", "ALTER SYSTEM RESET visual_search.embed_in", "SELECT pg_reload_conf()"):
        c.cursor().execute(q)
    c.close()
    threads = {r["service"]["stats_after"]["threads"] for r in res["rows"] if "service" in r}
    res["service_threads_seen"] = (f"{threads.pop()} threads" if len(threads) == 1 else f"{sorted(threads)} threads"
                                   if threads else "(not run)")
    res["total_s"] = time.perf_counter() - t_all
    res["install_after"] = install_fingerprint()
    res["targets"], res["notes"] = targets(res)
    md = report(res)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "service.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    with open(os.path.join(out, "service.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"[service] {res['total_s']:.0f} s; {os.path.join(out, 'service.json')}, {os.path.join(out, 'service.md')}")


if __name__ == "__main__":
    main()
