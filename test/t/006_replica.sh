#!/usr/bin/env bash
# A streaming replica (pg_basebackup) replays the index's WAL: after inserts, deletes and a
# VACUUM on the primary, the standby's index answers as the primary's.
. "$(dirname "$0")/lib.sh"
q -c "CREATE TABLE rep (id int PRIMARY KEY, v embedding(784))" -c "INSERT INTO rep SELECT id, v FROM fm WHERE id < 2000" \
  -c "CREATE INDEX rep_v ON rep USING vs_hnsw (v embedding_l2_ops) $(index_with)"
standby_start
q -c "INSERT INTO rep SELECT id, v FROM fm WHERE id BETWEEN 2000 AND 2999" -c "DELETE FROM rep WHERE id % 3 = 0" -c "VACUUM rep"
standby_catch_up
standby_agrees rep rep_v fm_test 100
standby_drop
q -c "DROP TABLE rep"
