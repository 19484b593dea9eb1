#!/usr/bin/env bash
# A streaming replica (pg_basebackup) replays the index's WAL: after inserts, deletes and a
# VACUUM on the primary, the standby's index answers as the primary's.
. "$(dirname "$0")/lib.sh"
PGBIN=$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -i PATH=/usr/bin:/bin "$@"; else env -i PATH=/usr/bin:/bin "$@"; fi; }
sdir=${dir}_standby
drop_standby() {
  [ -f "$sdir/data/postmaster.pid" ] && as_owner "$PGBIN/pg_ctl" -D "$sdir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$sdir"
}
drop_standby; on_exit drop_standby
mkdir -p "$sdir"; [ "$(id -u)" = 0 ] && chown postgres "$sdir"
read -r phost pport < <(sed -E 's/host=([^ ]+) port=([0-9]+).*/\1 \2/' "$dir/conninfo")
q -c "CREATE TABLE rep (id int PRIMARY KEY, v embedding(784))" -c "INSERT INTO rep SELECT id, v FROM fm WHERE id < 2000" \
  -c "CREATE INDEX rep_v ON rep USING vs_hnsw (v embedding_l2_ops) $with"
as_owner "$PGBIN/pg_basebackup" -h "$phost" -p "$pport" -U postgres -D "$sdir/data" -R -X stream -c fast
sport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_owner "$PGBIN/pg_ctl" -D "$sdir/data" -l "$sdir/server.log" -w -t 60 start -o "-p $sport -k $sdir -c listen_addresses=''" >/dev/null
standby="host=$sdir port=$sport user=postgres dbname=postgres"
q -c "INSERT INTO rep SELECT id, v FROM fm WHERE id BETWEEN 2000 AND 2999" -c "DELETE FROM rep WHERE id % 3 = 0" -c "VACUUM rep"
lsn=$(q -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 60); do
  [ "$(psql "$standby" -X -qAt -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break; sleep 1
done
answers() { psql "$1" -X -qAt -c "SET enable_seqscan = off" -c "
  SELECT string_agg(ids, ';' ORDER BY t.id) FROM fm_test t,
    LATERAL (SELECT string_agg(id::text, ',') ids FROM (SELECT id FROM rep ORDER BY v <-> t.v LIMIT 10) s) a"; }
check "the standby is in recovery" t "$(psql "$standby" -X -qAt -c "SELECT pg_is_in_recovery()")"
primary_answers=$(answers "$conn")
check "the primary answers 100 queries" 100 "$(echo "$primary_answers" | tr ';' '\n' | grep -c ,)"
check "the standby's index answers them as the primary's" "$primary_answers" "$(answers "$standby")"
check "the standby's index holds exactly the primary's rows" t "$(psql "$standby" -X -qAt -c "
  SELECT (SELECT count(*) FROM unnest(visual_search.vs_hnsw_heap_tids('rep_v'))) = (SELECT count(*) FROM rep)")"
as_owner "$PGBIN/pg_ctl" -D "$sdir/data" -m fast -w stop >/dev/null
rm -rf "$sdir"
q -c "DROP TABLE rep"
