#!/usr/bin/env bash
# The main command for now: provisions Redis and Postgres when needed, then runs every service
# in one process on its fixed port (8091 inventory, ...). Ctrl-C stops them gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-stores.sh
export LOG_FORMAT="${LOG_FORMAT:-text}"
exec cargo run --release --locked -p qc-services --bin qc -- serve all
