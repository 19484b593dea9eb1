#!/usr/bin/env python3
"""What a backend pays for visual_search before it embeds anything, beside pgvector in the same
server: (a) a new connection that parses one literal, (b) that backend's RSS, (c) an exact
ORDER BY e <-> q LIMIT 10 over 60,000 x 128 that the planner runs with parallel workers.
Usage: connect.py CONNINFO LABEL OUT_DIR  (databases vs_connect and pgv_connect, made here).
Writes OUT_DIR/connect-LABEL.json and OUT_DIR/connect.md (every connect-*.json found there)."""
import glob, json, os, statistics, sys, time
import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from live import proc_kb  # noqa: E402

conninfo, label, out = sys.argv[1], sys.argv[2], sys.argv[3]
REPS = int(os.environ.get("VS_BENCH_REPS", "200"))
QUERY_REPS = int(os.environ.get("VS_BENCH_QUERY_REPS", "100"))
ROWS, DIMS = 60000, 128
SIDES = {
    "visual_search": {"db": "vs_connect", "ext": "visual_search", "type": "embedding"},
    "pgvector": {"db": "pgv_connect", "ext": "vector", "type": "vector"},
}


def dsn(db):
    return f"{conninfo} dbname={db}"


def run(db, *sql, fetch=False):
    c = psycopg2.connect(dsn(db))
    c.autocommit = True
    cur = c.cursor()
    rows = None
    for s in sql:
        cur.execute(s)
        if fetch and cur.description:
            rows = cur.fetchall()
    c.close()
    return rows


def setup():
    for side in SIDES.values():
        if not run("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{side['db']}'", fetch=True):
            run("postgres", f"CREATE DATABASE {side['db']}")
        run(side["db"], f"CREATE EXTENSION IF NOT EXISTS {side['ext']}")
        n = run(side["db"], "SELECT count(*) FROM pg_class WHERE relname = 'items'", fetch=True)[0][0]
        if n == 0:
            # The same seed gives the same rows in both databases.
            run(side["db"], "SELECT setseed(0.42)",
                f"CREATE TABLE items AS SELECT i AS id, (SELECT array_agg(random()::real) FROM generate_series(1, {DIMS}) "
                f"WHERE i > 0)::{side['type']}({DIMS}) AS e FROM generate_series(1, {ROWS}) i",
                f"CREATE TABLE queries AS SELECT i AS id, (SELECT array_agg(random()::real) FROM generate_series(1, {DIMS}) "
                f"WHERE i > 0)::{side['type']}({DIMS}) AS e FROM generate_series(1, 100) i",
                "VACUUM ANALYZE items", "VACUUM ANALYZE queries")


def rss_kb(pid):
    return proc_kb(pid, "status", ("VmRSS", "RssAnon", "RssFile", "RssShmem"))


def connect_once(side):
    t = time.perf_counter()
    c = psycopg2.connect(dsn(side["db"]))
    cur = c.cursor()
    cur.execute(f"SELECT '[1,2,3]'::{side['type']}")
    cur.fetchall()
    ms = (time.perf_counter() - t) * 1e3
    cur.execute("SELECT pg_backend_pid()")
    rss = rss_kb(cur.fetchone()[0])
    cur.execute("SELECT count(*) FROM regexp_split_to_table(pg_read_file('/proc/' || pg_backend_pid() || '/maps'), E'\\n') l "
                "WHERE l ~ 'libtorch_cpu'")
    torch = cur.fetchone()[0] > 0
    c.close()
    return ms, rss, torch


PARALLEL = ["SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0", "SET min_parallel_table_scan_size = 0",
            "SET max_parallel_workers_per_gather = 2"]
QUERY = "SELECT id FROM items ORDER BY e <-> (SELECT e FROM queries WHERE id = %s) LIMIT 10"


def query_times(parallel):
    """Times of QUERY on both sides, one query of each in turn, so that drift of a shared machine
    hits both alike; with each side's plan and answers."""
    conns, plans = {}, {}
    for name, side in SIDES.items():
        c = psycopg2.connect(dsn(side["db"]))
        cur = c.cursor()
        for s in PARALLEL if parallel else ["SET max_parallel_workers_per_gather = 0"]:
            cur.execute(s)
        cur.execute("EXPLAIN (ANALYZE, COSTS OFF) " + QUERY % 1)
        plans[name] = "\n".join(r[0] for r in cur.fetchall())
        conns[name] = (c, cur)
    times, answers = {n: [] for n in SIDES}, {n: [] for n in SIDES}
    for i in range(QUERY_REPS):
        for name, (_, cur) in conns.items():
            t = time.perf_counter()
            cur.execute(QUERY, (i % 100 + 1,))
            answers[name].append([r[0] for r in cur.fetchall()])
            times[name].append((time.perf_counter() - t) * 1e3)
    for c, _ in conns.values():
        c.close()
    return times, plans, answers


