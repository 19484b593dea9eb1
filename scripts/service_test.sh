#!/usr/bin/env bash
# The embedding service on a real server (service_test.py), first started on first use, then
# with the library preloaded; it must stop with the server. Part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${VS_SERVICE_TEST_DIR:-/tmp/visual_search_service_test}
bash scripts/pgcluster.sh destroy "$dir"
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh destroy "$dir"' EXIT
# The test models and images where the server (user postgres) can read them.
assets=${dir}_assets
rm -rf "$assets"; mkdir -p "$assets"; cp -r pg_test/data/models pg_test/data/images "$assets/"; chmod -R a+rX "$assets"
conninfo=$(cat "$dir/conninfo")
psql "$conninfo" -X -q -c "SET client_min_messages = warning" -c "CREATE EXTENSION visual_search" \
  -c "ALTER SYSTEM SET visual_search.model_dir = '$assets/models'" -c "SELECT pg_reload_conf()" >/dev/null
/usr/bin/python3 scripts/service_test.py "$conninfo" "$assets/images" | tee "$dir.log1"
psql "$conninfo" -X -q -c "ALTER SYSTEM SET shared_preload_libraries = 'visual_search'" >/dev/null
bash scripts/pgcluster.sh stop "$dir"
bash scripts/pgcluster.sh start "$dir" >/dev/null
conninfo=$(cat "$dir/conninfo")
/usr/bin/python3 scripts/service_test.py "$conninfo" "$assets/images" --preloaded | tee "$dir.log2"
pid=$(sed -n 's/^service_test: service pid //p' "$dir.log2")
bash scripts/pgcluster.sh stop "$dir"
if kill -0 "$pid" 2>/dev/null; then echo "service_test: FAIL: the service (pid $pid) outlived the server" >&2; exit 1; fi
echo "service_test: ok: the service stopped with the server"
rm -rf "$assets" "$dir.log1" "$dir.log2"
