#!/usr/bin/env bash
# End-to-end test: the real Next.js example app behind the real authsidecar binary, against the
# real Redis and Postgres, checked with curl as a user would.
#
#   scripts/e2e.sh
#
# Needs: Go >= go.mod's version (checked first), Node >= 18.18 with npm (installed with
# apt-get when missing), curl, psql, a running Postgres and Redis. Environment:
#   AUTHSIDECAR_TEST_DATABASE_URL  Postgres URL of a role that may CREATE DATABASE
#                                  (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
#   AUTHSIDECAR_TEST_REDIS_URL     Redis URL (default redis://127.0.0.1:6379/0)
#   E2E_KEEP=1                     keep the work dir and logs (printed at the end)
#
# It creates a random database and a random Redis key prefix, listens on free loopback ports
# only, bounds every wait with a timeout, and removes everything it made on exit (trap).
# Last line: "e2e: N passed, M failed"; exit status non-zero on any failure.

set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/scripts/prereqs.sh"
need_go
APP_DIR="$ROOT/examples/nextjs"
ADMIN_DB_URL="${AUTHSIDECAR_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
REDIS_URL="${AUTHSIDECAR_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
TOKEN="authsidecar-demo-token"             # deploy/demo/seed.sql
EXPIRED_TOKEN="authsidecar-expired-token"  # deploy/demo/seed.sql
USER_ID="7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01"
USER_NAME="José Müller"

START_TS=$(date +%s)
RAND="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
DB_NAME="authsidecar_e2e_${RAND}"
KEY_PREFIX="e2e-${RAND}:session:"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/authsidecar-e2e.XXXXXX")"
APP_PID="" SIDECAR_PID="" COLLECTOR_PID="" DB_CREATED=0 PASS=0 FAIL=0

log() { printf 'e2e: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
  local rc=$?
  set +e
  for pid in "$SIDECAR_PID" "$APP_PID" "$COLLECTOR_PID"; do
    [ -n "$pid" ] || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  done
  for pid in "$SIDECAR_PID" "$APP_PID" "$COLLECTOR_PID"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
  done
  if [ "$DB_CREATED" = 1 ]; then
    timeout 20 psql "$ADMIN_DB_URL" -qX -v ON_ERROR_STOP=1 \
      -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 \
      || log "warning: could not drop database $DB_NAME"
  fi
  if command -v redis-cli >/dev/null 2>&1; then
    timeout 20 redis-cli -u "$REDIS_URL" --no-auth-warning --scan --pattern "e2e-${RAND}:*" 2>/dev/null \
      | timeout 20 xargs -r redis-cli -u "$REDIS_URL" --no-auth-warning del >/dev/null 2>&1
  fi
  if [ "$rc" != 0 ] || [ "$FAIL" != 0 ]; then
    for f in sidecar app; do
      [ -s "$WORK/$f.log" ] || continue
      log "---- last lines of $f.log ----"
      tail -n 40 "$WORK/$f.log" >&2
    done
  fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs "$@" until it succeeds or $1 seconds have passed.
wait_until() {
  local secs=$1; shift
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

ok()   { PASS=$((PASS + 1)); printf 'ok   %2d - %s\n' $((PASS + FAIL)) "$1"; }
nok()  { FAIL=$((FAIL + 1)); printf 'FAIL %2d - %s\n       %s\n' $((PASS + FAIL)) "$1" "$2"; }
check() { # check "description" "detail-if-failed" test-command...
  local desc=$1 detail=$2; shift 2
  if "$@"; then ok "$desc"; else nok "$desc" "$detail"; fi
}

# ---------------------------------------------------------------- prerequisites
need_node() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>18||(a===18&&b>=18)?0:1)'
}
if ! need_node; then
  log "node >= 18.18 / npm missing: apt-get install nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq >/dev/null
  timeout 600 apt-get install -y -qq nodejs npm >/dev/null
  need_node || die "node >= 18.18 (Next.js 15) with npm is required (have: $(node --version 2>/dev/null || echo none))"
fi
for tool in curl psql go; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case $tool in
      curl) pkg=curl ;; psql) pkg=postgresql-client ;; *) die "$tool is required" ;;
    esac
    log "$tool missing: apt-get install $pkg"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "$pkg" >/dev/null
  fi
done
for f in schema.sql notify.sql; do
  [ -f "$ROOT/pgsession/sql/$f" ] || die "missing pgsession/sql/$f"
done
export NEXT_TELEMETRY_DISABLED=1

