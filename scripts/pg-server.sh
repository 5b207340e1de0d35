#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the connector tests.
#   scripts/pg-server.sh start|stop|restart|url
# Installs Debian's postgresql-15 when it is missing; runs as the `postgres` user (the server
# refuses root) from a data dir under /tmp; wal_level=logical for the CDC source.
set -euo pipefail

PORT="${LOGBROOK_PG_PORT:-55432}"
DATA="${LOGBROOK_PG_DATA:-/tmp/logbrook-pg-$PORT}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
    if [ -n "$BIN" ] && [ -x "$BIN/pg_ctl" ]; then return; fi
    echo "installing postgresql-15" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-client-15 >&2
    BIN=/usr/lib/postgresql/15/bin
}

start() {
    install
    if [ ! -f "$DATA/PG_VERSION" ]; then
        mkdir -p "$DATA"
        [ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA"
        as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if ! as_postgres "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start -o \
            "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c wal_level=logical \
             -c max_replication_slots=20 -c max_wal_senders=20 -c fsync=off \
             -c full_page_writes=off -c max_connections=200" >/dev/null
    fi
    echo "postgres on 127.0.0.1:$PORT (data $DATA)" >&2
}

stop() {
    if [ -n "$BIN" ] && [ -f "$DATA/PG_VERSION" ]; then
        as_postgres "$BIN/pg_ctl" -D "$DATA" -w -t 60 -m fast stop >/dev/null 2>&1 || true
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart)
        as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 -m fast restart >/dev/null ;;
    destroy) stop; rm -rf "$DATA" ;;
    url) echo "postgres://postgres@127.0.0.1:$PORT/postgres" ;;
    *) echo "usage: $0 start|stop|restart|destroy|url" >&2; exit 2 ;;
esac
