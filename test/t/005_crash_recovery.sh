#!/usr/bin/env bash
# Crash: SIGKILL every server process while a writer inserts, restart (WAL recovery), then
# the index must agree with a sequential scan and take new rows.
. "$(dirname "$0")/lib.sh"
q -c "CREATE TABLE crash (id int PRIMARY KEY, v embedding(784))" \
  -c "CREATE INDEX crash_v ON crash USING vs_hnsw (v embedding_l2_ops) $(index_with)" -c "CHECKPOINT"
crash_during "DO \$\$ BEGIN FOR i IN 0..9999 LOOP INSERT INTO crash SELECT id, v FROM fm WHERE id = i; COMMIT; END LOOP; END \$\$" 4
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
q -c "DROP TABLE crash"