# ---------------------------------------------------------------- database
log "database $DB_NAME"
timeout 20 psql "$ADMIN_DB_URL" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null \
  || die "cannot create a database through AUTHSIDECAR_TEST_DATABASE_URL (is Postgres running?)"
DB_CREATED=1
DB_URL="$(node -e 'const u=new URL(process.argv[1]);u.pathname="/"+process.argv[2];console.log(u.href)' "$ADMIN_DB_URL" "$DB_NAME")"
timeout 60 psql "$DB_URL" -qX -v ON_ERROR_STOP=1 \
  -f "$ROOT/pgsession/sql/schema.sql" \
  -f "$ROOT/pgsession/sql/notify.sql" \
  -f "$ROOT/deploy/demo/seed.sql" >"$WORK/sql.log" 2>&1 \
  || { cat "$WORK/sql.log" >&2; die "loading schema/notify/seed failed"; }

# ---------------------------------------------------------------- sidecar binary
log "go build"
(cd "$ROOT" && timeout 600 go build -tags grpcnotrace -trimpath -ldflags "-s -w -X main.version=e2e" -o "$WORK/authsidecar" .) \
  >"$WORK/gobuild.log" 2>&1 || { cat "$WORK/gobuild.log" >&2; die "go build failed"; }

# ---------------------------------------------------------------- example app
cd "$APP_DIR"
LOCK_SUM="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.e2e-lock.sha256 2>/dev/null)" != "$LOCK_SUM" ]; then
  log "npm ci (examples/nextjs)"
  timeout 600 npm ci --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1 \
    || { tail -n 30 "$WORK/npm.log" >&2; die "npm ci failed"; }
  echo "$LOCK_SUM" > node_modules/.e2e-lock.sha256
else
  log "npm ci skipped: node_modules matches package-lock.json"
fi
log "next build"
timeout 600 ./node_modules/.bin/next build >"$WORK/build.log" 2>&1 \
  || { tail -n 40 "$WORK/build.log" >&2; die "next build failed"; }

APP_PORT="$(free_port)"
PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
while [ "$ADMIN_PORT" = "$PORT" ] || [ "$ADMIN_PORT" = "$APP_PORT" ]; do ADMIN_PORT="$(free_port)"; done
while [ "$PORT" = "$APP_PORT" ]; do PORT="$(free_port)"; done

# A stand-in OpenTelemetry collector: OTLP/HTTP JSON on a free loopback port, one line per
# export in $WORK/otlp.jsonl. The sidecar and the app both export to it (check 13).
cat >"$WORK/collector.mjs" <<'EOF2'
import { createServer } from 'node:http';
import { appendFileSync } from 'node:fs';
const [out] = process.argv.slice(2);
const srv = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    if (req.method === 'POST' && req.url === '/v1/traces' && /json/.test(req.headers['content-type'] || '')) {
      appendFileSync(out, JSON.stringify(JSON.parse(body)) + '\n');
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    } else {
      res.writeHead(415).end();
    }
  });
});
srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));
EOF2
: >"$WORK/otlp.jsonl"
setsid node "$WORK/collector.mjs" "$WORK/otlp.jsonl" >"$WORK/collector.port" 2>"$WORK/collector.log" &
COLLECTOR_PID=$!
wait_until 10 test -s "$WORK/collector.port" || die "the stand-in OTLP collector did not start"
OTLP_ENDPOINT="http://127.0.0.1:$(cat "$WORK/collector.port")"
# The app verifies the sidecar's signed X-Auth-Assertion with the JWKS on the admin listener
# (fetched on the first request, so the sidecar may start after the app).
DATABASE_URL="$DB_URL" \
  OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_ENDPOINT" OTEL_EXPORTER_OTLP_PROTOCOL=http/json \
  OTEL_SERVICE_NAME=authsidecar-example-app \
  AUTHSIDECAR_JWKS_URL="http://127.0.0.1:$ADMIN_PORT/.well-known/jwks.json" \
  AUTHSIDECAR_JWT_AUDIENCE="http://127.0.0.1:$APP_PORT" \
  setsid ./node_modules/.bin/next start -H 127.0.0.1 -p "$APP_PORT" >"$WORK/app.log" 2>&1 &
APP_PID=$!
wait_until 60 curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$APP_PORT/login" \
  || die "next start did not answer on 127.0.0.1:$APP_PORT within 60s"
log "app on 127.0.0.1:$APP_PORT"
cd "$ROOT"

# ---------------------------------------------------------------- sidecar

# The identity signing key: Ed25519, PKCS#8 PEM, made for this run.
node -e 'const {generateKeyPairSync}=require("crypto");process.stdout.write(generateKeyPairSync("ed25519").privateKey.export({type:"pkcs8",format:"pem"}))' \
  >"$WORK/identity.pem"