def main():
    setup()
    res = {"label": label, "reps": REPS, "query_reps": QUERY_REPS, "rows": ROWS, "dims": DIMS, "sides": {}}
    for name, side in SIDES.items():
        connect_once(side)  # warm the page cache and the catalogue caches of the database
    conn = {n: [] for n in SIDES}
    for _ in range(REPS):  # interleaved, so that drift hits both sides alike
        for name, side in SIDES.items():
            conn[name].append(connect_once(side))
    par, plans, answers = query_times(True)
    ser, _, _ = query_times(False)
    for name in SIDES:
        ms = [m for m, _, _ in conn[name]]
        rss = [r["VmRSS"] for _, r, _ in conn[name]]
        last = conn[name][-1][1]
        plan = plans[name]
        res["sides"][name] = {
            "connect_literal_ms_median": statistics.median(ms),
            "connect_literal_ms_p90": sorted(ms)[int(len(ms) * 0.9)],
            "backend_rss_kb_median": statistics.median(rss),
            "backend_rss_breakdown_kb": last,
            "libtorch_mapped_after_literal": any(t for _, _, t in conn[name]),
            "parallel_query_ms_median": statistics.median(par[name]),
            "serial_query_ms_median": statistics.median(ser[name]),
            "plan_has_gather": "Gather" in plan,
            "plan": plan,
        }
    vs, pg = res["sides"]["visual_search"], res["sides"]["pgvector"]
    res["same_answers"] = answers["visual_search"] == answers["pgvector"]
    res["ratios"] = {
        "connect_literal": vs["connect_literal_ms_median"] / pg["connect_literal_ms_median"],
        "rss_diff_mb": (vs["backend_rss_kb_median"] - pg["backend_rss_kb_median"]) / 1024,
        "parallel_query": vs["parallel_query_ms_median"] / pg["parallel_query_ms_median"],
    }
    res["targets_met"] = {
        "connect_literal_le_1.2x": res["ratios"]["connect_literal"] <= 1.2,
        "rss_within_10mb": abs(res["ratios"]["rss_diff_mb"]) <= 10,
        "parallel_query_le_1.2x": res["ratios"]["parallel_query"] <= 1.2,
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"connect-{label}.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(f"[{label}] {'':28} {'visual_search':>14} {'pgvector':>10}  ratio/target")
    print(f"[{label}] new connection + literal, ms {vs['connect_literal_ms_median']:14.2f} {pg['connect_literal_ms_median']:10.2f}"
          f"  {res['ratios']['connect_literal']:.2f}x (<= 1.2x)")
    print(f"[{label}] backend RSS, MB              {vs['backend_rss_kb_median'] / 1024:14.1f} {pg['backend_rss_kb_median'] / 1024:10.1f}"
          f"  {res['ratios']['rss_diff_mb']:+.1f} MB (within 10 MB)")
    print(f"[{label}] parallel exact top-10, ms    {vs['parallel_query_ms_median']:14.1f} {pg['parallel_query_ms_median']:10.1f}"
          f"  {res['ratios']['parallel_query']:.2f}x (<= 1.2x); Gather: {vs['plan_has_gather']}/{pg['plan_has_gather']}")
    print(f"[{label}] serial exact top-10, ms      {vs['serial_query_ms_median']:14.1f} {pg['serial_query_ms_median']:10.1f}")
    print(f"[{label}] libtorch mapped after a literal: {vs['libtorch_mapped_after_literal']}; same top-10 answers: {res['same_answers']}")
    report(out)


def report(out):
    lines = ["# A new connection, its memory and a parallel scan, beside pgvector", "",
             "`make bench-connect` (bench/connect.sh): one server, visual_search and pgvector built from source in databases "
             f"of their own; medians of {REPS} interleaved new connections that parse one literal (`SELECT '[1,2,3]'::embedding` / "
             f"`::vector`, connect to result, libpq from Python), VmRSS of that backend after the query, and {QUERY_REPS} interleaved runs of "
             f"`SELECT id FROM items ORDER BY e <-> (SELECT e FROM queries WHERE id = k) LIMIT 10` over {ROWS:,} x {DIMS} random "
             "vectors with parallel_setup_cost = 0, parallel_tuple_cost = 0, min_parallel_table_scan_size = 0, "
             "max_parallel_workers_per_gather = 2 (the plan has a Gather; serial: max_parallel_workers_per_gather = 0).", "",
             "| build | connect + literal ms (vs / pgvector / ratio) | backend RSS MB (vs / pgvector / diff) | parallel top-10 ms (vs / pgvector / ratio) | serial top-10 ms (vs / pgvector) | libtorch mapped after a literal |",
             "|---|---|---|---|---|---|"]
    for p in sorted(glob.glob(os.path.join(out, "connect-*.json"))):
        r = json.load(open(p))
        vs, pg = r["sides"]["visual_search"], r["sides"]["pgvector"]
        lines.append(
            f"| {r['label']} | {vs['connect_literal_ms_median']:.2f} / {pg['connect_literal_ms_median']:.2f} / {r['ratios']['connect_literal']:.2f}x "
            f"| {vs['backend_rss_kb_median'] / 1024:.1f} / {pg['backend_rss_kb_median'] / 1024:.1f} / {r['ratios']['rss_diff_mb']:+.1f} "
            f"| {vs['parallel_query_ms_median']:.1f} / {pg['parallel_query_ms_median']:.1f} / {r['ratios']['parallel_query']:.2f}x "
            f"| {vs['serial_query_ms_median']:.1f} / {pg['serial_query_ms_median']:.1f} | {vs['libtorch_mapped_after_literal']} |")
    lines += ["", "Targets (issue #15, point 1): connect + literal <= 1.2x pgvector, RSS within 10 MB, parallel top-10 <= 1.2x. "
              "`before`: the single library that linked libtorch (main at df3453a); `after`: the main library and the engine "
              "library apart. Each row is one run of `bench/connect.sh LABEL`; compare ratios, not milliseconds, across rows "
              "(the machine is shared).", ""]
    with open(os.path.join(out, "connect.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
