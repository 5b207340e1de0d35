#!/usr/bin/env bash
# librdkafka's rdkafka_performance, the client the `logbrook serve` figures are measured with.
#   scripts/rdkafka-perf.sh path   -> builds it once (about 5 minutes) and prints its path
# The sources are those of the crates.io crate rdkafka-sys (librdkafka 2.12.1), fetched into
# cargo's registry; the build lands in the tools cache dir, as the other scripts' tools do.
set -euo pipefail
TOOLS="${LOGBROOK_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/logbrook/tools}"
VERSION=4.10.0+2.12.1
BIN="$TOOLS/rdkafka-$VERSION/examples/rdkafka_performance"

build() {
  [ -x "$BIN" ] && return
  local src
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$VERSION" 2>/dev/null | head -1 || true)
  if [ -z "$src" ]; then
    echo "fetching rdkafka-sys $VERSION" >&2
    (cd /tmp && cargo info "rdkafka-sys@$VERSION" >/dev/null 2>&1)
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$VERSION" | head -1)
  fi
  echo "building rdkafka_performance (about 5 minutes, once)" >&2
  rm -rf "$TOOLS/rdkafka-$VERSION"
  mkdir -p "$TOOLS"
  cp -r "$src/librdkafka" "$TOOLS/rdkafka-$VERSION"
  (cd "$TOOLS/rdkafka-$VERSION" &&
    ./configure --disable-curl --disable-sasl --disable-ssl --disable-zstd --disable-lz4-ext &&
    make -j2 libs && make -C examples rdkafka_performance) >"$TOOLS/rdkafka-build.log" 2>&1 ||
    { echo "build failed: see $TOOLS/rdkafka-build.log" >&2; exit 1; }
}

case "${1:-}" in
  path) build; echo "$BIN" ;;
  *) echo "usage: $0 path" >&2; exit 2 ;;
esac
