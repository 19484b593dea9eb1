#!/usr/bin/env bash
# image_embed on hostile input against a real server: memory, crashes, cancels (limits_test.py).
# Part of `make test`; prints "limits_test: N passed, 0 failed".
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${VS_LIMITS_TEST_DIR:-/tmp/visual_search_limits_test}
bash scripts/pgcluster.sh destroy "$dir"
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh destroy "$dir"' EXIT
bombs=${dir}_bombs
rm -rf "$bombs"
python3 scripts/make_bombs.py "$bombs" pg_test/data/images
cp pg_test/data/images/sneaker.png "$bombs/"
chmod -R a+rX "$bombs"
# Debian's python3 (psycopg2 comes from setup.sh's python3-psycopg2), whatever python3 is first on PATH.
/usr/bin/python3 scripts/limits_test.py "$(cat "$dir/conninfo")" "$bombs"
rm -rf "$bombs"
