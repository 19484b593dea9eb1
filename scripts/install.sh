#!/usr/bin/env bash
# Builds the extension in release mode and installs it into PostgreSQL 15's folders: the main
# library, the engine library beside it (visual_search_engine.so: libtorch and the image
# decoders), the embedding service that opens it (visual_search_service), the versioned SQL
# scripts from sql/ (upgrade scripts included) and the models. PG_CONFIG chooses the installation.
#   scripts/install.sh          → all of it
#   scripts/install.sh engine   → the engine library and the service only (`make pgrx-test`:
#                                 cargo pgrx test installs the main library itself)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -E "$@"; fi; }
cargo build --release --quiet -p vs_engine -p vs_service
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
lib=$("$PG_CONFIG" --pkglibdir)
sudo_if install -m 755 "$target/release/libvisual_search_engine.so" "$lib/visual_search_engine.so"
sudo_if install -m 755 "$target/release/visual_search_service" "$lib/visual_search_service"
[ "${1:-}" = engine ] && { echo "[install] engine library and service installed into $lib"; exit 0; }
cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
ext=$("$PG_CONFIG" --sharedir)/extension
for f in sql/visual_search--*.sql; do [ -e "$f" ] && sudo_if install -m 644 "$f" "$ext/"; done
# Models: every folder of models/ with a manifest, into <sharedir>/visual_search/models.
models=$("$PG_CONFIG" --sharedir)/visual_search/models
sudo_if mkdir -p "$models"
for m in models/*/manifest.json; do
  [ -e "$m" ] || continue
  d=$(dirname "$m"); sudo_if rm -rf "$models/$(basename "$d")"; sudo_if cp -r "$d" "$models/"
done
sudo_if chmod -R a+rX "$(dirname "$models")"
echo "[install] visual_search installed into $ext, models into $models"
