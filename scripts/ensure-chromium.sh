#!/usr/bin/env bash
# Makes sure headless Chromium is available for the browser tests (the customer stream's
# EventSource): installs Debian's `chromium` package when missing. Skipped when CHROMIUM names a
# binary that exists.
set -euo pipefail
log() { printf '[ensure-chromium] %s\n' "$*" >&2; }
if [ -n "${CHROMIUM:-}" ] && command -v "$CHROMIUM" >/dev/null; then exit 0; fi
command -v chromium >/dev/null && exit 0
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else log "need root for: $*"; return 1; fi; }
log "installing chromium (Debian package)"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
