#!/usr/bin/env bash
# The demo end to end on a 2,000-product subset, in a cluster of its own: loads the catalogue,
# embeds it with the shipped model through embed_column, runs every script in sql/demo/, then
# checks that a sneaker's ten nearest products are mostly sneakers; then drives the search page the
# demo started in headless Chromium (web/e2e/search.test.mjs; screenshots in target/e2e/), and its
# JSON API over HTTP (web/e2e/api.test.mjs): every endpoint and error, the README's chat bot, a
# second server with a token beyond loopback, and the database stopped under them.
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
grep -A2 'new_arrivals_with_vectors_async' "$dir.log" | grep -qE '^ +500 \| +500$' \
  || { echo "demo: the 500 async arrivals did not all get their vectors"; exit 1; }
# New arrivals as the page sees them while the drainer has not reached them: the drainer is
# stopped (SIGSTOP) while three sneakers and a broken upload are inserted; the page test resumes
# it (SIGCONT) once it has seen them pending, then sees them turn searchable and the broken one
# failed.
c=$(cat "$dir/conninfo")
psql "$c" -X -q -v ON_ERROR_STOP=1 -v img="$PWD/pg_test/data/images/sneaker.png" <<'SQL'
INSERT INTO products (id, name, category, split, image) VALUES (300000, 'Wake-up', 'Sneaker', 'test', pg_read_binary_file(:'img'));
-- behind the page's second model's backlog (efficientnet-lite0-imagenet, 2,000 photos: a minute or two)
SELECT visual_search.wait_for_embeddings('products', '10 minutes') AS woke \gset
SELECT 1 / :'woke'::boolean::int AS the_wake_up_row_was_drained;
SQL
drainer=$(psql "$c" -X -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'visual_search auto-embed' ORDER BY backend_start DESC LIMIT 1")
[ -n "$drainer" ] || { echo "demo: no drainer in pg_stat_activity"; exit 1; }
trap 'kill -CONT '"$drainer"' 2>/dev/null; bash scripts/web.sh stop "$dir"; bash scripts/pgcluster.sh stop "$dir"' EXIT
kill -STOP "$drainer"
export PGOPTIONS='-c statement_timeout=60s'   # a drainer stopped inside a transaction must not hang the test
psql "$c" -X -q -v ON_ERROR_STOP=1 -v img="$PWD/pg_test/data/images/sneaker.png" <<'SQL'
DELETE FROM products WHERE id = 300000;
INSERT INTO products (id, name, category, split, image)
SELECT 300000 + i, 'New arrival ' || i, 'Sneaker', 'test', pg_read_binary_file(:'img') FROM generate_series(1, 3) i;
INSERT INTO products (id, name, category, split, image) VALUES (300004, 'Broken upload', 'Sneaker', 'test', '\x89504e47'::bytea);
SQL
# setup.sh installs efficientnet-lite0-imagenet, so the demo's page must offer it beside the shipped model.
VS_E2E_MODELS=2 node web/e2e/search.test.mjs "$(cat "$dir/web_url")" pg_test/data/images/sneaker.png target/e2e "$drainer"

url=$(cat "$dir/web_url")
# Rows a looser table could hold: the API answers them as they are (nulls, a 404 for no photo).
psql "$c" -X -q -v ON_ERROR_STOP=1 -v img="$PWD/pg_test/data/images/sneaker.png" <<'SQL'
ALTER TABLE products ALTER name DROP NOT NULL, ALTER category DROP NOT NULL, ALTER image DROP NOT NULL;
INSERT INTO products (id, name, category, split, image) VALUES (400001, NULL, NULL, 'test', pg_read_binary_file(:'img')), (400002, 'No photo yet', 'Sneaker', 'test', NULL);
SELECT 1 / visual_search.wait_for_embeddings('products', '5 minutes')::int AS drained \gset
SQL
node web/e2e/api.test.mjs open "$url" pg_test/data/images/sneaker.png
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $1))" 2>/dev/null && return; sleep 0.1; done; exit 1; }
# The README shows the chat bot's code: it must be the file that runs here.
python3 - <<'PY'
import re
readme, code = open("README.md").read(), open("web/examples/chat_webhook.py").read()
blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
assert code in blocks, "README.md's chat-bot example differs from web/examples/chat_webhook.py"
PY
bot_port=$(free_port)
PORT=$bot_port VS_API=$url python3 web/examples/chat_webhook.py 2> "$dir/bot.log" &
bot=$!
remote_port=$(free_port)
token_file=$dir/api_token
(umask 077; head -c 24 /dev/urandom | base64 | tr '+/' '-_' > "$token_file")
target/release/visual_search_web --db "$c" --listen "0.0.0.0:$remote_port" --allow-remote --token-file "$token_file" \
  --max-concurrent 1 > "$dir/remote.log" 2>&1 &
remote=$!
trap 'set +e; kill -CONT '"$drainer"' 2>/dev/null; kill '"$bot $remote"' 2>/dev/null; bash scripts/web.sh stop "$dir"; bash scripts/pgcluster.sh stop "$dir"' EXIT
wait_port "$bot_port"
node web/e2e/api.test.mjs bot "http://127.0.0.1:$bot_port/" pg_test/data/images/sneaker.png
wait_port "$remote_port"
node web/e2e/api.test.mjs token "http://127.0.0.1:$remote_port/" "$(cat "$token_file")"
bash scripts/pgcluster.sh stop "$dir"
node web/e2e/api.test.mjs down "$url"
