#!/usr/bin/env bash
# Issue #18's point 3 in figures (bench/quantized_25k.py; JSON and markdown into bench/results/):
# vs_hnsw WITH (quantize = on) over Fashion-MNIST projected to 25,088 dimensions, beside the exact
# scan of the same table, and pgvector's errors on the same data (built from source as in
# bench/connect.sh). 11 GB of cluster (table, WAL, index) in VS_BENCH_DIR (.bench/quantized_25k),
# kept for reruns of the same size; `bash scripts/pgcluster.sh destroy .bench/quantized_25k` frees it.
#   bash bench/quantized_25k.sh [--rows N --queries Q]   (smaller runs go to bench/results/tmp/)
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
dir=${VS_BENCH_DIR:-.bench/quantized_25k}
. bench/pgvector.sh
pgvector_install
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh stop "$dir"' EXIT
/usr/bin/python3 bench/quantized_25k.py "$(cat "$dir/conninfo")" bench/results "$@"
