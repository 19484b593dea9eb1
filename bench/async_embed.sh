#!/usr/bin/env bash
# Issue #16's point 4 in figures (bench/async_embed.py; JSON and markdown into bench/results/):
# COPY of 10,000 Fashion-MNIST photos without a trigger, with the synchronous and with the
# asynchronous auto-embedding, the queue's drain rate beside embed_column's on the same model
# (the shipped fashion-vgg16 unless MODEL is set), and the lag under 200 rows/s for 60 s.
# Against the installed visual_search of PG_CONFIG's server, in a cluster in VS_BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
dir=${VS_BENCH_DIR:-.bench/async_embed}
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh stop "$dir"' EXIT
psql "$(cat "$dir/conninfo")" -X -q -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS visual_search" \
  -c "ALTER SYSTEM SET visual_search.default_model = '${MODEL:-fashion-vgg16}'" -c "SELECT pg_reload_conf()" >/dev/null
/usr/bin/python3 bench/async_embed.py "$(cat "$dir/conninfo")" "${ROWS:-10000}" bench/results
