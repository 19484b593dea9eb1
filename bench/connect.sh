#!/usr/bin/env bash
# Issue #15's point 1 in figures: a new connection that parses an embedding literal, its
# backend's RSS, and a parallel exact top-10 over 60,000 x 128, each beside pgvector built from
# source into the same server (bench/connect.py; JSON and markdown into bench/results/).
#   bash bench/connect.sh [LABEL]   → bench/results/connect-LABEL.json (LABEL: "after" unless set),
#                                     and bench/results/connect.md over every connect-*.json there
# Against the installed visual_search of PG_CONFIG's server. pgvector is built from the source in
# PGVECTOR_SRC (a checkout, or a bare git repository: its HEAD) in a scratch folder and installed
# into the same server when it is not there yet. The cluster lives in VS_BENCH_DIR (.bench/connect).
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:-after}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
dir=${VS_BENCH_DIR:-.bench/connect}
. bench/pgvector.sh
pgvector_install
bash scripts/pgcluster.sh start "$dir" >/dev/null
trap 'bash scripts/pgcluster.sh stop "$dir"' EXIT
# Debian's python3 (psycopg2 comes from setup.sh's python3-psycopg2); run as root so that it can
# read the backends' /proc/<pid>/status.
/usr/bin/python3 bench/connect.py "$(cat "$dir/conninfo")" "$label" bench/results
