#!/usr/bin/env bash
# The demo end to end on a 2,000-product subset, in a cluster of its own: loads the catalogue,
# embeds it with the shipped model through embed_column, runs every script in sql/demo/, then
# checks that a sneaker's ten nearest products are mostly sneakers; then drives the search page the
# demo started in headless Chromium (web/e2e/search.test.mjs; screenshots in target/e2e/).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.demo-test
bash scripts/pgcluster.sh destroy "$dir"   # from scratch: a first run, as on a new machine
trap 'bash scripts/web.sh stop "$dir"; bash scripts/pgcluster.sh stop "$dir"' EXIT
VS_DEMO_DIR=$dir VS_DEMO_LIMIT=1000 bash scripts/demo.sh > "$dir.log" 2>&1 || { tail -50 "$dir.log"; exit 1; }
sneakers=$(psql "$(cat "$dir/conninfo")" -X -At -c "
  SELECT count(*) FILTER (WHERE p.category = 'Sneaker') FROM (
    SELECT category FROM products p WHERE p.split = 'train'
    ORDER BY p.embedding <-> (SELECT embedding FROM products WHERE id = 60009) LIMIT 10) p")
scripts=$(grep -c '^=== sql/demo/' "$dir.log")
indexed=$(grep -c 'Index Scan using products_embedding_idx' "$dir.log" || true)
echo "demo: $scripts scripts ran on 2,000 products; sneaker 60009's top 10 hold $sneakers sneakers; the vs_hnsw index answered ($indexed plans shown)"
[ "$scripts" = "$(ls sql/demo/*.sql | wc -l)" ] && [ "$sneakers" -ge 8 ] && grep -q 'dims_filled_by_trigger' "$dir.log" \
  && [ "$indexed" -ge 1 ] || exit 1
node web/e2e/search.test.mjs "$(cat "$dir/web_url")" pg_test/data/images/sneaker.png target/e2e
