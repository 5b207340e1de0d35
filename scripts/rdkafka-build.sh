# Sourced by scripts/rdkafka-perf.sh and scripts/librdkafka-tests.sh: one librdkafka 2.12.1 tree
# (the sources of the crates.io crate rdkafka-sys, fetched into cargo's registry) in the tools
# cache dir, configured and its libraries built once; each script then builds what it needs in it
# (examples/rdkafka_performance, tests/test-runner).
RDKAFKA_TOOLS="${LOGBROOK_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/logbrook/tools}"
RDKAFKA_VERSION=4.10.0+2.12.1
RDKAFKA_DIR="$RDKAFKA_TOOLS/rdkafka-$RDKAFKA_VERSION"
RDKAFKA_LOG="$RDKAFKA_TOOLS/rdkafka-build.log"

# rdkafka_libs: the tree with src/librdkafka.a and src-cpp/librdkafka++.a built (2-4 minutes the
# first time; a marker file says the libraries are complete).
rdkafka_libs() {
  [ -f "$RDKAFKA_DIR/.libs-built" ] && return
  local src
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$RDKAFKA_VERSION" 2>/dev/null | head -1 || true)
  if [ -z "$src" ]; then
    echo "fetching rdkafka-sys $RDKAFKA_VERSION" >&2
    (cd /tmp && cargo info "rdkafka-sys@$RDKAFKA_VERSION" >/dev/null 2>&1)
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"rdkafka-sys-$RDKAFKA_VERSION" | head -1)
  fi
  # RapidJSON (headers only) lets the tests check the statistics JSON (0053_stats, 0110, ...);
  # configure looks for it
  if ! dpkg -s rapidjson-dev >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "installing rapidjson-dev" >&2
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends rapidjson-dev; } >&2 ||
      echo "warning: rapidjson-dev not installed: the tests that need it skip" >&2
  fi
  echo "building librdkafka $RDKAFKA_VERSION (about 2-4 minutes, once)" >&2
  rm -rf "$RDKAFKA_DIR"
  mkdir -p "$RDKAFKA_TOOLS"
  cp -r "$src/librdkafka" "$RDKAFKA_DIR"
  (cd "$RDKAFKA_DIR" &&
    ./configure --disable-curl --disable-sasl --disable-ssl --disable-zstd --disable-lz4-ext &&
    make -j2 libs) >"$RDKAFKA_LOG" 2>&1 ||
    { echo "build failed: see $RDKAFKA_LOG" >&2; exit 1; }
  touch "$RDKAFKA_DIR/.libs-built"
}

# rdkafka_make DIR TARGET...: make in a subdirectory of the built tree, output to the build log.
rdkafka_make() {
  rdkafka_libs
  local dir=$1
  shift
  (cd "$RDKAFKA_DIR" && make -j2 -C "$dir" "$@") >>"$RDKAFKA_LOG" 2>&1 ||
    { echo "build failed: see $RDKAFKA_LOG" >&2; exit 1; }
}
