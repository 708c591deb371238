#!/usr/bin/env bash
# The project's test command: provisions Redis and Postgres when needed, then checks formatting,
# lints, and runs every test in the workspace against the live stores.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-stores.sh
scripts/ensure-chromium.sh

# A clean build gains nothing from incremental state, which is a third of the target's size on disk.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi
echo "== disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# cargo's last line is the (empty) doc-test run; close with the totals over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
