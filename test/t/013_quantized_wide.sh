#!/usr/bin/env bash
# A quantized index past 32,768 dimensions, where an element's code is split over the element
# and its lists tuple (flag SPLIT): a streaming replica replays both parts and answers as the
# primary after inserts, deletes and VACUUM; a SIGKILL of the server while a writer inserts
# recovers to an index that holds exactly the committed rows and finds them.
. "$(dirname "$0")/lib.sh"
# 65,535-d vectors: a row's 784 pixels 83 times over, cut to length (256 KB a row, stored
# uncompressed: pglz finds no repeat in its first kilobyte and gives up).
q -c "CREATE TABLE wide_src AS SELECT id, v::real[] AS p FROM fm WHERE id < 1500 UNION ALL SELECT id, v::real[] FROM fm_test WHERE id < 60020" \
  -c "CREATE TABLE wide (id int PRIMARY KEY, v embedding(65535))" -c "ALTER TABLE wide ALTER v SET STORAGE EXTERNAL" \
  -c "CREATE TABLE wide_queries (id int, v embedding(65535))"
widen="(SELECT array_agg(s.p[1 + (i - 1) % 784] ORDER BY i) FROM generate_series(1, 65535) i)::embedding(65535)"
q -c "INSERT INTO wide_queries SELECT id, $widen FROM wide_src s WHERE id >= 60000" \
  -c "INSERT INTO wide SELECT id, $widen FROM wide_src s WHERE id < 300" \
  -c "CREATE INDEX wide_v ON wide USING vs_hnsw (v embedding_l2_ops) WITH (quantize = on)"
check "each element takes a page of its own (its code is split)" t "$(q -c "SELECT pg_relation_size('wide_v') > 300 * 8192")"

standby_start
q -c "INSERT INTO wide SELECT id, $widen FROM wide_src s WHERE id >= 300 AND id < 450" \
  -c "DELETE FROM wide WHERE id % 3 = 0" -c "VACUUM wide"
standby_catch_up
standby_agrees wide wide_v wide_queries 20
standby_drop

q -c "CHECKPOINT"
before=$(q -c "SELECT count(*) FROM wide")
crash_during "DO \$\$ BEGIN FOR k IN 450..1499 LOOP
  INSERT INTO wide SELECT id, (SELECT array_agg(s.p[1 + (i - 1) % 784] ORDER BY i) FROM generate_series(1, 65535) i)::embedding(65535)
  FROM wide_src s WHERE id = k; COMMIT; END LOOP; END \$\$" 6
rows=$(q -c "SELECT count(*) FROM wide")
echo "index_test: $((rows - before)) 65,535-d rows committed before the kill"
check "rows went in before the kill" t "$(q -c "SELECT $rows > $before")"
q -c "VACUUM wide"
check "after recovery and VACUUM the index holds exactly the committed rows" t "$(same_rows wide wide_v)"
check "after recovery every sampled row finds itself first" 0 "$(q -c "SET enable_seqscan = off" -c "
  SELECT count(*) FROM wide c WHERE id % 7 = 0 AND (SELECT w.id FROM wide w ORDER BY w.v <-> c.v LIMIT 1) <> c.id")"
q -c "DROP TABLE wide, wide_src, wide_queries"
