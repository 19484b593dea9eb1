#!/usr/bin/env bash
# vs_hnsw on fashion-mnist-784 with the team's harness (../shared/bench/ann_bench.py), in the
# settings pgvector's baseline was measured with (../shared/reference/pgvector-baseline.md).
#   bash bench/ann.sh [search|insert|all|quantized]    → bench/results/ann-*.json, and a table on stdout
# (quantized: the same search on WITH (quantize = on), RaBitQ codes reranked from the table)
# The cluster lives in /tmp/vs_ann (kept between runs; `scripts/pgcluster.sh destroy /tmp/vs_ann`).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
shared=$(cd .. && pwd)/shared/bench
data=/tmp/vs_ann/data-npy
out=bench/results
mkdir -p "$out"
python3 -c 'import psycopg, numpy' 2>/dev/null || pip install --quiet 'psycopg[binary]' numpy
[ -f "$data/gt_ids.npy" ] || python3 "$shared/prep_fashion_mnist.py" --out "$data"
bash scripts/pgcluster.sh start /tmp/vs_ann >/dev/null
conn=$(cat /tmp/vs_ann/conninfo)
psql -qAt "$conn" -c "SELECT 1 FROM pg_database WHERE datname = 'ann'" | grep -q 1 || psql -q "$conn" -c "CREATE DATABASE ann"
if [ "$(psql -qAt "$conn" -c 'SHOW shared_buffers')" != 4GB ]; then
  for s in "shared_buffers='4GB'" "maintenance_work_mem='2GB'" "work_mem='64MB'" "effective_cache_size='12GB'" \
           "max_parallel_maintenance_workers=1" "max_parallel_workers_per_gather=0" "jit=off" \
           "max_wal_size='8GB'" "checkpoint_timeout='30min'" "random_page_cost=1.1"; do
    psql -q "$conn" -c "ALTER SYSTEM SET $s"
  done
  bash scripts/pgcluster.sh stop /tmp/vs_ann; bash scripts/pgcluster.sh start /tmp/vs_ann >/dev/null
  conn=$(cat /tmp/vs_ann/conninfo)
fi
dsn="${conn/dbname=postgres/dbname=ann}"
common=(--dsn "$dsn" --extension-sql "CREATE EXTENSION IF NOT EXISTS visual_search" --extname visual_search
        --vector-type embedding --train "$data/train.npy" --test "$data/test.npy"
        --gt-ids "$data/gt_ids.npy" --gt-dist "$data/gt_dist.npy"
        --index-sql "CREATE INDEX ON {table} USING vs_hnsw ({column} embedding_l2_ops) WITH (m = 16, ef_construction = 64)")
if [ "$what" = search ] || [ "$what" = all ]; then
  for workers in 0 1; do
    python3 "$shared/ann_bench.py" search "${common[@]}" --label "vs_hnsw-w$workers" --require-index \
      --pre-index-sql "SET max_parallel_maintenance_workers = $workers" \
      --set-sql "SET vs_hnsw.ef_search = {value}" --values 10,20,30,40,80,160,320 \
      --reuse-table --json "$out/ann-search-w$workers.json"
  done
fi
if [ "$what" = insert ] || [ "$what" = all ]; then
  python3 "$shared/ann_bench.py" insert "${common[@]}" --label vs_hnsw-insert \
    --verify-set-sql "SET vs_hnsw.ef_search = 40" --json "$out/ann-insert.json"
fi
if [ "$what" = quantized ]; then
  q=("${common[@]}")
  q[${#q[@]}-1]="CREATE INDEX ON {table} USING vs_hnsw ({column} embedding_l2_ops) WITH (m = 16, ef_construction = 64, quantize = on)"
  python3 "$shared/ann_bench.py" search "${q[@]}" --label vs_hnsw-quantized --require-index \
    --set-sql "SET vs_hnsw.ef_search = {value}" --values 10,20,30,40,80,160,320 \
    --reuse-table --json "$out/ann-search-quantized.json"
  exit
fi
python3 bench/ann_report.py
