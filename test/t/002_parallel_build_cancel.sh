#!/usr/bin/env bash
# A cancel while the workers are at work (sent as soon as one shows in pg_stat_activity) ends the
# build with an ERROR: no crash, no worker left behind, no index.
. "$(dirname "$0")/lib.sh"
q -c "ALTER TABLE fm SET (parallel_workers = 2)"
out=$(mktemp)
q -c "SET max_parallel_maintenance_workers = 2" \
  -c "CREATE INDEX fm_v_cancel ON fm USING vs_hnsw (v embedding_l2_ops) $(index_with "m = 48, ef_construction = 800")" > "$out" 2>&1 &
builder=$!
for _ in $(seq 300); do
  [ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'")" -ge 1 ] && break
  sleep 0.1
done
q -c "SELECT pg_cancel_backend(leader_pid) FROM pg_stat_activity WHERE backend_type = 'parallel worker' LIMIT 1" >/dev/null
wait "$builder" || true
check "a cancelled parallel build fails with an ERROR" 1 "$(grep -c 'canceling statement due to user request' "$out")"
rm -f "$out"
sleep 1
check "after the cancel: no parallel worker left, no index, the server up" "0|none" \
  "$(q -c "SELECT count(*) || '|' || coalesce(to_regclass('fm_v_cancel')::text, 'none') FROM pg_stat_activity WHERE backend_type = 'parallel worker'")"
q -c "ALTER TABLE fm RESET (parallel_workers)"