env UPSTREAM_URL="http://127.0.0.1:$APP_PORT" \
  DATABASE_URL="$DB_URL" \
  REDIS_URL="$REDIS_URL" \
  LISTEN_ADDR="127.0.0.1:$PORT" \
  ADMIN_ADDR="127.0.0.1:$ADMIN_PORT" \
  SESSION_KEY_PREFIX="$KEY_PREFIX" \
  PUBLIC_PATHS="/login,/_next/static,/favicon.ico" \
  SESSION_COOKIE="session" \
  IDENTITY_JWT_KEY="$WORK/identity.pem" \
  OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_ENDPOINT" OTEL_EXPORTER_OTLP_PROTOCOL=http/json \
  OTEL_BSP_SCHEDULE_DELAY=200 \
  LOG_LEVEL=debug LOG_FORMAT=console \
  setsid "$WORK/authsidecar" >"$WORK/sidecar.log" 2>&1 &
SIDECAR_PID=$!
wait_until 30 curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$ADMIN_PORT/readyz" \
  || die "sidecar not ready (/readyz on 127.0.0.1:$ADMIN_PORT) within 30s"
log "sidecar $("$WORK/authsidecar" version 2>&1 | head -n1) on 127.0.0.1:$PORT (admin $ADMIN_PORT, prefix $KEY_PREFIX)"

BASE="http://127.0.0.1:$PORT"
# req NAME curl-args...: body in $WORK/NAME.body, headers in $WORK/NAME.hdr, status echoed.
req() {
  local name=$1; shift
  curl -sS --max-time 15 -o "$WORK/$name.body" -D "$WORK/$name.hdr" -w '%{http_code}' "$@" 2>"$WORK/$name.err" || true
}
has()   { grep -qF -- "$2" "$WORK/$1.body"; }
lacks() { ! grep -qF -- "$2" "$WORK/$1.body"; }
hdr()   { grep -i "^$2:" "$WORK/$1.hdr" | head -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
snip()  { head -c 200 "$WORK/$1.body" | tr '\n' ' '; }

echo "e2e: checks against $BASE"

# 1. Bearer token: page rendered server-side with the decoded non-ASCII name.
s=$(req bearer -H "Authorization: Bearer $TOKEN" "$BASE/")
check "GET / with Authorization: Bearer renders \"$USER_NAME\"" "status $s, body: $(snip bearer)" \
  eval '[ "$s" = 200 ] && has bearer "data-testid=\"user-name\">$USER_NAME<"'

# 2. Same through the session cookie.
s=$(req cookie -H "Cookie: session=$TOKEN" "$BASE/")
check "GET / with Cookie: session=<token> renders \"$USER_NAME\"" "status $s, body: $(snip cookie)" \
  eval '[ "$s" = 200 ] && has cookie "data-testid=\"user-name\">$USER_NAME<"'

# 3. Decoded identity as the app sees it (JSON route).
s=$(req me -H "Authorization: Bearer $TOKEN" "$BASE/api/me")
check "GET /api/me: app decodes firstName/lastName/id from identity headers" "status $s, body: $(snip me)" \
  eval '[ "$s" = 200 ] && has me "\"firstName\":\"José\"" && has me "\"lastName\":\"Müller\"" && has me "\"id\":\"$USER_ID\""'

# 3b. Signed identity: the app verified X-Auth-Assertion with the sidecar's JWKS (jose).
check "GET /api/me: the app verified the signed X-Auth-Assertion with the JWKS (\"verified\":true)" "status $s, body: $(snip me)" \
  eval 'has me "\"verified\":true"'
s=$(req jwks "$BASE/.well-known/authsidecar/jwks.json")
check "GET /.well-known/authsidecar/jwks.json: the public keys, no token needed" "status $s, body: $(snip jwks)" \
  eval '[ "$s" = 200 ] && has jwks "\"kty\":\"OKP\"" && has jwks "\"alg\":\"EdDSA\"" && lacks jwks "\"d\""'
s=$(req direct -H "X-User-Id: $USER_ID" -H "X-Session-Id: 2f0b7c9e-8d4a-4e1b-b6f3-5a9d0c1e2b01" \
  -H "X-Auth-Assertion: eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.AAAA" "http://127.0.0.1:$APP_PORT/api/me")
check "the app reached directly with forged identity headers and assertion is 401" "status $s, body: $(snip direct)" \
  eval '[ "$s" = 401 ]'

# 4. No token.
s=$(req none "$BASE/")
check "GET / without a token is 401 with WWW-Authenticate: Bearer" "status $s, WWW-Authenticate: '$(hdr none www-authenticate)', body: $(snip none)" \
  eval '[ "$s" = 401 ] && hdr none www-authenticate | grep -qi "^bearer" && has none unauthorized'

# 5. Expired session.
s=$(req expired -H "Authorization: Bearer $EXPIRED_TOKEN" "$BASE/")
check "GET / with an expired session's token is 401" "status $s" eval '[ "$s" = 401 ]'

# 6. Client-sent identity headers never reach the app.
s=$(req spoof -H "Authorization: Bearer $TOKEN" -H "X-User-Id: attacker" -H "X-User-First-Name: Mallory" \
  -H "X-Session-Id: 00000000-0000-0000-0000-000000000000" "$BASE/api/me")
check "client-sent X-User-Id / X-User-First-Name / X-Session-Id are stripped" "status $s, body: $(snip spoof)" \
  eval '[ "$s" = 200 ] && has spoof "\"id\":\"$USER_ID\"" && lacks spoof attacker && lacks spoof Mallory && lacks spoof 00000000-0000'
s=$(req spoofpub -H "X-User-Id: attacker" "$BASE/login")
check "public /login without a token is 200 (PUBLIC_PATHS)" "status $s" eval '[ "$s" = 200 ] && has spoofpub "Sign in"'

# 7. VALIDATE_PATH for nginx auth_request / Traefik forwardAuth.
s=$(req validate -H "Authorization: Bearer $TOKEN" "$BASE/api/auth/validate")
check "GET /api/auth/validate: 200, JSON user, X-User-First-Name: Jos%C3%A9 on the response" \
  "status $s, X-User-First-Name: '$(hdr validate x-user-first-name)', body: $(snip validate)" \
  eval '[ "$s" = 200 ] && has validate "\"firstName\":\"José\"" && [ "$(hdr validate x-user-first-name)" = "Jos%C3%A9" ]'
s=$(req validate401 "$BASE/api/auth/validate")
check "GET /api/auth/validate without a token is 401" "status $s" eval '[ "$s" = 401 ]'

# 8. Public static asset referenced by the page, without a token.
ASSET="$(grep -o '/_next/static/[^"?]*\.js' "$WORK/bearer.body" | head -n1 || true)"
s=$(req asset "$BASE$ASSET")
check "page asset ${ASSET:-<none found>} loads without a token (public prefix /_next/static)" "status $s" \
  eval '[ -n "$ASSET" ] && [ "$s" = 200 ] && [ -s "$WORK/asset.body" ]'

