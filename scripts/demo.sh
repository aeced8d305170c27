#!/usr/bin/env bash
# authsidecar demo without Docker, on a Debian machine, in one command:
#
#   scripts/demo.sh
#
# First checks for Go >= go.mod's version (scripts/prereqs.sh; Debian's golang-go is too
# old, so it is never installed: install Go from the official tarball). Then installs
# Postgres, Redis, Node.js/npm and curl with apt-get when they are missing, starts Postgres
# and Redis when they are down, (re)creates its own database "authsidecar_demo" and role
# "authsidecar_demo" with the schema, change-notification trigger and the demo user (José
# Müller), builds and starts the example Next.js app on 127.0.0.1:3000 and authsidecar on
# 127.0.0.1:8080 in front of it, and prints the curl commands to try.
#
# On Ctrl-C (or any exit) it stops what it started and removes what it created: the
# database, the role (unless it existed before) and the Redis keys under its prefix. It
# says what it leaves: the packages it installed, examples/nextjs/node_modules and .next,
# and its logs in tmp/demo. DEMO_KEEP=1 keeps the database, role and keys.
#
# Environment (all optional):
#   DEMO_DB       database name                        (default authsidecar_demo)
#   DEMO_REDIS_URL                                      (default redis://127.0.0.1:6379/0)
#   LISTEN_ADDR   sidecar public listener              (default 127.0.0.1:8080)
#   APP_PORT      example app port on 127.0.0.1        (default 3000)
#   ADMIN_ADDR    sidecar admin listener               (default 127.0.0.1:9091)
#   DEMO_KEEP     1: leave the database, role and Redis keys on exit

