#!/usr/bin/env bash
# A throwaway S3-compatible server on loopback for the S3 connector tests and benchmark.
#   scripts/s3-server.sh start|stop|destroy|url|access-key|secret-key
# Runs s3s-fs (checks SigV4 signatures, stores objects as files under a temp dir; note: it keeps a
# deleted or overwritten object's CRC32 when a multipart upload writes the key again, so GETs of
# such objects fail checksum validation), installed with
# `cargo install s3s-fs@0.14.1` into a cache dir when missing (about 2.5 min, once). Falls back
# to moto's server (`pip install 'moto[server]'`) when LOGBROOK_S3_SERVER=moto.
set -euo pipefail

PORT="${LOGBROOK_S3_PORT:-59000}"
DATA="${LOGBROOK_S3_DATA:-/tmp/logbrook-s3-$PORT}"
KIND="${LOGBROOK_S3_SERVER:-s3s-fs}"
TOOLS="${LOGBROOK_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/logbrook/tools}"
ACCESS_KEY="logbrook-test"
SECRET_KEY="logbrook-test-secret"
PIDFILE="$DATA/server.pid"

install() {
    case "$KIND" in
        s3s-fs)
            if [ -x "$TOOLS/bin/s3s-fs" ]; then return; fi
            if command -v s3s-fs >/dev/null 2>&1; then
                mkdir -p "$TOOLS/bin" && ln -sf "$(command -v s3s-fs)" "$TOOLS/bin/s3s-fs"
                return
            fi
            echo "installing s3s-fs 0.14.1 into $TOOLS (about 2.5 min, once)" >&2
            # Its own target dir: the build must not wait on (or lock) the workspace's.
            CARGO_TARGET_DIR="$TOOLS/target" cargo install s3s-fs@0.14.1 --locked \
                --features binary --root "$TOOLS" --quiet >&2
            rm -rf "$TOOLS/target"
            ;;
        moto)
            if command -v moto_server >/dev/null 2>&1; then return; fi
            echo "installing moto[server]" >&2
            python3 -m pip install --quiet 'moto[server]' >&2
            ;;
        *) echo "unknown LOGBROOK_S3_SERVER=$KIND (s3s-fs or moto)" >&2; exit 2 ;;
    esac
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
    install
    if running; then return; fi
    mkdir -p "$DATA/objects"
    case "$KIND" in
        s3s-fs)
            nohup "$TOOLS/bin/s3s-fs" --host 127.0.0.1 --port "$PORT" \
                --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$DATA/objects" \
                >"$DATA/server.log" 2>&1 &
            ;;
        moto)
            nohup moto_server -H 127.0.0.1 -p "$PORT" >"$DATA/server.log" 2>&1 &
            ;;
    esac
    echo $! >"$PIDFILE"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            echo "$KIND on 127.0.0.1:$PORT (data $DATA)" >&2
            return
        fi
        if ! running; then break; fi
        sleep 0.1
    done
    echo "the S3 server did not start; its log:" >&2
    cat "$DATA/server.log" >&2
    exit 1
}

stop() {
    if running; then
        kill "$(cat "$PIDFILE")" 2>/dev/null || true
        for _ in $(seq 1 50); do running || break; sleep 0.1; done
    fi
    rm -f "$PIDFILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    destroy) stop; rm -rf "$DATA" ;;
    url) echo "http://127.0.0.1:$PORT" ;;
    access-key) echo "$ACCESS_KEY" ;;
    secret-key) echo "$SECRET_KEY" ;;
    *) echo "usage: $0 start|stop|destroy|url|access-key|secret-key" >&2; exit 2 ;;
esac