# 9. Dot-segments cannot smuggle a protected path through the public prefix.
s=$(req dotseg --path-as-is "$BASE/_next/static/../../api/me")
check "/_next/static/../../api/me without a token is 401 (dot-segments resolved before matching)" "status $s, body: $(snip dotseg)" \
  eval '[ "$s" = 401 ]'

# 10. Server-sent events stream through unbuffered: first event well before the end.
cat >"$WORK/sse.mjs" <<'EOF'
const [url, token] = process.argv.slice(2);
const t0 = performance.now();
const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15000) });
let first = null, text = '';
const dec = new TextDecoder();
for await (const chunk of res.body) {
  text += dec.decode(chunk, { stream: true });
  if (first === null && text.includes('data:')) first = performance.now() - t0;
}
const total = performance.now() - t0;
const events = (text.match(/^data:/gm) || []).length;
console.log(JSON.stringify({ status: res.status, type: res.headers.get('content-type'), first: Math.round(first), total: Math.round(total), events }));
EOF
SSE="$(cd "$WORK" && timeout 30 node sse.mjs "$BASE/api/events" "$TOKEN" 2>&1 || true)"
check "SSE /api/events: text/event-stream, first event arrives before the stream ends ($SSE)" "$SSE" \
  node -e 'const r=JSON.parse(process.argv[1]);process.exit(r.status===200&&/^text\/event-stream/.test(r.type)&&r.events>=5&&r.first!==null&&r.first<r.total-800?0:1)' "$SSE"

# 11. The real Redis is in use: health document, and the session cached under the prefix.
s=$(req health "$BASE/api/health/redis")
check "GET /api/health/redis: 200, status healthy, sessionCache enabled" "status $s, body: $(snip health)" \
  eval '[ "$s" = 200 ] && has health "\"status\":\"healthy\"" && has health "\"enabled\":true"'
