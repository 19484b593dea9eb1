#!/usr/bin/env bash
# The search page for a cluster made by pgcluster.sh, in the background.
#   scripts/web.sh start DIR   → (re)starts it on 127.0.0.1:$VS_WEB_PORT (8088, or a free port
#                                when that is taken); writes DIR/web_url and DIR/web.pid
#   scripts/web.sh stop DIR
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?cluster folder}
cd "$(dirname "$0")/.."
bin=target/release/visual_search_web

stop() {
  if [ -f "$dir/web.pid" ]; then
    kill "$(cat "$dir/web.pid")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$dir/web.pid")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/web.pid" "$dir/web_url"
  fi
}

case "$cmd" in
start)
  stop
  [ -x "$bin" ] || cargo build --release -q -p visual_search_web
  port=${VS_WEB_PORT:-8088}
  if ! python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $port))" 2>/dev/null; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  fi
  setsid "$bin" --db "$(cat "$dir/conninfo")" --listen "127.0.0.1:$port" "${@:3}" > "$dir/web.log" 2>&1 < /dev/null &
  echo $! > "$dir/web.pid"
  for _ in $(seq 100); do
    grep -q 'listening on' "$dir/web.log" && break
    kill -0 "$(cat "$dir/web.pid")" 2>/dev/null || { cat "$dir/web.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "http://127.0.0.1:$port/" | tee "$dir/web_url"
  ;;
stop) stop ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
