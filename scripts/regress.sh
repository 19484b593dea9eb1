#!/usr/bin/env bash
# Runs the pg_regress cases in pg_test/ against the installed extension in a private cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.regress
# Two libraries (issue #15): the main one must link no libtorch, the engine library beside it does.
lib=$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --pkglibdir)
if readelf -d "$lib/visual_search.so" | grep -E 'NEEDED.*(libtorch|libc10|libgomp)'; then
  echo "regress: $lib/visual_search.so links libtorch; only visual_search_engine.so may" >&2; exit 1
fi
readelf -d "$lib/visual_search_engine.so" | grep -q 'NEEDED.*libtorch' || { echo "regress: no engine library in $lib" >&2; exit 1; }
# The service process opens the engine library like a backend does: it links no libtorch itself.
if readelf -d "$lib/visual_search_service" | grep -E 'NEEDED.*(libtorch|libc10|libgomp)'; then
  echo "regress: $lib/visual_search_service links libtorch" >&2; exit 1
fi
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh stop "$dir"' EXIT
read -r host port < <(sed -E 's/host=([^ ]+) port=([0-9]+).*/\1 \2/' "$dir/conninfo")
PGXS=$(dirname "$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --pgxs)")
schedule=pg_test/schedule
mkdir -p "$dir/out"
# Test data where the server (user postgres) can read it, at a fixed path so that error messages
# in the expected output do not depend on where the checkout is; broken models made from the tiny one.
# VS_REGRESS_TMP moves it (for a second checkout running beside the first): the cases are then run
# from a copy with the path replaced, and a path of the same length keeps psql's tables aligned.
fixed=/tmp/visual_search_regress
tmp=${VS_REGRESS_TMP:-$fixed}
inputdir=pg_test
if [ "$tmp" != "$fixed" ]; then
  inputdir=$dir/pg_test
  rm -rf "$inputdir"; cp -r pg_test "$inputdir"
  sed -i "s#$fixed#$tmp#g" "$inputdir"/sql/*.sql "$inputdir"/expected/*.out
fi
data=$tmp/data
rm -rf "$data"; mkdir -p "$data"; cp -r pg_test/data/. "$data/"
python3 - "$data/models" <<'PY'
import hashlib, json, os, shutil, sys
root = sys.argv[1]
def clone(name):
    d = os.path.join(root, name); shutil.copytree(os.path.join(root, "tiny-vgg16"), d); return d
def manifest(d, **weights):
    p = os.path.join(d, "manifest.json"); m = json.load(open(p)); m["name"] = os.path.basename(d)
    m["weights"].update(weights); json.dump(m, open(p, "w"))
d = clone("broken-sha"); manifest(d, sha256="ab" * 32)
d = clone("broken-missing"); os.remove(os.path.join(d, "weights.safetensors"))
d = clone("broken-corrupt"); w = os.path.join(d, "weights.safetensors"); b = open(w, "rb").read()[:5000]
open(w, "wb").write(b); manifest(d, sha256=hashlib.sha256(b).hexdigest())
d = clone("broken-manifest"); open(os.path.join(d, "manifest.json"), "w").write("{ not json")
d = clone("tiny-nocrop"); p = os.path.join(d, "manifest.json"); m = json.load(open(p)); m["name"] = "tiny-nocrop"
m["input"]["crop"] = None; json.dump(m, open(p, "w"))
# a PNG whose (valid) header announces 60,000 x 60,000 pixels over a few hundred bytes of data
import struct, zlib
png = bytearray(open(os.path.join(root, "..", "images", "sneaker.png"), "rb").read())
png[16:24] = struct.pack(">II", 60000, 60000)
png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])) & 0xFFFFFFFF)
open(os.path.join(root, "..", "images", "bomb.png"), "wb").write(bytes(png))
PY
# Fashion-MNIST pixels (id, embedding literal) for the quantized index's recall: 1,200 training
# images and 20 test ones, real structure where synthetic vectors had none to navigate by
python3 scripts/fashion_mnist.py --limit 1200 | awk -F'\t' '$4 == "train" { print $1 "\t" $6 }' > "$data/fashion.tsv"
python3 scripts/fashion_mnist.py --limit 1200 | awk -F'\t' '$4 == "test" && n++ < 20 { print $1 "\t" $6 }' > "$data/fashion_test.tsv"
# the original design's feature end to end (vs_hnsw_flatten): a full-width VGG16 giving 25,088-d
# flattened conv5, and 300 + 300 Fashion-MNIST products with their photos
/usr/bin/python3 scripts/make_vgg16_flatten.py "$data/models"
python3 scripts/fashion_mnist.py --limit 300 > "$data/fashion_products.tsv"
# hostile images: huge pixel counts or resized sizes in a few KB, JPEGs announcing more than they hold
python3 scripts/make_bombs.py "$data/bombs" "$data/images"
# a model written by the train command (a few steps on a few hundred images), for image_embed
cargo run --release --quiet -p vs_train --bin train -- --fashion-mnist /usr/share/datasets/fashion-mnist --limit 300 \
  --width 0.0625 --batch-norm --epochs 2 --max-steps 10 --no-augment --quiet \
  --out "$data/models" --name trained-tiny >/dev/null
# and one trained from the rows of a SQL query (image bytea, label)
conninfo=$(cat "$dir/conninfo")
psql "$conninfo" -X -q -c "DROP DATABASE IF EXISTS vs_train_src" -c "CREATE DATABASE vs_train_src"
psql "$conninfo dbname=vs_train_src" -X -q -c "CREATE TABLE products (id int, name text, category text, split text, image bytea, pixels text)"
python3 scripts/fashion_mnist.py --limit 100 | psql "$conninfo dbname=vs_train_src" -X -q -c "\copy products FROM STDIN"
cargo run --release --quiet -p vs_train --bin train -- --query "SELECT image, category FROM products WHERE split = 'train'" \
  --conninfo "$conninfo dbname=vs_train_src" --width 0.0625 --batch-norm --epochs 1 --max-steps 3 --no-augment \
  --quiet --out "$data/models" --name trained-from-sql >/dev/null
chmod -R a+rX "$tmp"
export VS_TEST_DATA=$data
"$PGXS/../test/regress/pg_regress" --inputdir="$inputdir" --outputdir="$dir/out" \
  --bindir="$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)" --host="$host" --port="$port" --user=postgres \
  --dbname=vs_regress --schedule="$schedule" || { cat "$dir/out/regression.diffs" 2>/dev/null | head -200; exit 1; }
