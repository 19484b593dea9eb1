#!/usr/bin/env bash
# vs_hnsw against a real server, beyond pg_regress: a parallel build on PostgreSQL's workers (and
# its cancel), recall on Fashion-MNIST, concurrent writers and readers, a SIGKILL of the whole
# server during inserts followed by WAL recovery, and a streaming replica.
# Part of `make test`; prints "index_test: N passed, 0 failed".
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${VS_INDEX_TEST_DIR:-/tmp/visual_search_index_test}
bash scripts/pgcluster.sh destroy "$dir"
bash scripts/pgcluster.sh start "$dir" >/dev/null
conn=$(cat "$dir/conninfo")
passed=0
q() { psql "$conn" -X -qAt -v ON_ERROR_STOP=1 "$@"; }
check() { # name, expected, actual
  if [ "$2" = "$3" ]; then echo "index_test: ok: $1"; passed=$((passed + 1)); else echo "index_test: FAIL: $1: expected $2, got $3"; exit 1; fi
}

q -c "CREATE EXTENSION visual_search"
q -c "CREATE TABLE products (id int, name text, category text, split text, image bytea, pixels text)"
python3 scripts/fashion_mnist.py --limit 10000 | q -c "\copy products FROM STDIN"
q -c "CREATE TABLE fm AS SELECT id, pixels::embedding(784) AS v, category FROM products WHERE split = 'train'" \
  -c "CREATE TABLE fm_test AS SELECT id, pixels::embedding(784) AS v FROM products WHERE split = 'test' ORDER BY id LIMIT 100" \
  -c "CREATE TABLE fm_more AS SELECT row_number() OVER (ORDER BY id) AS n, pixels::embedding(784) AS v FROM products WHERE split = 'test'" \
  -c "DROP TABLE products" -c "ANALYZE"

# Recall@10 of fm's index at ef_search 40 against exact results, over the 100 test queries.
recall_at_10() {
  q -c "SET enable_seqscan = off" -c "
    SELECT round(avg(hits) / 10, 3) FROM (
      SELECT (SELECT count(*) FROM (SELECT id FROM fm ORDER BY v <-> t.v LIMIT 10) a
              WHERE a.id IN (SELECT id FROM fm ORDER BY (v <-> t.v) + 0 LIMIT 10)) AS hits
      FROM fm_test t) s"
}

# 1. Parallel build: PostgreSQL parallel workers share the graph's batches with the leader
#     (max_parallel_maintenance_workers), seen in pg_stat_activity while the progress view goes
#     through its phases; the index is as good and as complete as the serial one.
q -c "ALTER TABLE fm SET (parallel_workers = 2)"
watch=$(mktemp)
( while [ ! -s "$watch.stop" ]; do
    q -c "SELECT 'worker:' || count(*) FROM pg_stat_activity a JOIN pg_stat_progress_create_index p ON a.leader_pid = p.pid
            WHERE a.backend_type = 'parallel worker'" \
      -c "SELECT 'phase:' || phase || ':' || tuples_done FROM pg_stat_progress_create_index WHERE relid = 'fm'::regclass" 2>/dev/null
  done > "$watch" ) &
watcher=$!
q -c "SET max_parallel_maintenance_workers = 2" -c "SET maintenance_work_mem = '256MB'" \
  -c "CREATE INDEX fm_v_par ON fm USING vs_hnsw (v embedding_l2_ops)"
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
q -c "DROP INDEX fm_v_par"
# A cancel while the workers are at work (sent as soon as one shows in pg_stat_activity) ends the
# build with an ERROR: no crash, no worker left behind, no index.
out=$(mktemp)
q -c "SET max_parallel_maintenance_workers = 2" \
  -c "CREATE INDEX fm_v_cancel ON fm USING vs_hnsw (v embedding_l2_ops) WITH (m = 48, ef_construction = 800)" > "$out" 2>&1 &
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

