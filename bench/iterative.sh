#!/usr/bin/env bash
# Filtered queries under pgvector's three iterative-scan modes, vs_hnsw beside pgvector 0.8.6 (built
# from source as in bench/connect.sh) in one scratch cluster (bench/iterative.py; JSON and markdown
# into bench/results/).   bash bench/iterative.sh [--rows N --queries Q]
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
dir=${VS_BENCH_DIR:-.bench/iterative}
. bench/pgvector.sh
pgvector_install
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh destroy "$dir"' EXIT
/usr/bin/python3 bench/iterative.py "$(cat "$dir/conninfo")" bench/results "$@"
