#!/usr/bin/env bash
# The project's test command: provisions Redis and Postgres when needed, then checks formatting,
# lints, and runs every test in the workspace against the live stores.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-stores.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
