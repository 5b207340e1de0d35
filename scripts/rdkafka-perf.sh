#!/usr/bin/env bash
# librdkafka's rdkafka_performance, the client the `logbrook serve` figures are measured with.
#   scripts/rdkafka-perf.sh path   -> builds it once (about 5 minutes) and prints its path
# The sources are those of the crates.io crate rdkafka-sys (librdkafka 2.12.1), fetched into
# cargo's registry; the build lands in the tools cache dir (scripts/rdkafka-build.sh, shared with
# scripts/librdkafka-tests.sh), as the other scripts' tools do.
set -euo pipefail
. "$(dirname "$0")/rdkafka-build.sh"
BIN="$RDKAFKA_DIR/examples/rdkafka_performance"

build() {
  [ -x "$BIN" ] && return
  rdkafka_libs
  echo "building rdkafka_performance" >&2
  rdkafka_make examples rdkafka_performance
}

case "${1:-}" in
  path) build; echo "$BIN" ;;
  *) echo "usage: $0 path" >&2; exit 2 ;;
esac