set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/prereqs.sh"
need_go || exit 1
APP_DIR="$ROOT/examples/nextjs"
DEMO_DB="${DEMO_DB:-authsidecar_demo}"
DEMO_ROLE="authsidecar_demo"
DEMO_PASSWORD="authsidecar-demo-password"
REDIS_URL="${DEMO_REDIS_URL:-redis://127.0.0.1:6379/0}"
LISTEN_ADDR="${LISTEN_ADDR:-127.0.0.1:8080}"
ADMIN_ADDR="${ADMIN_ADDR:-127.0.0.1:9091}"
APP_PORT="${APP_PORT:-3000}"
KEY_PREFIX="authsidecar-demo:session:"
TOKEN="authsidecar-demo-token"
RUN_DIR="$ROOT/tmp/demo"          # logs and the binary (tmp/ is git-ignored)
APP_PID="" SIDECAR_PID="" STARTED_PG="" STARTED_REDIS=0
MADE_DB=0 MADE_ROLE=0 INSTALLED=""

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo" || die "run as root or install sudo"
fi
as_postgres() { # run a command as the postgres OS user (peer authentication on the socket)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

stop_all() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  echo
  say "stopping"
  for pid in "$SIDECAR_PID" "$APP_PID"; do
    [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null
  done
  for pid in "$SIDECAR_PID" "$APP_PID"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null
  done
  remove_demo_data
  if [ "$STARTED_REDIS" = 1 ]; then
    say "stopping the Redis this script started"
    redis-cli -u "$REDIS_URL" shutdown nosave >/dev/null 2>&1
  fi
  if [ -n "$STARTED_PG" ]; then
    say "stopping the Postgres cluster this script started ($STARTED_PG main)"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$STARTED_PG" main stop >/dev/null 2>&1
  fi
  say "left in place: logs in $RUN_DIR, examples/nextjs/node_modules and .next${INSTALLED:+, the packages installed with apt-get ($INSTALLED)}"
  exit "$rc"
}

# remove_demo_data drops what the demo created, unless DEMO_KEEP=1.
remove_demo_data() {
  [ "$MADE_DB" = 1 ] || return 0   # stopped before it created anything
  if [ "${DEMO_KEEP:-0}" = 1 ]; then
    say "kept (DEMO_KEEP=1): database $DEMO_DB, role $DEMO_ROLE, Redis keys ${KEY_PREFIX}*"
    return
  fi
  if [ "$STARTED_REDIS" != 1 ] && command -v redis-cli >/dev/null 2>&1; then
    redis-cli -u "$REDIS_URL" --no-auth-warning --scan --pattern "${KEY_PREFIX}*" 2>/dev/null \
      | xargs -r redis-cli -u "$REDIS_URL" --no-auth-warning del >/dev/null 2>&1
    say "removed the Redis keys ${KEY_PREFIX}*"
  fi
  as_postgres psql -qX -d postgres -c "DROP DATABASE IF EXISTS $DEMO_DB WITH (FORCE)" >/dev/null 2>&1 \
    && say "dropped the database $DEMO_DB" || say "could not drop the database $DEMO_DB"
  if [ "$MADE_ROLE" = 1 ]; then
    as_postgres psql -qX -d postgres -c "DROP ROLE IF EXISTS $DEMO_ROLE" >/dev/null 2>&1 \
      && say "dropped the role $DEMO_ROLE" || say "could not drop the role $DEMO_ROLE"
  else
    say "kept the role $DEMO_ROLE: it existed before this run"
  fi
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_until() { # wait_until SECONDS command...
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.3
  done
}
port_busy() { # port_busy HOST PORT
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# ------------------------------------------------------------------ packages
missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server  >/dev/null 2>&1 || missing+=(redis-server)
command -v curl          >/dev/null 2>&1 || missing+=(curl)
command -v node          >/dev/null 2>&1 || missing+=(nodejs)
command -v npm           >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt-get)"
  INSTALLED="${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>18||(a===18&&b>=18)?0:1)' \
  || die "Node.js >= 18.18 is required by Next.js 15 (have $(node --version))"

# ------------------------------------------------------------------ Postgres
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  PG_VERSION="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
  [ -n "$PG_VERSION" ] || die "no Postgres cluster under /etc/postgresql"
  say "starting Postgres $PG_VERSION"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start
  STARTED_PG="$PG_VERSION"
  wait_until 30 pg_isready -h 127.0.0.1 -p 5432 || die "Postgres did not start"
fi

export PGOPTIONS="-c client_min_messages=warning"   # no NOTICE chatter from idempotent SQL
say "creating database $DEMO_DB (dropped first if it exists)"
[ "$(as_postgres psql -qXtA -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$DEMO_ROLE'")" = 1 ] || MADE_ROLE=1
MADE_DB=1
as_postgres psql -qX -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DEMO_ROLE') THEN
    CREATE ROLE $DEMO_ROLE LOGIN PASSWORD '$DEMO_PASSWORD';
  ELSE
    ALTER ROLE $DEMO_ROLE LOGIN PASSWORD '$DEMO_PASSWORD';
  END IF;
END \$\$;
DROP DATABASE IF EXISTS $DEMO_DB WITH (FORCE);
CREATE DATABASE $DEMO_DB OWNER $DEMO_ROLE;
SQL
DB_URL="postgres://$DEMO_ROLE:$DEMO_PASSWORD@127.0.0.1:5432/$DEMO_DB?sslmode=disable"
# Loaded as the database owner, which then owns the tables: the app (which owns the schema)
# revokes sessions with it; the sidecar reads with it too, to keep the demo short (see
# pgsession/sql/role.sql for the least-privilege role to use in production).
psql "$DB_URL" -qX -v ON_ERROR_STOP=1 \
  -f "$ROOT/pgsession/sql/schema.sql" \
  -f "$ROOT/pgsession/sql/notify.sql" \
  -f "$ROOT/deploy/demo/seed.sql" >/dev/null

# ------------------------------------------------------------------ Redis
if ! redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG; then
  say "starting Redis on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
    --logfile "${TMPDIR:-/tmp}/authsidecar-demo-redis.log" >/dev/null
  STARTED_REDIS=1
  wait_until 15 sh -c "redis-cli -u '$REDIS_URL' ping | grep -q PONG" || die "Redis did not start"
fi
# Forget what a previous demo run cached.
redis-cli -u "$REDIS_URL" --no-auth-warning --scan --pattern "${KEY_PREFIX}*" 2>/dev/null \
  | xargs -r redis-cli -u "$REDIS_URL" --no-auth-warning del >/dev/null 2>&1 || true

# ------------------------------------------------------------------ example app
port_busy 127.0.0.1 "$APP_PORT" && die "127.0.0.1:$APP_PORT is already in use (set APP_PORT)"
port_busy 127.0.0.1 "${LISTEN_ADDR##*:}" && die "port ${LISTEN_ADDR##*:} is already in use (set LISTEN_ADDR)"
mkdir -p "$RUN_DIR"
export NEXT_TELEMETRY_DISABLED=1
cd "$APP_DIR"
LOCK_SUM="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.e2e-lock.sha256 2>/dev/null)" != "$LOCK_SUM" ]; then
  say "npm ci (examples/nextjs)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$LOCK_SUM" > node_modules/.e2e-lock.sha256
fi
say "next build"
./node_modules/.bin/next build >"$RUN_DIR/build.log" 2>&1 || { tail -n 30 "$RUN_DIR/build.log"; die "next build failed"; }
DATABASE_URL="$DB_URL" setsid ./node_modules/.bin/next start -H 127.0.0.1 -p "$APP_PORT" >"$RUN_DIR/app.log" 2>&1 &
APP_PID=$!
wait_until 60 curl -fsS -o /dev/null "http://127.0.0.1:$APP_PORT/login" || die "the app did not start (see $RUN_DIR/app.log)"
cd "$ROOT"

# ------------------------------------------------------------------ sidecar
say "go build"
go build -tags grpcnotrace -trimpath -ldflags "-s -w -X main.version=demo" -o "$RUN_DIR/authsidecar" .
env UPSTREAM_URL="http://127.0.0.1:$APP_PORT" \
  DATABASE_URL="$DB_URL" \
  REDIS_URL="$REDIS_URL" \
  LISTEN_ADDR="$LISTEN_ADDR" \
  ADMIN_ADDR="$ADMIN_ADDR" \
  SESSION_KEY_PREFIX="$KEY_PREFIX" \
  PUBLIC_PATHS="/login,/_next/static,/favicon.ico" \
  SESSION_COOKIE="session" \
  LOG_FORMAT=console \
  setsid "$RUN_DIR/authsidecar" >"$RUN_DIR/sidecar.log" 2>&1 &
SIDECAR_PID=$!
wait_until 30 curl -fsS -o /dev/null "http://$ADMIN_ADDR/readyz" || die "the sidecar did not get ready (see $RUN_DIR/sidecar.log)"

HOSTPORT="$LISTEN_ADDR"; case $HOSTPORT in :*|0.0.0.0:*) HOSTPORT="localhost:${HOSTPORT##*:}";; esac
cat <<EOF

  authsidecar is up: http://$HOSTPORT  ->  Next.js on 127.0.0.1:$APP_PORT
  demo user José Müller, demo session token: $TOKEN

  Try:
    curl -H 'Authorization: Bearer $TOKEN' http://$HOSTPORT/api/me
    curl -H 'Cookie: session=$TOKEN' http://$HOSTPORT/ | grep -o 'Signed in as.*</span>'
    curl -i http://$HOSTPORT/                       # 401: no token
    curl -N -H 'Authorization: Bearer $TOKEN' http://$HOSTPORT/api/events
    curl -H 'Authorization: Bearer $TOKEN' http://$HOSTPORT/api/auth/validate
    curl http://$HOSTPORT/api/health/redis
    curl -X POST -H 'Authorization: Bearer $TOKEN' http://$HOSTPORT/api/auth/logout   # then the token is refused
  Browser: open http://$HOSTPORT/login, set the cookie  session=$TOKEN  and open /.
  Admin:   curl http://$ADMIN_ADDR/metrics
  Logs:    $RUN_DIR/{app,sidecar}.log

  Ctrl-C stops everything this script started and removes the database $DEMO_DB, the
  role $DEMO_ROLE and the Redis keys ${KEY_PREFIX}* (DEMO_KEEP=1 keeps them).
EOF

# Stay in the foreground until Ctrl-C, or until one of the two processes dies.
while kill -0 "$APP_PID" 2>/dev/null && kill -0 "$SIDECAR_PID" 2>/dev/null; do sleep 1; done
die "a process exited: see $RUN_DIR/app.log and $RUN_DIR/sidecar.log"
