#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, on a loopback port, in its own data directory.
#   scripts/pg.sh start DIR PORT   → initdb + start; prints the URL (postgres://llmgw@127.0.0.1:PORT/llmgw)
#                                    (PG_DURABLE=1: fsync and synchronous commit left on)
#   scripts/pg.sh stop DIR         → stop it (the directory is left for the caller to remove)
# As root the server runs as the 'postgres' user (initdb refuses root).
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?DIR}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] && [ -x "$bin/pg_ctl" ] || { echo "pg.sh: no PostgreSQL server (Debian package postgresql)" >&2; exit 1; }
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
start)
    port=${3:?PORT}
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U llmgw -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    # tests trade durability for speed; PG_DURABLE=1 (the benchmark) keeps the defaults
    fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    [ "${PG_DURABLE:-0}" = 1 ] && fast=""
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $dir $fast -c max_connections=300" \
        start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U llmgw llmgw
    echo "postgres://llmgw@127.0.0.1:$port/llmgw"
    ;;
stop)
    [ -d "$dir/data" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
*) echo "usage: pg.sh start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
