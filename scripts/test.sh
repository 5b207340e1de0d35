#!/usr/bin/env bash
# Runs Logbrook's whole test suite on a fresh Debian machine. Installs what the tests need first.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust (1.89 or newer) with rustup first" >&2
  exit 1
fi

# The log engine is embedded: its tests need no external service. The connector tests need a real
# PostgreSQL server and a real S3-compatible server: install them if missing, start them on
# loopback, stop them at the end. The `logbrook serve` tests need real Kafka clients.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=55432
while ! port_free "$port"; do port=$((port + 1)); done
export LOGBROOK_PG_PORT="${LOGBROOK_PG_PORT:-$port}"
export LOGBROOK_PG_DATA="${LOGBROOK_PG_DATA:-$(mktemp -d /tmp/logbrook-pg.XXXXXX)}"
# The S3 connector tests need an S3-compatible server: s3s-fs (checks request signatures),
# installed into a cache dir on first use, on a free loopback port.
s3_port=59000
while ! port_free "$s3_port"; do s3_port=$((s3_port + 1)); done
export LOGBROOK_S3_PORT="${LOGBROOK_S3_PORT:-$s3_port}"
export LOGBROOK_S3_DATA="${LOGBROOK_S3_DATA:-$(mktemp -d /tmp/logbrook-s3.XXXXXX)}"
log=$(mktemp)
rdkafka_log=$(mktemp)
trap 'rm -f "$log" "$rdkafka_log"; scripts/pg-server.sh destroy; scripts/s3-server.sh destroy' EXIT
echo "==> PostgreSQL on 127.0.0.1:$LOGBROOK_PG_PORT"
scripts/pg-server.sh start
export LOGBROOK_TEST_PG_URL="$(scripts/pg-server.sh url)"
echo "==> S3 (s3s-fs) on 127.0.0.1:$LOGBROOK_S3_PORT"
scripts/s3-server.sh start
export LOGBROOK_TEST_S3_ENDPOINT="$(scripts/s3-server.sh url)"
export LOGBROOK_TEST_S3_ACCESS_KEY="$(scripts/s3-server.sh access-key)"
export LOGBROOK_TEST_S3_SECRET_KEY="$(scripts/s3-server.sh secret-key)"
# Requests to the test server never wait on EC2 instance metadata.
export AWS_EC2_METADATA_DISABLED=true
# The `logbrook serve` tests drive real Kafka clients: kcat from apt, confluent-kafka and
# kafka-python in a venv in the tools cache dir (installed on first use; later runs only check).
# The same venv holds Tansu's broker binary: the streams tests start it on loopback themselves.
if [ -z "${LOGBROOK_TEST_KCAT:-}" ] || [ -z "${LOGBROOK_TEST_PYTHON:-}" ] || [ -z "${LOGBROOK_TEST_TANSU:-}" ]; then
  echo "==> Kafka clients (kcat, confluent-kafka, kafka-python) and Tansu"
  scripts/kafka-clients.sh install
fi
export LOGBROOK_TEST_KCAT="${LOGBROOK_TEST_KCAT:-$(scripts/kafka-clients.sh kcat)}"
export LOGBROOK_TEST_PYTHON="${LOGBROOK_TEST_PYTHON:-$(scripts/kafka-clients.sh python)}"
export LOGBROOK_TEST_TANSU="${LOGBROOK_TEST_TANSU:-$(scripts/kafka-clients.sh tansu)}"
# librdkafka's own test suite (its test-runner, built once into the tools cache dir) runs against
# `logbrook serve` after the cargo tests: the tests of scripts/librdkafka-allowlist.txt must pass.
echo "==> librdkafka test-runner (scripts/librdkafka-tests.sh build)"
scripts/librdkafka-tests.sh build >/dev/null

echo "==> cargo test --workspace (debug build)"
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?

# The server the cargo tests built (target/debug/logbrook; built here if the cargo tests were
# narrowed to crates that do not build it).
echo
echo "==> librdkafka's test suite against logbrook serve (scripts/librdkafka-tests.sh run)"
[ -x target/debug/logbrook ] || cargo build --locked --bin logbrook
rdkafka_status=0
scripts/librdkafka-tests.sh run 2>&1 | tee "$rdkafka_log" || rdkafka_status=$?

# cargo prints one result line per test binary, the last often a crate's empty doc-tests:
# close with the totals so the run's outcome is read from one line.
passed=$(grep -oE '^test result: .* ([0-9]+) passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '^test result: .* ([0-9]+) failed' "$log" | grep -oE '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
grep -E '^(librdkafka tests: .* allowlisted|  FAILED )' "$rdkafka_log" || echo "librdkafka tests: did not run"
[ "$status" -ne 0 ] || status=$rdkafka_status
exit "$status"
