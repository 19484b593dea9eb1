#!/usr/bin/env bash
# Churn: 15 rounds of DELETE 600 random rows, VACUUM, INSERT 600 new ones on a 10,000-row
# index, one round after another (010_concurrent_churn: by 3 sessions at once). VACUUM's repair
# keeps the graph as connected as a fresh build of the final rows, and rows' own vectors find
# them as often. (Plain nearest truncation of the refilled lists left 696 of 10,000 unreachable,
# 21 after a fresh build, and missed 63 of 600 never-deleted rows against 12; refilling from the
# lost neighbours' neighbours alone, 17 against 25 and 14 against 9; with a search for each
# repaired element, 9 against 22, and 29 of all 10,000 rows against 48.)
. "$(dirname "$0")/lib.sh"
vacuum_s=$(mktemp)
q -c "CREATE TABLE churn AS SELECT id, v FROM fm" -c "CREATE INDEX churn_v ON churn USING vs_hnsw (v embedding_l2_ops)"
for r in $(seq 15); do round churn "$r" 0 1; done
check "churn: every row in the index exactly once" t "$(same_rows churn churn_v)"
compare_fresh churn "15 churn rounds"
rm -f "$vacuum_s"
q -c "DROP TABLE churn, churn_fresh, churn_aged"
