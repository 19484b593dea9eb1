#!/usr/bin/env bash
# Runs `make demo`'s script against the image's database at first start, when VS_DEMO=1
# (VS_DEMO_LIMIT=N loads N products per split instead of all 70,000).
set -euo pipefail
[ "${VS_DEMO:-0}" = 1 ] || exit 0
cd /opt/visual_search/demo
VS_DEMO_CONNINFO="dbname=${POSTGRES_DB:-postgres} user=${POSTGRES_USER:-postgres}" VS_DEMO_QUERY_DIR=/tmp \
  bash scripts/demo.sh
