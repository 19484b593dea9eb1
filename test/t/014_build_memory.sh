#!/usr/bin/env bash
# A build's memory does not grow with the rows it inserts on disk: 6,000 rows of 2,000 random
# floats (8 KB each, stored out of line) through each build path that inserts row by row (codes,
# serial and on the workers; a plain graph that does not fit in maintenance_work_mem). The
# building backend's private memory (RssAnon, sampled every 50 ms) may grow by at most 24 MB;
# keeping each row's detoasted copy to the end took 48 MB more.
. "$(dirname "$0")/lib.sh"
q -c "CREATE TABLE bm (id int, v embedding(2000)) WITH (parallel_workers = 1)" \
  -c "INSERT INTO bm SELECT i, (SELECT array_agg(random()::real) FROM generate_series(1, 2000 + i * 0))::embedding FROM generate_series(1, 6000) i" \
  -c "ANALYZE bm"
check "the vectors are stored out of line" t "$(q -c "SELECT pg_relation_size(reltoastrelid) > 6000 * 8000 FROM pg_class WHERE relname = 'bm'")"

# The growth of the private memory of the backend that runs $1 (SQL), in MB.
growth() {
  local out pid="" first="" peak=0 kb
  out=$(mktemp)
  q -c "SET maintenance_work_mem = '1MB'" -c "SET max_parallel_maintenance_workers = ${2:-0}" -c "$1" > "$out" 2>&1 &
  local runner=$!
  while kill -0 "$runner" 2>/dev/null; do
    [ -n "${pid:-}" ] || pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE query = '$1'" 2>/dev/null || true)
    if [ -n "$pid" ] && kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null) && [ -n "$kb" ]; then
      first=${first:-$kb}
      [ "$kb" -le "$peak" ] || peak=$kb
    fi
    sleep 0.05
  done
  wait "$runner" || { cat "$out" >&2; rm -f "$out"; return 1; }
  rm -f "$out"
  echo $(((peak - ${first:-0}) / 1024))
}

for build in "quantize = on|0|codes, serial" "quantize = on|1|codes, one worker" "m = 16|0|plain graph beyond maintenance_work_mem"; do
  IFS='|' read -r opts workers name <<< "$build"
  mb=$(growth "CREATE INDEX bm_v ON bm USING vs_hnsw (v embedding_l2_ops) WITH ($opts)" "$workers")
  echo "index_test: $name: the building backend grew by $mb MB"
  check "$name: memory grows by at most 24 MB over 6,000 rows of 8 KB" t "$([ "$mb" -le 24 ] && echo t || echo f)"
  check "$name: every row in the index once" 6000 "$(q -c "SELECT count(DISTINCT t) FROM unnest(visual_search.vs_hnsw_heap_tids('bm_v')) t")"
  q -c "DROP INDEX bm_v"
done
q -c "DROP TABLE bm"
