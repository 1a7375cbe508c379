# Sourced by the PostgreSQL benchmarks (backup.sh, restore.sh): a throwaway cluster on a free
# loopback port (as the postgres user when root) holding pgbench's schema at scale $SCALE
# (default 20 ≈ 300 MB; BIG=1 for 1 GB: scale 67), in a temp dir `$work` removed at exit.
# Sets PGBIN, work, PORT and the PG* variables; `on_exit` commands run before the cleanup.
SCALE=${SCALE:-20}
[ "${BIG:-0}" = 1 ] && SCALE=67
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/wharf-bench-pg.XXXXXX)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
on_exit() { :; }
cleanup() {
  on_exit
  as_pg "$PGBIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres "$work"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PGPASSWORD=bench-password PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=bench PGDATABASE=postgres
echo "$PGPASSWORD" > "$work/pw"; [ "$(id -u)" = 0 ] && chown postgres "$work/pw"
as_pg "$PGBIN/initdb" -D "$work/data" -U bench --pwfile="$work/pw" --auth-host=scram-sha-256 \
  --auth-local=trust --no-sync -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$work/data" -l "$work/pg.log" -w -o \
  "-p $PORT -k $work -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=128MB" start >/dev/null
"$PGBIN/pgbench" -i -q -s "$SCALE" >/dev/null 2>&1
echo "database: pgbench scale $SCALE, $(psql -XAtc "SELECT pg_size_pretty(pg_database_size('postgres'))")"
