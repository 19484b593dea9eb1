#!/usr/bin/env bash
# Auto-embedding in the background on a real server (async_embed_test.py): a private cluster with
# the test models, real Fashion-MNIST photos, the real embedding service; the test kills and
# restarts the server itself, and preloads the library for its last part. Part of `make test`.
# PG_CONFIG chooses the PostgreSQL installation, VS_ASYNC_TEST_DIR the cluster's folder.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${VS_ASYNC_TEST_DIR:-/tmp/visual_search_async_test}
bash scripts/pgcluster.sh destroy "$dir"
bash scripts/pgcluster.sh start "$dir" >/dev/null
# The server's log stays in $dir.server.log.
trap 'cp "$dir/server.log" "$dir.server.log" 2>/dev/null; bash scripts/pgcluster.sh destroy "$dir"; rm -rf "${dir}_assets"' EXIT
# The test models where the server (user postgres) can read them.
assets=${dir}_assets
rm -rf "$assets"; mkdir -p "$assets"; cp -r pg_test/data/models "$assets/"; chmod -R a+rX "$assets"
# The drainer reads the server's settings, not a session's.
psql "$(cat "$dir/conninfo")" -X -q -c "SET client_min_messages = warning" -c "CREATE EXTENSION visual_search" \
  -c "ALTER SYSTEM SET visual_search.model_dir = '$assets/models'" \
  -c "ALTER SYSTEM SET visual_search.default_model = 'tiny-vgg16'" -c "SELECT pg_reload_conf()" >/dev/null
/usr/bin/python3 scripts/async_embed_test.py "$dir"
