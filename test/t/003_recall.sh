#!/usr/bin/env bash
# Recall@10 at ef_search 40 against exact results: 10,000 images, 100 test queries.
. "$(dirname "$0")/lib.sh"
q -c "CREATE INDEX fm_v ON fm USING vs_hnsw (v embedding_l2_ops)"
recall=$(recall_at_10)
echo "index_test: recall@10 at ef_search 40 on 10,000 Fashion-MNIST images: $recall"
check "the approximate side used the index" 1 "$(q -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) SELECT id FROM fm ORDER BY v <-> (SELECT v FROM fm_test LIMIT 1) LIMIT 10" | grep -c "Index Scan using fm_v")"
check "recall@10 >= 0.95" t "$(q -c "SELECT $recall >= 0.95")"
q -c "DROP INDEX fm_v"
