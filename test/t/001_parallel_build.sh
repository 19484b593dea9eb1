#!/usr/bin/env bash
# Parallel build: PostgreSQL parallel workers share the graph's batches with the leader
# (max_parallel_maintenance_workers), seen in pg_stat_activity while the progress view goes
# through its phases; the index is as good and as complete as the serial one.
. "$(dirname "$0")/lib.sh"
q -c "ALTER TABLE fm SET (parallel_workers = 2)"
watch=$(mktemp)
( while [ ! -s "$watch.stop" ]; do
    q -c "SELECT 'worker:' || count(*) FROM pg_stat_activity a JOIN pg_stat_progress_create_index p ON a.leader_pid = p.pid
            WHERE a.backend_type = 'parallel worker'" \
      -c "SELECT 'phase:' || phase || ':' || tuples_done FROM pg_stat_progress_create_index WHERE relid = 'fm'::regclass" 2>/dev/null
  done > "$watch" ) &
watcher=$!
q -c "SET max_parallel_maintenance_workers = 2" -c "SET maintenance_work_mem = '256MB'" \
  -c "CREATE INDEX fm_v_par ON fm USING vs_hnsw (v embedding_l2_ops) $(index_with)"
echo done > "$watch.stop"; wait "$watcher"
workers=$(grep -o 'worker:[0-9]*' "$watch" | cut -d: -f2 | sort -n | tail -1)
echo "index_test: during the parallel build: up to ${workers:-0} parallel workers; phases seen: $(grep '^phase:' "$watch" | sed 's/^phase://; s/:[0-9]*$//' | sort -u | paste -sd';' -)"
check "the parallel build ran on PostgreSQL parallel workers" t "$([ "${workers:-0}" -ge 1 ] && echo t || echo f)"
check "pg_stat_progress_create_index showed the graph being loaded, with tuple counts" t \
  "$(grep -q 'phase:building index: loading tuples into the graph:[1-9]' "$watch" && echo t || echo f)"
rm -f "$watch" "$watch.stop"
par_recall=$(recall_at_10)
echo "index_test: recall@10 at ef_search 40 of the parallel build: $par_recall"
check "parallel build: recall@10 >= 0.95" t "$(q -c "SELECT $par_recall >= 0.95")"
check "parallel build: every row in the index exactly once" t "$(q -c "SELECT (SELECT count(*) FROM unnest(visual_search.vs_hnsw_heap_tids('fm_v_par'))) = (SELECT count(*) FROM fm)")"
q -c "DROP INDEX fm_v_par" -c "ALTER TABLE fm RESET (parallel_workers)"
