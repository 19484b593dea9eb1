#!/usr/bin/env bash
# Concurrent writers and readers: 4 writers insert 300 rows each (one per transaction)
# while 2 readers search; afterwards no row is lost or doubled.
. "$(dirname "$0")/lib.sh"
q -c "CREATE TABLE cw (id int PRIMARY KEY, v embedding(784))" \
  -c "CREATE INDEX cw_v ON cw USING vs_hnsw (v embedding_l2_ops) $(index_with)"
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
check "every row in the index exactly once" t "$(same_rows cw cw_v)"
check "searches reach all but <= 1 % of the rows" t "$(q -c "SELECT visual_search.vs_hnsw_unreachable('cw_v') <= 12")"
q -c "DROP TABLE cw"
