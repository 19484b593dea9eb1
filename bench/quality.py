#!/usr/bin/env python3
"""Retrieval quality through the extension: Fashion-MNIST test images (PNG bytea) searched among
the 60,000 training images with image_embed + ORDER BY <-> LIMIT 10, all in SQL. Reports
precision@10 (share of the top 10 in the query's category) per category, for the model and for
raw pixels, over the first N test queries.

    make bench-quality            (MODEL=fashion-vgg16 QUERIES=2000 by default)

Writes bench/results/quality.json and bench/results/quality.md (--out elsewhere). Each run embeds
anew into a table of its own (fm_<model>): a 1,280-d f32 vector and the raw pixels do not fit in
one 8 kB row, and a column kept from an earlier run would keep vectors of earlier weights.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def psql(conninfo, sql):
    r = subprocess.run(["psql", conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t"],
                       input=sql, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    return r.stdout, r.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fashion-vgg16")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--model-dir", default="", help="visual_search.model_dir (default: the installed models)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="folder of quality.json and quality.md")
    ap.add_argument("--no-pixels", action="store_true", help="skip the raw-pixel baseline (another search)")
    ap.add_argument("--jobs", type=int, default=1, help="connections searching at once, each a share of the queries")
    a = ap.parse_args()
    subprocess.run(["bash", os.path.join(REPO, "scripts/pgcluster.sh"), "start", os.path.join(REPO, ".bench")],
                   check=True, capture_output=True)
    conninfo = open(os.path.join(REPO, ".bench/conninfo")).read().strip()
    setup = "SET visual_search.threads = 2;\n"
    if a.model_dir:
        setup += f"SET visual_search.model_dir = '{a.model_dir}';\n"
    dims = psql(conninfo, "CREATE EXTENSION IF NOT EXISTS visual_search;\n" + setup +
                f"SELECT dims FROM visual_search.models() WHERE name = '{a.model}';")[0].strip()
    if not dims:
        sys.exit(f"model {a.model} is not installed (make install)")
    have = psql(conninfo, "SELECT count(*) FROM pg_tables WHERE tablename = 'fmnist';")[0].strip()
    if have == "0":
        psql(conninfo, "CREATE TABLE fmnist (id int PRIMARY KEY, name text, category text, split text, "
                       "image bytea, pixels embedding(784));\n"
                       "ALTER TABLE fmnist ALTER pixels SET STORAGE PLAIN;")
        gen = subprocess.Popen([sys.executable, os.path.join(REPO, "scripts/fashion_mnist.py")], stdout=subprocess.PIPE)
        subprocess.run(["psql", conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                        "\\copy fmnist FROM STDIN"], stdin=gen.stdout, check=True)
        gen.wait()
    tbl = "fm_" + "".join(c if c.isalnum() else "_" for c in a.model)
    psql(conninfo, f"DROP TABLE IF EXISTS {tbl};\n"
                   f"CREATE TABLE {tbl} (id int PRIMARY KEY, category text, split text, image bytea, e embedding({dims}));\n"
                   f"ALTER TABLE {tbl} ALTER e SET STORAGE PLAIN;\n"
                   f"INSERT INTO {tbl} SELECT id, category, split, image FROM fmnist;")
    t0 = time.time()
    _, notices = psql(conninfo, setup + f"SELECT visual_search.embed_column('{tbl}', 'image', 'e', 512, '{a.model}');")
    embed_s = time.time() - t0
    embedded = psql(conninfo, f"SELECT count(e) FROM {tbl};")[0].strip()
    psql(conninfo, f"VACUUM ANALYZE {tbl};")

    def hits(table, column, job):
        """(category, share of the top 10 in it) of this job's share of the queries."""
        return subprocess.Popen(["psql", conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t", "-c", f"""
            SELECT category, hit FROM (
              SELECT q.id, q.category, (SELECT count(*) FILTER (WHERE t.category = q.category) / 10.0
                                        FROM (SELECT category FROM {table} p WHERE p.split = 'train'
                                              ORDER BY p.{column} <-> q.{column} LIMIT 10) t) AS hit,
                     row_number() OVER (ORDER BY q.id) AS n
              FROM (SELECT * FROM {table} WHERE split = 'test' ORDER BY id LIMIT {a.queries}) q) s
            WHERE n % {a.jobs} = {job};"""], stdout=subprocess.PIPE, text=True)

    def precision(table, column):
        procs = [hits(table, column, j) for j in range(a.jobs)]
        rows = []
        for p in procs:
            out, _ = p.communicate()
            if p.returncode != 0:
                sys.exit(f"search over {table}.{column} failed")
            rows += [(r.split("\t")[0], float(r.split("\t")[1])) for r in out.strip().splitlines()]
        by = {}
        for cat, hit in rows:
            by.setdefault(cat, []).append(hit)
        by["all"] = [h for _, h in rows]
        return {c: {"queries": len(v), "p_at_10": round(sum(v) / len(v), 4)}
                for c, v in sorted(by.items(), key=lambda kv: (kv[0] == "all", kv[0]))}

    t0 = time.time()
    model_p = precision(tbl, "e")
    search_s = time.time() - t0
    pixel_p = None if a.no_pixels else precision("fmnist", "pixels")
    result = {"benchmark": "Fashion-MNIST retrieval precision@10 through SQL", "model": a.model, "dims": int(dims),
              "queries": a.queries, "catalogue": 60000, "embedded_rows": int(embedded),
              "embed_seconds": round(embed_s, 1), "embed_rows_per_s": round(int(embedded) / embed_s, 1),
              "search_seconds": round(search_s, 1), "model_precision": model_p, "pixel_precision": pixel_p}
    os.makedirs(a.out, exist_ok=True)
    json.dump(result, open(os.path.join(a.out, "quality.json"), "w"), indent=1)
    md = [f"Model `{a.model}` ({dims} dims), {a.queries} test queries among 60,000 training images, exact search.",
          "", "| category | queries | precision@10 model | precision@10 raw pixels |", "|---|---:|---:|---:|"]
    for cat, v in model_p.items():
        px = f"{pixel_p[cat]['p_at_10']:.4f}" if pixel_p else "-"
        md.append(f"| {cat} | {v['queries']} | {v['p_at_10']:.4f} | {px} |")
    md.append("")
    md.append(f"Embedding {embedded} rows with embed_column took {embed_s:.0f} s ({int(embedded) / embed_s:.0f} rows/s).")
    open(os.path.join(a.out, "quality.md"), "w").write("\n".join(md) + "\n")
    print("\n".join(md))
    print(notices.strip().splitlines()[-1] if notices.strip() else "")


if __name__ == "__main__":
    main()
