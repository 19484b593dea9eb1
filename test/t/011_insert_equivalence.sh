#!/usr/bin/env bash
# The same 10,000 rows indexed two ways: CREATE INDEX over the table (the in-memory build graph
# written out) and INSERT one row at a time into an empty index (the same linking over the
# pages, `store::link` on a `PageStore`). Both are one algorithm over two storages, so the
# inserted index must search as well as the built one.
. "$(dirname "$0")/lib.sh"
q -c "CREATE TABLE built AS SELECT id, v FROM fm" -c "CREATE INDEX built_v ON built USING vs_hnsw (v embedding_l2_ops)" \
  -c "CREATE TABLE inserted (id int, v embedding(784))" -c "CREATE INDEX inserted_v ON inserted USING vs_hnsw (v embedding_l2_ops)"
t0=$(date +%s.%N)
q -c "INSERT INTO inserted SELECT id, v FROM fm ORDER BY id"
t1=$(date +%s.%N)
recall_b=$(recall_at_10 built)
recall_i=$(recall_at_10 inserted)
lost_b=$(q -c "SELECT visual_search.vs_hnsw_unreachable('built_v')")
lost_i=$(q -c "SELECT visual_search.vs_hnsw_unreachable('inserted_v')")
miss_b=$(misses built)
miss_i=$(misses inserted)
echo "index_test: built: recall@10 $recall_b, $lost_b unreachable, $miss_b own-vector misses"
echo "index_test: inserted one by one ($(q -c "SELECT round(10000 / ($t1 - $t0))") rows/s): recall@10 $recall_i, $lost_i unreachable, $miss_i own-vector misses"
check "inserted: every row in the index exactly once" t "$(same_rows inserted inserted_v)"
check "inserted: recall@10 within 0.02 of the built index's" t "$(q -c "SELECT $recall_i >= $recall_b - 0.02 AND $recall_i >= 0.95")"
check "inserted: unreachable within 2x the built index's" t "$(q -c "SELECT $lost_i <= 2 * greatest($lost_b, 1)")"
# Counts are samples (levels are drawn at random): the built one's plus 2 standard deviations.
check "inserted: own-vector misses no more than the built index's" t "$(q -c "SELECT $miss_i <= $miss_b + 2 * sqrt(greatest($miss_b, 1))")"
q -c "DROP TABLE built, inserted"
