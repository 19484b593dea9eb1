#!/usr/bin/env bash
# 009_churn's 15 rounds by 3 sessions at once (5 rounds each, on their own rows, so VACUUM
# repairs while the others insert), held to the same fresh build comparison.
. "$(dirname "$0")/lib.sh"
vacuum_s=$(mktemp)
q -c "CREATE TABLE cchurn AS SELECT id, v FROM fm" -c "CREATE INDEX cchurn_v ON cchurn USING vs_hnsw (v embedding_l2_ops)"
pids=()
for s in 0 1 2; do
  ( for r in $(seq "$((s * 5 + 1))" "$((s * 5 + 5))"); do round cchurn "$r" "$s" 3; done ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
check "concurrent churn: every row in the index exactly once" t "$(same_rows cchurn cchurn_v)"
compare_fresh cchurn "15 concurrent churn rounds"
rm -f "$vacuum_s"
q -c "DROP TABLE cchurn, cchurn_fresh, cchurn_aged"
