#!/usr/bin/env bash
# Make the services the test suite uses run on this machine, installing and configuring what is missing:
#   - Redis on 127.0.0.1:6379 (Debian package redis-server);
#   - PostgreSQL on 127.0.0.1:5432 (Debian package postgresql) with passwordless login for user postgres
#     from 127.0.0.1 and ::1 (the tests connect as postgresql://postgres@127.0.0.1:5432/...): two `trust`
#     lines at the top of the cluster's pg_hba.conf, then a reload;
#   - the headless browser the web-page tests drive (Debian package chromium).
# Services already running and reachable are left alone. Exits non-zero with the reason on stderr when any
# of them cannot be installed, started or logged into.
#
# Settings (environment), for unusual machines and for tests/scripts/test_ensure_services.py:
#   MCS_PG_CONF_ROOT  where the clusters' configuration lives (default /etc/postgresql)
#   MCS_WAIT_TENTHS   how long to wait for a service to answer, in tenths of a second (default 150)
set -euo pipefail

PG_CONF_ROOT="${MCS_PG_CONF_ROOT:-/etc/postgresql}"
WAIT_TENTHS="${MCS_WAIT_TENTHS:-150}"
if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
APT_UPDATED=""

die() {
  echo "ensure-services: FAILED: $*" >&2
  exit 1
}

say() {
  echo "ensure-services: $*"
}

apt_install() {  # apt_install PACKAGE: install a Debian package or die naming it
  command -v apt-get >/dev/null 2>&1 || die "$1 is missing and there is no apt-get to install it; install $1"
  say "installing $1 (apt-get)"
  if [ -z "$APT_UPDATED" ]; then
    "${SUDO[@]}" apt-get update -q || die "apt-get update failed; cannot install $1"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q "$1" || die "apt-get could not install $1"
}

wait_for() {  # wait_for WHAT COMMAND...: poll until COMMAND succeeds, or die after WAIT_TENTHS tenths
  local what="$1"
  shift
  for _ in $(seq "$WAIT_TENTHS"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what did not answer within $((WAIT_TENTHS / 10)) s"
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  if redis_up; then
    say "redis answers on 127.0.0.1:6379"
    return
  fi
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || apt_install redis-server
  say "starting redis on 127.0.0.1:6379"
  "${SUDO[@]}" mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  "${SUDO[@]}" redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || die "redis-server would not start"
  wait_for "redis on 127.0.0.1:6379" redis_up
}

pg_version() {  # the first cluster's version folder under PG_CONF_ROOT, if any
  local v
  for v in "$PG_CONF_ROOT"/*/main; do
    [ -d "$v" ] && basename "$(dirname "$v")" && return 0
  done
  return 1
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432; }

pg_login() { psql -w -h 127.0.0.1 -p 5432 -U postgres -d postgres -tAc "select 1" 2>/dev/null | grep -q 1; }

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1 \
    || ! pg_version >/dev/null; then
    apt_install postgresql
  fi
  local version
  version="$(pg_version)" || die "postgresql is installed but has no cluster under $PG_CONF_ROOT/*/main"
  if ! pg_up >/dev/null 2>&1; then
    say "starting postgresql $version on 127.0.0.1:5432"
    "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main start \
      || die "pg_ctlcluster could not start cluster $version/main"
    wait_for "postgresql on 127.0.0.1:5432" pg_up
  fi
  if pg_login; then
    say "postgresql answers on 127.0.0.1:5432; user postgres logs in without a password"
    return
  fi
  local hba="$PG_CONF_ROOT/$version/main/pg_hba.conf"
  [ -f "$hba" ] || die "no $hba to allow passwordless login for user postgres"
  say "allowing passwordless login for user postgres from 127.0.0.1 and ::1 in $hba"
  local lines="host all postgres 127.0.0.1/32 trust  # mcs tests (scripts/ensure-services.sh)
host all postgres ::1/128 trust  # mcs tests (scripts/ensure-services.sh)"
  { printf '%s\n' "$lines"; "${SUDO[@]}" cat "$hba"; } >"$hba.mcs-new" || die "cannot write $hba.mcs-new"
  "${SUDO[@]}" cp "$hba.mcs-new" "$hba" && rm -f "$hba.mcs-new" || die "cannot update $hba"
  "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main reload \
    || die "pg_ctlcluster could not reload cluster $version/main"
  wait_for "passwordless login as postgres on 127.0.0.1:5432" pg_login
}

ensure_chromium() {
  command -v chromium >/dev/null 2>&1 || apt_install chromium
}

ensure_redis
ensure_postgres
ensure_chromium
say "ready: redis 127.0.0.1:6379, postgresql 127.0.0.1:5432 (user postgres, no password), chromium"
