#!/usr/bin/env bash
# A streaming replica (pg_basebackup) replays the index's WAL: after inserts, deletes and a
# VACUUM on the primary, the standby's index answers as the primary's.
. "$(dirname "$0")/lib.sh"
q -c "CREATE TABLE rep (id int PRIMARY KEY, v embedding(784))" -c "INSERT INTO rep SELECT id, v FROM fm WHERE id < 2000" \
  -c "CREATE INDEX rep_v ON rep USING vs_hnsw (v embedding_l2_ops) $with"
standby_start
q -c "INSERT INTO rep SELECT id, v FROM fm WHERE id BETWEEN 2000 AND 2999" -c "DELETE FROM rep WHERE id % 3 = 0" -c "VACUUM rep"
standby_catch_up
answers() { psql "$1" -X -qAt -c "SET enable_seqscan = off" -c "
  SELECT string_agg(ids, ';' ORDER BY t.id) FROM fm_test t,
    LATERAL (SELECT string_agg(id::text, ',') ids FROM (SELECT id FROM rep ORDER BY v <-> t.v LIMIT 10) s) a"; }
check "the standby is in recovery" t "$(psql "$standby" -X -qAt -c "SELECT pg_is_in_recovery()")"
primary_answers=$(answers "$conn")
check "the primary answers 100 queries" 100 "$(echo "$primary_answers" | tr ';' '\n' | grep -c ,)"
check "the standby's index answers them as the primary's" "$primary_answers" "$(answers "$standby")"
check "the standby's index holds exactly the primary's rows" t "$(psql "$standby" -X -qAt -c "
  SELECT (SELECT count(*) FROM unnest(visual_search.vs_hnsw_heap_tids('rep_v'))) = (SELECT count(*) FROM rep)")"
standby_drop
q -c "DROP TABLE rep"