# 1b. Recall@10 at ef_search 40 against exact results: 10,000 images, 100 test queries.
q -c "CREATE INDEX fm_v ON fm USING vs_hnsw (v embedding_l2_ops)"
recall=$(recall_at_10)
echo "index_test: recall@10 at ef_search 40 on 10,000 Fashion-MNIST images: $recall"
check "the approximate side used the index" 1 "$(q -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) SELECT id FROM fm ORDER BY v <-> (SELECT v FROM fm_test LIMIT 1) LIMIT 10" | grep -c "Index Scan using fm_v")"
check "recall@10 >= 0.95" t "$(q -c "SELECT $recall >= 0.95")"

# 2. Concurrent writers and readers: 4 writers insert 300 rows each (one per transaction)
#    while 2 readers search; afterwards no row is lost or doubled.
q -c "CREATE TABLE cw (id int PRIMARY KEY, v embedding(784))" \
  -c "CREATE INDEX cw_v ON cw USING vs_hnsw (v embedding_l2_ops)"
pids=()
for w in 0 1 2 3; do
  q -c "DO \$\$ BEGIN FOR i IN 0..299 LOOP
          INSERT INTO cw SELECT $w * 10000 + i, v FROM fm WHERE id = ($w * 300 + i); COMMIT; END LOOP; END \$\$" &
  pids+=($!)
done
for r in 0 1; do
  q -c "SET enable_seqscan = off" -c "DO \$\$ DECLARE n int; BEGIN FOR i IN 1..300 LOOP
          PERFORM id FROM cw ORDER BY v <-> (SELECT v FROM fm_test WHERE id = 60000 + i % 100) LIMIT 10; END LOOP; END \$\$" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
check "all concurrent inserts committed" 1200 "$(q -c "SELECT count(*) FROM cw")"
# The index holds each row exactly once (as amcheck's heapallindexed), and a search reaches
# nearly all of them (HNSW pruning may orphan a few; more than 1 % would be a bug).
same_rows() { # table index
  q -c "SELECT (SELECT count(*) FROM unnest(visual_search.vs_hnsw_heap_tids('$2')) t) = (SELECT count(*) FROM $1)
            AND NOT EXISTS (SELECT ctid::text FROM $1 EXCEPT SELECT unnest(visual_search.vs_hnsw_heap_tids('$2')))"
}
check "every row in the index exactly once" t "$(same_rows cw cw_v)"
check "searches reach all but <= 1 % of the rows" t "$(q -c "SELECT visual_search.vs_hnsw_unreachable('cw_v') <= 12")"

# 3. Crash: SIGKILL every server process while a writer inserts, restart (WAL recovery), then
#    the index must agree with a sequential scan and take new rows.
q -c "CREATE TABLE crash (id int PRIMARY KEY, v embedding(784))" \
  -c "CREATE INDEX crash_v ON crash USING vs_hnsw (v embedding_l2_ops)" -c "CHECKPOINT"
q -c "DO \$\$ BEGIN FOR i IN 0..9999 LOOP INSERT INTO crash SELECT id, v FROM fm WHERE id = i; COMMIT; END LOOP; END \$\$" >/dev/null 2>&1 &
writer=$!
sleep 4
data=$(psql "$conn" -X -qAt -c "SHOW data_directory")
pm=$(head -1 "$data/postmaster.pid")
kill -KILL "$pm" $(pgrep -P "$pm") 2>/dev/null || true
wait "$writer" || true
sleep 1
rm -f "$data/postmaster.pid"
bash scripts/pgcluster.sh start "$dir" >/dev/null
conn=$(cat "$dir/conninfo")
grep -q "database system was interrupted\|was not properly shut down" "$(dirname "$data")/server.log" && echo "index_test: the server went through crash recovery"
rows=$(q -c "SELECT count(*) FROM crash")
echo "index_test: $rows rows committed before the kill"
check "rows survived the crash" t "$(q -c "SELECT $rows > 0")"
# The insert in flight may have left an element for a row that never committed: VACUUM
# removes it, as it would any dead row.
q -c "VACUUM crash"
check "after recovery and VACUUM the index holds exactly the committed rows" t "$(same_rows crash crash_v)"
check "after recovery searches reach all but <= 1 % of the rows" t "$(q -c "SELECT visual_search.vs_hnsw_unreachable('crash_v') <= $rows / 100")"
found=$(q -c "SET enable_seqscan = off" -c "SELECT count(*) FROM crash c WHERE id % 10 = 0 AND (SELECT c2.v <-> c.v FROM crash c2 ORDER BY c2.v <-> c.v LIMIT 1) = 0")
echo "index_test: after recovery $found of $(q -c "SELECT count(*) FROM crash WHERE id % 10 = 0") sampled rows find themselves first"
q -c "INSERT INTO crash SELECT id + 100000, v FROM fm_test"
check "inserts go on after recovery" "60000" "$(q -c "SET enable_seqscan = off" -c "SELECT id - 100000 FROM crash ORDER BY v <-> (SELECT v FROM fm_test WHERE id = 60000) LIMIT 1")"

