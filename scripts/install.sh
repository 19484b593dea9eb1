#!/usr/bin/env bash
# Builds the extension in release mode and installs it into PostgreSQL 15's folders, with the
# versioned SQL scripts from sql/ (upgrade scripts included).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -E "$@"; fi; }
cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
ext=$("$PG_CONFIG" --sharedir)/extension
for f in sql/visual_search--*--*.sql; do [ -e "$f" ] && sudo_if install -m 644 "$f" "$ext/"; done
echo "[install] visual_search installed into $ext"
