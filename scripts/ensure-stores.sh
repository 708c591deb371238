#!/usr/bin/env bash
# Makes sure a local Redis (127.0.0.1:6379) and Postgres (127.0.0.1:5432, user postgres, no
# password) are running: installs them from Debian packages when missing, starts them when
# stopped, and lets the postgres user in over TCP without a password (development and CI only).
# Skips a store whose URL (REDIS_URL / DATABASE_URL) points somewhere else.
set -euo pipefail

log() { printf '[ensure-stores] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else log "need root for: $*"; return 1; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

is_local() { case "${1:-}" in ""|*127.0.0.1*|*localhost*) return 0;; *) return 1;; esac; }

ensure_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server redis-tools
  if ! is_local "${REDIS_URL:-}"; then log "REDIS_URL is not local; not starting Redis"; return; fi
  if [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null || true)" = "PONG" ]; then return; fi
  log "starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/qc-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/qc-redis --logfile /tmp/qc-redis/redis.log
  for _ in $(seq 1 50); do
    [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null || true)" = "PONG" ] && return
    sleep 0.1
  done
  log "Redis did not start; see /tmp/qc-redis/redis.log"; return 1
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
  command -v pg_isready >/dev/null && [ -n "$(pg_bin)" ] || apt_install postgresql postgresql-client
  if ! is_local "${DATABASE_URL:-}"; then log "DATABASE_URL is not local; not starting Postgres"; return; fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    local ver
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$ver" ]; then
      ver=$(basename "$(dirname "$(pg_bin)")")
      log "creating Postgres $ver cluster main"
      as_root pg_createcluster "$ver" main >/dev/null
    fi
    log "starting Postgres $ver cluster main"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || as_root pg_ctlcluster "$ver" main start
    for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || { log "Postgres is not accepting connections on 127.0.0.1:5432"; return 1; }
  if ! PGCONNECT_TIMEOUT=3 psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    local ver hba
    ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
    hba="/etc/postgresql/$ver/main/pg_hba.conf"
    if [ -z "$ver" ] || [ ! -f "$hba" ]; then log "cannot log in as postgres over TCP and cannot find pg_hba.conf"; return 1; fi
    log "allowing passwordless local TCP logins in $hba (development/CI)"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload || as_root pg_ctlcluster "$ver" main reload
    for _ in $(seq 1 30); do
      PGCONNECT_TIMEOUT=3 psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1 && return
      sleep 0.2
    done
    log "still cannot log in as postgres over TCP"; return 1
  fi
}

ensure_redis
ensure_postgres
log "Redis and Postgres are ready"