# 4. A streaming replica (pg_basebackup) replays the index's WAL: after inserts, deletes and a
#    VACUUM on the primary, the standby's index answers as the primary's.
PGBIN=$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -i PATH=/usr/bin:/bin "$@"; else env -i PATH=/usr/bin:/bin "$@"; fi; }
sdir=${dir}_standby
[ -f "$sdir/data/postmaster.pid" ] && as_owner "$PGBIN/pg_ctl" -D "$sdir/data" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$sdir"; mkdir -p "$sdir"; [ "$(id -u)" = 0 ] && chown postgres "$sdir"
read -r phost pport < <(sed -E 's/host=([^ ]+) port=([0-9]+).*/\1 \2/' "$dir/conninfo")
q -c "CREATE TABLE rep (id int PRIMARY KEY, v embedding(784))" -c "INSERT INTO rep SELECT id, v FROM fm WHERE id < 2000" \
  -c "CREATE INDEX rep_v ON rep USING vs_hnsw (v embedding_l2_ops)"
as_owner "$PGBIN/pg_basebackup" -h "$phost" -p "$pport" -U postgres -D "$sdir/data" -R -X stream -c fast
sport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_owner "$PGBIN/pg_ctl" -D "$sdir/data" -l "$sdir/server.log" -w -t 60 start -o "-p $sport -k $sdir -c listen_addresses=''" >/dev/null
standby="host=$sdir port=$sport user=postgres dbname=postgres"
q -c "INSERT INTO rep SELECT id, v FROM fm WHERE id BETWEEN 2000 AND 2999" -c "DELETE FROM rep WHERE id % 3 = 0" -c "VACUUM rep"
lsn=$(q -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 60); do
  [ "$(psql "$standby" -X -qAt -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break; sleep 1
done
answers() { psql "$1" -X -qAt -c "SET enable_seqscan = off" -c "
  SELECT string_agg(ids, ';' ORDER BY t.id) FROM fm_test t,
    LATERAL (SELECT string_agg(id::text, ',') ids FROM (SELECT id FROM rep ORDER BY v <-> t.v LIMIT 10) s) a"; }
check "the standby is in recovery" t "$(psql "$standby" -X -qAt -c "SELECT pg_is_in_recovery()")"
primary_answers=$(answers "$conn")
check "the primary answers 100 queries" 100 "$(echo "$primary_answers" | tr ';' '\n' | grep -c ,)"
check "the standby's index answers them as the primary's" "$primary_answers" "$(answers "$standby")"
check "the standby's index holds exactly the primary's rows" t "$(psql "$standby" -X -qAt -c "
  SELECT (SELECT count(*) FROM unnest(visual_search.vs_hnsw_heap_tids('rep_v'))) = (SELECT count(*) FROM rep)")"
as_owner "$PGBIN/pg_ctl" -D "$sdir/data" -m fast -w stop >/dev/null
rm -rf "$sdir"

# 5. Duplicates (one product's photo in several listings): fm plus 1,000 copies of one bag's
#    pixels. Through the index a query with that vector returns LIMIT rows, the copies first, and a
#    filtered query gets past the copies to the exact answer; no copy is cut off from the graph.
#    (Ties ordered by id and copies shadowing every other candidate in the selection heuristic gave
#    34 of 100 rows, 0 of 10 filtered and 2,031 unreachable with 2,000 copies among 20,000.)
t0=$(date +%s)
q -c "CREATE TABLE dup AS SELECT id, v, category FROM fm" \
  -c "INSERT INTO dup SELECT 200000 + g, (SELECT v FROM fm WHERE category = 'Bag' ORDER BY id LIMIT 1), 'Bag' FROM generate_series(1, 1000) g" \
  -c "CREATE INDEX dup_v ON dup USING vs_hnsw (v embedding_l2_ops)" -c "ANALYZE dup"
copy="(SELECT v FROM fm WHERE category = 'Bag' ORDER BY id LIMIT 1)"
check "duplicates: LIMIT 100 through the index returns 100 copies" 100 \
  "$(q -c "SET enable_seqscan = off" -c "SELECT count(*) FILTER (WHERE d = 0) FROM (SELECT v <-> $copy AS d FROM dup ORDER BY v <-> $copy LIMIT 100) s")"
check "duplicates: the filtered query used the index" 1 \
  "$(q -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) SELECT id FROM dup WHERE category = 'Sneaker' ORDER BY v <-> $copy LIMIT 10" | grep -c "Index Scan using dup_v")"
check "duplicates: WHERE category = 'Sneaker' LIMIT 10 past 1,001 copies gives the exact answer" \
  "$(q -c "SET enable_seqscan = off" -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM (SELECT id FROM dup WHERE category = 'Sneaker' ORDER BY (v <-> $copy) + 0 LIMIT 10) s")" \
  "$(q -c "SET enable_seqscan = off" -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM (SELECT id FROM dup WHERE category = 'Sneaker' ORDER BY v <-> $copy LIMIT 10) s")"
fresh_lost=$(q -c "SELECT visual_search.vs_hnsw_unreachable('fm_v')")
dup_lost=$(q -c "SELECT visual_search.vs_hnsw_unreachable('dup_v')")
echo "index_test: unreachable: $dup_lost of 11,000 with 1,000 copies, $fresh_lost of 10,000 without"
check "duplicates: unreachable within 2x the index without copies" t "$(q -c "SELECT $dup_lost <= 2 * greatest($fresh_lost, 1)")"
check "duplicates: recall@10 of the 100 test queries unchanged" t "$(q -c "SET enable_seqscan = off" -c "
  SELECT avg(hits) / 10 >= 0.95 FROM (SELECT (SELECT count(*) FROM (SELECT id FROM dup ORDER BY v <-> t.v LIMIT 10) a
    WHERE a.id IN (SELECT id FROM dup ORDER BY (v <-> t.v) + 0 LIMIT 10)) AS hits FROM fm_test t) s")"
# 1,000 identical 16-d vectors, indexed after they were loaded and inserted into an index.
q -c "CREATE TABLE same (id int, v embedding(16))" -c "CREATE TABLE same_ins (id int, v embedding(16))" \
  -c "INSERT INTO same SELECT g, array_fill(0.5, ARRAY[16])::real[]::embedding(16) FROM generate_series(1, 1000) g" \
  -c "CREATE INDEX same_v ON same USING vs_hnsw (v embedding_l2_ops)" \
  -c "CREATE INDEX same_ins_v ON same_ins USING vs_hnsw (v embedding_l2_ops)" -c "INSERT INTO same_ins SELECT * FROM same"
for t in same same_ins; do
  check "1,000 identical vectors ($t): LIMIT 100 returns 100, none unreachable" "100|0" "$(q -c "SET enable_seqscan = off" -c "
    SELECT (SELECT count(*) FROM (SELECT id FROM $t ORDER BY v <-> (SELECT v FROM same LIMIT 1) LIMIT 100) s) || '|' || visual_search.vs_hnsw_unreachable('${t}_v')")"
done
echo "index_test: the duplicate tests took $(($(date +%s) - t0)) s"

# 6. Churn: 15 rounds of DELETE 600 random rows, VACUUM, INSERT 600 new ones on a 10,000-row
#    index, one round after another and then by 3 sessions at once (5 rounds each, on their own
#    rows, so VACUUM repairs while the others insert). VACUUM's repair keeps the graph as
#    connected as a fresh build of the final rows, and a never-deleted row's own vector finds it
#    as often. (Plain nearest truncation of the refilled lists left 696 of 10,000 unreachable,
#    21 after a fresh build, and missed 63 of 600 rows against 12; refilling from the lost
#    neighbours' neighbours alone, 17 against 25 and 14 against 9; with a search for each
#    repaired element, 9 against 22 and 26 of about 4,000 against 20.)
t0=$(date +%s)
# Misses of the never-deleted rows' own vectors (about 4,000) among the 10 nearest found.
misses() {
  q -c "SET enable_seqscan = off" -c "SELECT count(*) FROM $1 c WHERE c.id < 100000
    AND c.id NOT IN (SELECT id FROM $1 ORDER BY v <-> c.v LIMIT 10)"
}
vacuum_s=$(mktemp)
round() { # table, round, session, sessions (a session deletes only rows of its own id % sessions)
  q -c "SELECT setseed(0.$2$3)" -c "DELETE FROM $1 WHERE id IN (SELECT id FROM $1 WHERE id % $4 = $3 ORDER BY random() LIMIT 600)" >/dev/null
  q -c "SELECT extract(epoch FROM clock_timestamp())" -c "VACUUM $1" -c "SELECT extract(epoch FROM clock_timestamp())" | paste -sd' ' >> "$vacuum_s"
  q -c "INSERT INTO $1 SELECT 100000 + n, v FROM fm_more WHERE n > ($2 - 1) * 600 AND n <= $2 * 600" >/dev/null
}
compare_fresh() { # table, what
  q -c "CREATE TABLE $1_fresh AS SELECT * FROM $1" -c "CREATE INDEX $1_fresh_v ON $1_fresh USING vs_hnsw (v embedding_l2_ops)"
  local lost fresh_lost miss fresh_miss
  lost=$(q -c "SELECT visual_search.vs_hnsw_unreachable('$1_v')")
  fresh_lost=$(q -c "SELECT visual_search.vs_hnsw_unreachable('$1_fresh_v')")
  miss=$(misses "$1")
  fresh_miss=$(misses "$1_fresh")
  echo "index_test: after $2: $lost of $(q -c "SELECT count(*) FROM $1") unreachable, $miss own-vector misses; a fresh build: $fresh_lost, $fresh_miss"
  check "$2: unreachable within 2x a fresh build's" t "$(q -c "SELECT $lost <= 2 * greatest($fresh_lost, 1)")"
  # Both counts are samples: fresh builds of the same rows in three orders missed 20, 1 and 28
  # (the rows inserted first are missed most; here they are the never-deleted ones), the churned
  # index 26. More than 3 standard deviations of a count above a fresh build's is a difference.
  check "$2: own-vector lookups miss no more than after a fresh build" t "$(q -c "SELECT $miss <= $fresh_miss + 3 * sqrt(greatest($fresh_miss, 1))")"
  echo "index_test: $2: VACUUM took $(awk '{ s += $2 - $1 } END { printf "%.1f", s }' "$vacuum_s") s in all"
  : > "$vacuum_s"
}
q -c "CREATE TABLE churn AS SELECT id, v FROM fm" -c "CREATE INDEX churn_v ON churn USING vs_hnsw (v embedding_l2_ops)"
for r in $(seq 15); do round churn "$r" 0 1; done
check "churn: every row in the index exactly once" t "$(same_rows churn churn_v)"
compare_fresh churn "15 churn rounds"
echo "index_test: the serial churn test took $(($(date +%s) - t0)) s"
t0=$(date +%s)
q -c "CREATE TABLE cchurn AS SELECT id, v FROM fm" -c "CREATE INDEX cchurn_v ON cchurn USING vs_hnsw (v embedding_l2_ops)"
pids=()
for s in 0 1 2; do
  ( for r in $(seq "$((s * 5 + 1))" "$((s * 5 + 5))"); do round cchurn "$r" "$s" 3; done ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
check "concurrent churn: every row in the index exactly once" t "$(same_rows cchurn cchurn_v)"
compare_fresh cchurn "15 concurrent churn rounds"
echo "index_test: the concurrent churn test took $(($(date +%s) - t0)) s"

bash scripts/pgcluster.sh destroy "$dir"
echo "index_test: $passed passed, 0 failed"