TOKEN_HASH="$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)"
redis_exists() { timeout 10 redis-cli -u "$REDIS_URL" --no-auth-warning exists "${KEY_PREFIX}{${TOKEN_HASH}}" 2>&1; }
if command -v redis-cli >/dev/null 2>&1; then
  R="$(redis_exists)"
  check "session cached in Redis under SESSION_KEY_PREFIX (key ${KEY_PREFIX}{<sha256>})" "EXISTS answered '$R'" eval '[ "$R" = 1 ]'
fi

# 12. The app joins the sidecar's trace: a client's traceparent is continued by the sidecar's
# server span; the app's own span (Next.js, exported by @vercel/otel from instrumentation.js)
# is a child of the sidecar's span for the request it forwarded.
TRACE_ID="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
s=$(req traced -H "Authorization: Bearer $TOKEN" -H "traceparent: 00-$TRACE_ID-00f067aa0ba902b7-01" "$BASE/api/me")
cat >"$WORK/trace.mjs" <<'EOF2'
import { readFileSync } from 'node:fs';
const [file, traceId, clientParent] = process.argv.slice(2);
// OTLP JSON carries ids as hex; base64 is accepted too.
const hex = (v) => (v && /^[0-9a-f]+$/i.test(v) && (v.length === 32 || v.length === 16) ? v.toLowerCase() : Buffer.from(v || '', 'base64').toString('hex'));
const kind = (k) => (typeof k === 'number' ? k : { SPAN_KIND_SERVER: 2, SPAN_KIND_CLIENT: 3 }[k] || 0);
const spans = [];
for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
  for (const rs of JSON.parse(line).resourceSpans || []) {
    const service = (rs.resource?.attributes || []).find((a) => a.key === 'service.name')?.value?.stringValue;
    for (const ss of rs.scopeSpans || []) for (const s of ss.spans || []) {
      spans.push({ service, name: s.name, kind: kind(s.kind), trace: hex(s.traceId), id: hex(s.spanId), parent: hex(s.parentSpanId) });
    }
  }
}
const inTrace = spans.filter((s) => s.trace === traceId);
const server = inTrace.find((s) => s.service === 'authsidecar' && s.kind === 2 && s.parent === clientParent);
const client = server && inTrace.find((s) => s.service === 'authsidecar' && s.kind === 3 && s.parent === server.id);
const app = client && inTrace.filter((s) => s.service === 'authsidecar-example-app' && s.parent === client.id);
const children = server ? inTrace.filter((s) => s.parent === server.id).map((s) => s.name).sort() : [];
console.log(JSON.stringify({ spans: inTrace.length, server: server?.name, children, app: (app || []).map((s) => s.name) }));
process.exit(server && client && app.length > 0 ? 0 : 1);
EOF2
trace_joined() { node "$WORK/trace.mjs" "$WORK/otlp.jsonl" "$TRACE_ID" 00f067aa0ba902b7 >"$WORK/trace.json"; }
wait_until 20 trace_joined || true
TRACE="$(cat "$WORK/trace.json" 2>/dev/null)"
check "OpenTelemetry: the app's span is a child of the sidecar's span, in the client's trace ($TRACE)" \
  "status $s; collector got $(wc -l <"$WORK/otlp.jsonl") exports" eval '[ "$s" = 200 ] && trace_joined'

# 13. Logout revokes the session: the very next request with the same token is refused.
s=$(req logout -X POST -H "Authorization: Bearer $TOKEN" "$BASE/api/auth/logout")
check "POST /api/auth/logout with the token is 200" "status $s, body: $(snip logout)" eval '[ "$s" = 200 ]'
if command -v redis-cli >/dev/null 2>&1; then
  R="$(redis_exists)"
  check "session evicted from Redis by the time logout answered" "EXISTS answered '$R'" eval '[ "$R" = 0 ]'
fi
s=$(req after -H "Authorization: Bearer $TOKEN" "$BASE/")
check "same token right after logout is 401 (Bearer)" "status $s" eval '[ "$s" = 401 ]'
s=$(req aftercookie -H "Cookie: session=$TOKEN" "$BASE/api/me")
check "same token right after logout is 401 (cookie)" "status $s" eval '[ "$s" = 401 ]'
REVOKED="$(timeout 10 psql "$DB_URL" -qXtA -c "SELECT revoked_at IS NOT NULL FROM platform.user_sessions WHERE id = '2f0b7c9e-8d4a-4e1b-b6f3-5a9d0c1e2b01'" 2>&1 || true)"
check "session row revoked in Postgres by the app" "revoked: $REVOKED" eval '[ "$REVOKED" = t ]'

echo "e2e: took $(( $(date +%s) - START_TS ))s"
echo "e2e: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
