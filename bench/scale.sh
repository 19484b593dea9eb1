#!/usr/bin/env bash
# make bench-scale: the million-product catalogue and how every cost grows with it, vs_hnsw beside
# pgvector 0.8.6 (built from source as in bench/connect.sh) in one scratch cluster.
#   VS_SCALE_SIZES=100000,300000,1000000 (the default) bash bench/scale.sh
# The cluster (.bench/scale-db) and the catalogue's vectors and truths (.bench/scale/) stay for the
# next run: making and embedding a million photos is most of a first run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
sizes=${VS_SCALE_SIZES:-100000,300000,1000000}
dir=${VS_BENCH_DIR:-.bench/scale-db}
. bench/pgvector.sh
pgvector_install
# The report's plot; Debian's package, from the registry this project installs from.
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq python3-matplotlib >/dev/null; else sudo apt-get install -y -qq python3-matplotlib >/dev/null; fi
fi
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh stop "$dir"' EXIT
conninfo=$(cat "$dir/conninfo")
largest=$(tr , '\n' <<< "$sizes" | sort -n | tail -1)
started=$(date +%s)
# 10,000 rows beyond the largest size are what the insert figure inserts.
/usr/bin/python3 bench/catalogue.py "$conninfo" --rows $((largest + 10000)) --sizes "$sizes"
/usr/bin/python3 bench/scale.py "$conninfo" bench/results --sizes "$sizes"
/usr/bin/python3 bench/scale_report.py bench/results/scale.json
echo "bench-scale: $(( ($(date +%s) - started) / 60 )) minutes"
