#!/usr/bin/env bash
# Runs the pg_regress cases in pg_test/ against the installed extension in a private cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.regress
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh stop "$dir"' EXIT
read -r host port < <(sed -E 's/host=([^ ]+) port=([0-9]+).*/\1 \2/' "$dir/conninfo")
PGXS=$(dirname "$(/usr/lib/postgresql/15/bin/pg_config --pgxs)")
schedule=pg_test/schedule
mkdir -p "$dir/out"
"$PGXS/../test/regress/pg_regress" --inputdir=pg_test --outputdir="$dir/out" \
  --bindir=/usr/lib/postgresql/15/bin --host="$host" --port="$port" --user=postgres \
  --dbname=vs_regress --schedule="$schedule" || { cat "$dir/out/regression.diffs" 2>/dev/null | head -200; exit 1; }
