#!/usr/bin/env bash
# `make demo`: a private cluster under .demo/, the Fashion-MNIST catalogue loaded, the psql demos
# in sql/demo/ run. The cluster keeps running (`make stop` stops it); a second run reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${VS_DEMO_LIMIT:-0}          # products per split; 0 = the whole catalogue
DIR=${VS_DEMO_DIR:-.demo}
# VS_DEMO_CONNINFO: a running server to use instead of the private cluster (the Docker images).
if [ -n "${VS_DEMO_CONNINFO:-}" ]; then
  conninfo=$VS_DEMO_CONNINFO
else
  bash scripts/pgcluster.sh start "$DIR" >/dev/null
  conninfo=$(cat "$DIR/conninfo")
fi
psql_q() { psql "$conninfo" -X -v ON_ERROR_STOP=1 -q "$@"; }

psql_q -c "CREATE EXTENSION IF NOT EXISTS visual_search" 2>/dev/null || true
psql_q -c "ALTER EXTENSION visual_search UPDATE" >/dev/null 2>&1 || true
have=0
if [ "$(psql_q -tA -c "SELECT to_regclass('products') IS NOT NULL")" = t ]; then
  have=$(psql_q -tA -c "SELECT count(*) FROM products")
fi
want=$([ "$LIMIT" = 0 ] && echo 70000 || echo $((2 * LIMIT)))
if [ "$have" != "$want" ]; then
  echo "[demo] loading the Fashion-MNIST catalogue ($want products) with COPY ..."
  psql_q <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS products;
CREATE TABLE products (
    id       integer PRIMARY KEY,
    name     text NOT NULL,
    category text NOT NULL,
    split    text NOT NULL CHECK (split IN ('train', 'test')),
    image    bytea NOT NULL,
    pixels   embedding(784)
);
-- 784 floats (3 KB) fit in a page: keeping them inline spares every scan a TOAST fetch per row.
ALTER TABLE products ALTER COLUMN pixels SET STORAGE PLAIN;
SQL
  python3 scripts/fashion_mnist.py --limit "$LIMIT" | psql_q -c "\copy products (id, name, category, split, image, pixels) FROM STDIN"
  psql_q -c "ANALYZE products"
else
  echo "[demo] reusing the loaded catalogue ($have products)"
fi
# Vectors from the shipped model (visual_search.default_model): auto-embedding keeps them up to
# date from now on, after backfilling the catalogue in batches with progress lines.
dims=$(psql_q -tA -c "LOAD 'visual_search'" \
  -c "SELECT dims FROM visual_search.models() WHERE name = current_setting('visual_search.default_model')")
psql_q -c "SET client_min_messages = warning" -c "ALTER TABLE products ADD COLUMN IF NOT EXISTS embedding embedding($dims)"
todo=$(psql_q -tA -c "SELECT count(*) FROM products WHERE embedding IS NULL")
[ "$todo" != 0 ] && echo "[demo] embedding $todo product photos with image_embed ..."
psql "$conninfo" -X -v ON_ERROR_STOP=1 -q -c "SET visual_search.threads = $(nproc)" \
  -c "SELECT visual_search.enable_auto_embed('products', 'image', 'embedding', batch => 1000) AS embedded"
[ "$todo" != 0 ] && psql_q -c "VACUUM ANALYZE products"
# The vs_hnsw index on the vectors: built once, then kept up to date by every INSERT.
if [ "$(psql_q -tA -c "SELECT to_regclass('products_embedding_idx') IS NOT NULL")" != t ]; then
  echo "[demo] building the vs_hnsw index on products.embedding ..."
  psql_q -c "SET maintenance_work_mem = '1GB'" -c "\timing on" \
    -c "CREATE INDEX products_embedding_idx ON products USING vs_hnsw (embedding embedding_l2_ops)"
else
  echo "[demo] reusing the vs_hnsw index products_embedding_idx"
fi
# A photo for the "search by image file" demo, where the server can read it.
host=${VS_DEMO_QUERY_DIR:-$(sed -E 's/host=([^ ]+).*/\1/' "$DIR/conninfo")}
cp pg_test/data/images/sneaker.png "$host/query.png" && chmod a+r "$host/query.png"
for f in sql/demo/*.sql; do
  echo; echo "=== $f"
  psql "$conninfo" -X -v ON_ERROR_STOP=1 -v query_image="$host/query.png" -f "$f"
done
# A second model for the page, side by side with the shipped one: ImageNet features of every
# photo (efficientnet-lite0-imagenet, when setup.sh installed it), filled by the drainer in the
# background: the page answers with it at once, over the products embedded so far.
web_models=()
if [ "$(psql_q -tA -c "SELECT count(*) FROM visual_search.models() WHERE name = 'efficientnet-lite0-imagenet' AND weights_present")" = 1 ]; then
  psql_q -c "SET client_min_messages = warning" -c "ALTER TABLE products ADD COLUMN IF NOT EXISTS embedding_imagenet embedding(1280)" \
    -c "SELECT visual_search.enable_auto_embed('products', 'image', 'embedding_imagenet', model => 'efficientnet-lite0-imagenet', mode => 'async') AS imagenet_queued" \
    -c "CREATE INDEX IF NOT EXISTS products_embedding_imagenet_idx ON products USING vs_hnsw (embedding_imagenet embedding_l2_ops)"
  web_models=(--model efficientnet-lite0-imagenet=embedding_imagenet)
  echo "[demo] efficientnet-lite0-imagenet embeds the catalogue in the background (SELECT * FROM visual_search.embedding_queues)"
fi
echo
if [ -z "${VS_DEMO_CONNINFO:-}" ]; then
  echo "[demo] cluster running; connect with: psql \"$conninfo\"  (written to $DIR/conninfo; 'make stop' stops it)"
  echo "[demo] search page: $(bash scripts/web.sh start "$DIR" "${web_models[@]}")  (upload a photo or click a product; 'make stop' stops it)"
fi
