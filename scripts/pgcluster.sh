#!/usr/bin/env bash
# A private PostgreSQL 15 cluster in a folder, on a free local port, touching no system config.
#   scripts/pgcluster.sh start DIR   → starts (or reuses) it; writes DIR/conninfo
#   scripts/pgcluster.sh stop DIR
#   scripts/pgcluster.sh destroy DIR   → stops it and deletes its data
# As root, the server runs as user postgres (initdb refuses root). The server is started with a
# clean environment: no LD_LIBRARY_PATH, so the extension must find libtorch by its rpath.
set -euo pipefail
cmd=${1:?start|stop|destroy}; dir=${2:?cluster folder}
PGBIN=$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -i PATH=/usr/bin:/bin "$@"; else env -i PATH=/usr/bin:/bin "$@"; fi
}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
data="$dir/data"
# postgres must be able to reach the folder; a checkout under a private home is not reachable,
# so the data then lives in /tmp and the folder keeps a link to it.
if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$dir"; then
  alt="/tmp/visual_search-$(echo "$dir" | md5sum | cut -c1-12)"
  mkdir -p "$alt"; chown postgres "$alt"; ln -sfn "$alt" "$dir/data-link"; data="$alt/data"
fi
[ "$(id -u)" = 0 ] && chown postgres "$(dirname "$data")"
sock=$(dirname "$data")

case "$cmd" in
start)
  if [ ! -f "$data/PG_VERSION" ]; then
    as_owner "$PGBIN/initdb" -D "$data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
  fi
  if as_owner "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    port=$(sed -n 4p "$data/postmaster.pid")
  else
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_owner "$PGBIN/pg_ctl" -D "$data" -l "$sock/server.log" -w -t 60 start \
      -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c shared_buffers=512MB -c max_wal_size=4GB" >/dev/null
  fi
  echo "host=$sock port=$port user=postgres dbname=postgres" > "$dir/conninfo"
  echo "postgresql://postgres@127.0.0.1:$port/postgres" > "$dir/url"
  cat "$dir/conninfo"
  ;;
stop)
  if [ -f "$data/PG_VERSION" ]; then as_owner "$PGBIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; fi
  rm -f "$dir/conninfo" "$dir/url"
  ;;
destroy)
  if [ -f "$data/PG_VERSION" ]; then as_owner "$PGBIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; fi
  rm -rf "$data" "$dir"
  ;;
*) echo "usage: $0 start|stop|destroy DIR" >&2; exit 2 ;;
esac
