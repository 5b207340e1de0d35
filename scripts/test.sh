#!/usr/bin/env bash
# Runs Logbrook's whole test suite on a fresh Debian machine. Installs what the tests need first.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust (1.89 or newer) with rustup first" >&2
  exit 1
fi

# The log engine is embedded: its tests need no external service. Tests that need PostgreSQL or an
# S3-compatible server (the connector crates) start them from here, on loopback, and stop them.

echo "==> cargo test --workspace (debug build)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?

# cargo prints one result line per test binary, the last often a crate's empty doc-tests:
# close with the totals so the run's outcome is read from one line.
passed=$(grep -oE '^test result: .* ([0-9]+) passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '^test result: .* ([0-9]+) failed' "$log" | grep -oE '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
