#!/usr/bin/env bash
# With pgvector 0.8.6 built from source (bench/pgvector.sh; PGVECTOR_SRC, by default the mirror
# `fetch` brings) and installed into the same server: records pgvector's answers to its own
# regression statements into test/parity/pgvector-0.8.6.json (which `make parity-test` compares
# with), then moves a table from pgvector to visual_search (test/parity/beside_pgvector.py).
# Not in `make test`: CI has no pgvector source.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
src=${PGVECTOR_SRC:-/work/.mirror/pgvector+pgvector/repo}
. bench/pgvector.sh
PGVECTOR_REV=v0.8.6 pgvector_install
dir=${VS_PARITY_TEST_DIR:-/tmp/visual_search_parity_pgvector}
bash scripts/pgcluster.sh destroy "$dir"
bash scripts/pgcluster.sh start "$dir" >/dev/null
sql=$(mktemp -d)
trap 'bash scripts/pgcluster.sh destroy "$dir"; rm -rf "$sql"' EXIT
for suite in vector_type halfvec cast btree copy hnsw_vector hnsw_halfvec; do
  git -C "$src" show "v0.8.6:test/sql/$suite.sql" > "$sql/$suite.sql"
done
/usr/bin/python3 test/parity/parity.py record "$(cat "$dir/conninfo")" "$sql" test/parity/pgvector-0.8.6.json
/usr/bin/python3 test/parity/beside_pgvector.py "$(cat "$dir/conninfo")"
