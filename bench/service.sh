#!/usr/bin/env bash
# Issue #15's point 6 in figures: image_embed through the embedding service against in-backend
# embedding (visual_search.embed_in = backend), 1, 4 and 16 connections, two models; throughput,
# latency and the memory of the whole server (bench/service.py; JSON and markdown into
# bench/results/). About 7 minutes; `bash bench/service.sh --quick` for a short run (into
# bench/results/tmp). Arguments go to service.py.
# Against the installed visual_search of PG_CONFIG's server, in a fresh cluster in VS_BENCH_DIR
# (.bench/service). The models go where the server (user postgres) can read them: vgg16-random
# (full-width VGG16, seeded random weights, 224x224, made by the train command without a step)
# and a copy of the installed fashion-vgg16.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
dir=${VS_BENCH_DIR:-.bench/service}
assets=${VS_BENCH_ASSETS:-/tmp/visual_search_bench_service}
rm -rf "$assets"
mkdir -p "$assets/train/sneaker" "$assets/train/chelsea" "$assets/models"
cp pg_test/data/images/sneaker*.png "$assets/train/sneaker/"
cp pg_test/data/images/chelsea*.png "$assets/train/chelsea/"
if ! cargo run --release --quiet -p vs_train --bin train -- --folder "$assets/train" --width 1 --size 224 --epochs 1 \
    --max-steps 0 --no-augment --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --out "$assets/models" \
    --name vgg16-random --quiet >"$assets/train.log" 2>&1; then
  cat "$assets/train.log" >&2; exit 1
fi
cp -r "$("$PG_CONFIG" --sharedir)/visual_search/models/fashion-vgg16" "$assets/models/"
chmod -R a+rX "$assets"
bash scripts/pgcluster.sh destroy "$dir"
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh stop "$dir"' EXIT
psql "$(cat "$dir/conninfo")" -X -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
  -c "CREATE EXTENSION IF NOT EXISTS visual_search" \
  -c "ALTER SYSTEM SET visual_search.model_dir = '$assets/models'" -c "SELECT pg_reload_conf()" >/dev/null
# Debian's python3 (psycopg2 from setup.sh's python3-psycopg2); as root, so that it can read the
# server's /proc/<pid>/smaps_rollup.
/usr/bin/python3 bench/service.py "$dir" "$@"
