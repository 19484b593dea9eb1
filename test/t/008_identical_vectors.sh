#!/usr/bin/env bash
# 1,000 identical 16-d vectors, indexed after they were loaded and inserted into an index.
. "$(dirname "$0")/lib.sh"
q -c "CREATE TABLE same (id int, v embedding(16))" -c "CREATE TABLE same_ins (id int, v embedding(16))" \
  -c "INSERT INTO same SELECT g, array_fill(0.5, ARRAY[16])::real[]::embedding(16) FROM generate_series(1, 1000) g" \
  -c "CREATE INDEX same_v ON same USING vs_hnsw (v embedding_l2_ops)" \
  -c "CREATE INDEX same_ins_v ON same_ins USING vs_hnsw (v embedding_l2_ops)" -c "INSERT INTO same_ins SELECT * FROM same"
for t in same same_ins; do
  check "1,000 identical vectors ($t): LIMIT 100 returns 100, none unreachable" "100|0" "$(q -c "SET enable_seqscan = off" -c "
    SELECT (SELECT count(*) FROM (SELECT id FROM $t ORDER BY v <-> (SELECT v FROM same LIMIT 1) LIMIT 100) s) || '|' || visual_search.vs_hnsw_unreachable('${t}_v')")"
done
q -c "DROP TABLE same, same_ins"
