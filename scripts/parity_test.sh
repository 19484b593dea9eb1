#!/usr/bin/env bash
# pgvector parity (test/parity/parity.py): pgvector 0.8.6's own regression statements, translated,
# against the installed visual_search, compared with pgvector's recorded answers. Part of
# `make test`; prints "parity: N of M statements agree" and fails below 98 % or on a difference
# the README does not list as deliberate.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${VS_PARITY_TEST_DIR:-/tmp/visual_search_parity_test}
bash scripts/pgcluster.sh destroy "$dir"
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh destroy "$dir"' EXIT
/usr/bin/python3 test/parity/parity.py check "$(cat "$dir/conninfo")" test/parity/pgvector-0.8.6.json README.md
