#!/usr/bin/env bash
# Sourced by the test, demo and e2e scripts: makes sure a local Redis and PostgreSQL are
# installed and running on 127.0.0.1, installing them from Debian's packages on a fresh
# machine, and exports the URLs the tests read. It sets no shell options: the sourcing
# script does.

: "${AUTHSIDECAR_TEST_REDIS_URL:=redis://127.0.0.1:6379/0}"
: "${AUTHSIDECAR_TEST_DATABASE_URL:=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
export AUTHSIDECAR_TEST_REDIS_URL AUTHSIDECAR_TEST_DATABASE_URL

apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# promtool checks the shipped alert rules (e2e TestAlertsPassPromtool); Debian ships it in
# the prometheus package. Installed only when missing; the server it also ships is not
# started by this script.
ensure_promtool() {
  command -v promtool >/dev/null || apt_install prometheus
}

ensure_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "services: starting redis-server on 127.0.0.1:6379" >&2
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && return; sleep 0.1; done
    echo "services: redis did not start" >&2; return 1
  fi
}

pg_ok() { psql "$AUTHSIDECAR_TEST_DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1; }

ensure_postgres() {
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  pg_ok && return
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    echo "services: starting PostgreSQL $version" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.1; done
  fi
  if ! pg_ok; then
    # A fresh Debian cluster asks for a password on TCP; the tests connect as the
    # superuser over loopback, so trust loopback (this machine is a test machine).
    local hba=/etc/postgresql/$version/main/pg_hba.conf
    echo "services: trusting loopback connections in $hba" >&2
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    sleep 1
  fi
  pg_ok || { echo "services: cannot connect to $AUTHSIDECAR_TEST_DATABASE_URL" >&2; return 1; }
}
