#!/usr/bin/env bash
# The benchmark (issue 7): what authentication costs next to a bare httputil.ReverseProxy.
#
#   scripts/bench.sh            # about 4 minutes on 2 cores; loopback only, every load bounded
#
# It creates its own database (pgsession/sql/schema.sql + scripts/bench-seed.sql), starts a
# 1 KB upstream, the fair baseline (a bare ReverseProxy with the sidecar's Transport and copy
# buffer pool), ReverseProxy as shipped, nginx proxy_pass and nginx auth_request asking the
# sidecar (when nginx is installable) and the sidecar in its modes, drives each with wrk in
# alternating rounds and prints one table: req/s, p50, p99, the ratio to the fair bare proxy
# of the same run, the single-connection p50 added over it, and CPU µs per request. Each
# round also measures one Redis and one Postgres round trip (benchserver rtt); a second table
# checks the targets of issue 13 against them. Then Redis MEMORY USAGE
# of one cached session (111-byte user agent) and the hit rate of the first WARM_SECONDS with
# and without CACHE_WARM_ON_START. Everything it started, its database and its Redis keys are
# removed on exit.
#
# Knobs (environment): ROUNDS=5 DURATION=3 (seconds per wrk round) CONNS=64 THREADS=2
# SINGLE=2 (seconds of each round's single-connection run) WARM_SECONDS=30 PORT_BASE=18100
# MISS_TOKENS=40000 ACTIVE_TOKENS=10000 KEEP=1 (keep the work directory and logs)
# BENCH_REDIS_OP_TIMEOUT=1s (the sidecars' REDIS_OP_TIMEOUT; see sidecar() below).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_redis
ensure_postgres
command -v wrk >/dev/null || apt_install wrk
command -v nginx >/dev/null || apt_install nginx-light || apt_install nginx ||
  echo "bench: nginx not installable; its row is skipped" >&2

ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-3} CONNS=${CONNS:-64} THREADS=${THREADS:-2}
SINGLE=${SINGLE:-2} WARM_SECONDS=${WARM_SECONDS:-30} PORT_BASE=${PORT_BASE:-18100}
MISS_TOKENS=${MISS_TOKENS:-40000} ACTIVE_TOKENS=${ACTIVE_TOKENS:-10000}
REDIS_URL_BENCH=$AUTHSIDECAR_TEST_REDIS_URL
HOT="Authorization: Bearer bench-hot-token"

work=$(mktemp -d /tmp/authsidecar-bench.XXXXXX)
chmod 755 "$work"
db=authsidecar_bench_$$
prefix="bench$$:"
admin_db=$AUTHSIDECAR_TEST_DATABASE_URL
bench_db=$(printf %s "$admin_db" | sed -E "s#^([a-z]+://[^/]*)/[^?]*#\1/$db#")
declare -A pid port
nextport=$PORT_BASE

cleanup() {
  set +e
  for name in "${!pid[@]}"; do kill "${pid[$name]}" 2>/dev/null; done
  for name in "${!pid[@]}"; do wait "${pid[$name]}" 2>/dev/null; done
  psql "$admin_db" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  redis-cli -u "$REDIS_URL_BENCH" --scan --pattern "${prefix}*" 2>/dev/null |
    xargs -r -n 500 redis-cli -u "$REDIS_URL_BENCH" del >/dev/null 2>&1
  if [ -n "${KEEP:-}" ]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench: building" >&2
go build -o "$work/authsidecar" .
go build -o "$work/benchserver" ./scripts/benchserver

echo "bench: seeding $db ($ACTIVE_TOKENS active + $MISS_TOKENS miss-path sessions)" >&2
psql "$admin_db" -qc "CREATE DATABASE $db" >/dev/null
psql "$bench_db" -q -f pgsession/sql/schema.sql >/dev/null
psql "$bench_db" -q -v active="$ACTIVE_TOKENS" -v miss="$MISS_TOKENS" -f scripts/bench-seed.sql >/dev/null
seq 1 "$MISS_TOKENS" | sed 's/^/bench-m-/' >"$work/miss.tokens"
seq 1 "$ACTIVE_TOKENS" | sed 's/^/bench-a-/' >"$work/active.tokens"

# tokens.lua: every request presents the next token of a file (args: file, thread count),
# threads interleaved so no token is sent twice before the file wraps.
cat >"$work/tokens.lua" <<'EOF'
local tokens, i, step, nthreads = {}, 0, 1, 0
function setup(thread) thread:set("id", nthreads); nthreads = nthreads + 1 end
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  step, i = tonumber(args[2]), id
end
function request()
  local t = tokens[i % #tokens + 1]
  i = i + step
  return wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. t })
end
EOF

# await name url: wait until the process answers HTTP on url.
await() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "$2" && return
    kill -0 "${pid[$1]}" 2>/dev/null || { echo "bench: $1 exited; its log:" >&2; tail -5 "$work/$1.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: $1 did not start" >&2; exit 1
}

start() { # start name cmd...: run in the background, stderr to $work/name.log
  local name=$1; shift
  port[$name]=$nextport; nextport=$((nextport + 2))
  "$@" >"$work/$name.log" 2>&1 &
  pid[$name]=$!
}

stop() {
  kill "${pid[$1]}" 2>/dev/null || true
  wait "${pid[$1]}" 2>/dev/null || true
  unset "pid[$1]"
}

# sidecar name VAR=value...: the sidecar with default settings but those given, and two
# (REDIS_OP_TIMEOUT=${BENCH_REDIS_OP_TIMEOUT:-1s}, REDIS_IDLE_TIMEOUT=10m). On a loaded 2-core
# machine a burst of 64 lookups at the start of a wrk run passes the default 100 ms in a
# bunch, which opens the breaker, and the row then measures Postgres for BREAKER_OPEN_FOR:
# the Redis rows are meant to measure Redis. Between its turns a row idles for about a
# minute; at the default 30 s its pool would be closed and redialled at every round, where
# under steady traffic it never idles. The summary notes any breaker that opened anyway.
sidecar() {
  local name=$1; shift
  port[$name]=$nextport; nextport=$((nextport + 2))
  env UPSTREAM_URL="http://127.0.0.1:${port[upstream]}" DATABASE_URL="$bench_db" \
    REDIS_URL="$REDIS_URL_BENCH" SESSION_KEY_PREFIX="${prefix}$name:" REDIS_IDLE_TIMEOUT=10m \
    REDIS_OP_TIMEOUT="${BENCH_REDIS_OP_TIMEOUT:-1s}" \
    LISTEN_ADDR="127.0.0.1:${port[$name]}" ADMIN_ADDR="127.0.0.1:$((port[$name] + 1))" \
    "$@" "$work/authsidecar" >"$work/$name.log" 2>&1 &
  pid[$name]=$!
  await "$name" "http://127.0.0.1:${port[$name]}/api/health/redis"
}

start upstream "$work/benchserver" upstream -listen "127.0.0.1:$nextport" -size 1024
await upstream "http://127.0.0.1:${port[upstream]}/"
# bare: the fair baseline, the sidecar's Transport and copy-buffer pool; stock: ReverseProxy
# as it comes (a new 32 KiB buffer per request), same Transport.
start bare "$work/benchserver" bare -listen "127.0.0.1:$nextport" -upstream "http://127.0.0.1:${port[upstream]}"
await bare "http://127.0.0.1:${port[bare]}/"
start stock "$work/benchserver" stock -listen "127.0.0.1:$nextport" -upstream "http://127.0.0.1:${port[upstream]}"
await stock "http://127.0.0.1:${port[stock]}/"
targets=(bare stock)
sidecar local                                   # the default: in-process cache hit
sidecar redis LOCAL_CACHE_TTL=0                 # every request: one MGET
sidecar postgres LOCAL_CACHE_TTL=0 REDIS_URL=   # every request: one Postgres query
sidecar local-warn LOG_LEVEL=warn               # local hit, access log off
# The hot token flatters the two modes above: concurrent requests for one token share one
# lookup (singleflight). Distinct tokens, as real users send, pay one lookup each.
# SESSION_CACHE_TTL=30m: the rounds last longer than the default 5 min, after which the warmed
# sessions would leave Redis mid-run and this row would measure Postgres refilling them.
sidecar redis-distinct LOCAL_CACHE_TTL=0 CACHE_WARM_ON_START=true SESSION_CACHE_TTL=30m
sidecar postgres-distinct LOCAL_CACHE_TTL=0 REDIS_URL=
sidecar authreq                                 # behind nginx auth_request: in-process hits
if command -v nginx >/dev/null; then
  # nginx proxy_pass; and nginx auth_request asking the sidecar's VALIDATE_PATH before its
  # proxy_pass, identity headers copied as in deploy/nginx/auth_request.conf: what an nginx
  # shop would deploy instead of the sidecar on the data path.
  port[nginx]=$nextport; port[nginx-authreq]=$((nextport + 1)); nextport=$((nextport + 2))
  mkdir -p "$work/nginx"
  cat >"$work/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
  upstream app { server 127.0.0.1:${port[upstream]}; keepalive 128; }
  upstream sidecar { server 127.0.0.1:${port[authreq]}; keepalive 128; }
  server {
    listen 127.0.0.1:${port[nginx]};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:${port[nginx-authreq]};
    location / {
      auth_request /_authsidecar_validate;
      auth_request_set \$user_id \$upstream_http_x_user_id;
      auth_request_set \$user_email \$upstream_http_x_user_email;
      auth_request_set \$user_username \$upstream_http_x_user_username;
      auth_request_set \$user_first_name \$upstream_http_x_user_first_name;
      auth_request_set \$user_last_name \$upstream_http_x_user_last_name;
      auth_request_set \$session_id \$upstream_http_x_session_id;
      auth_request_set \$session_expires \$upstream_http_x_session_expires_at;
      proxy_set_header X-User-Id \$user_id;
      proxy_set_header X-User-Email \$user_email;
      proxy_set_header X-User-Username \$user_username;
      proxy_set_header X-User-First-Name \$user_first_name;
      proxy_set_header X-User-Last-Name \$user_last_name;
      proxy_set_header X-Session-Id \$session_id;
      proxy_set_header X-Session-Expires-At \$session_expires;
      proxy_set_header X-Auth-Signature "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass http://app;
    }
    location = /_authsidecar_validate {
      internal;
      proxy_pass http://sidecar/api/auth/validate;
      proxy_method GET;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Authorization \$http_authorization;
      proxy_set_header Cookie \$http_cookie;
      proxy_set_header X-Original-URI \$request_uri;
      proxy_http_version 1.1; proxy_set_header Connection "";
    }
  }
}
EOF
  "$(command -v nginx)" -p "$work" -c "$work/nginx.conf" -g 'daemon off;' >"$work/nginx.log" 2>&1 &
  pid[nginx]=$!
  await nginx "http://127.0.0.1:${port[nginx]}/"
  pid[nginx-authreq]=${pid[nginx]}
  targets+=(nginx nginx-authreq)
fi
for _ in $(seq 300); do grep -q '"cache warmed"' "$work/redis-distinct.log" && break; sleep 0.1; done
grep -q '"cache warmed"' "$work/redis-distinct.log" || { echo "bench: warming did not finish" >&2; exit 1; }
targets+=(local redis redis-distinct postgres postgres-distinct miss local-warn)
for t in "${targets[@]}"; do
  { [ "$t" = miss ] || [ "${t%-distinct}" != "$t" ]; } && continue
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$HOT" "http://127.0.0.1:${port[$t]}/")
  [ "$code" = 200 ] || { echo "bench: $t answered $code to the hot token" >&2; exit 1; }
done
for t in local nginx-authreq; do
  [ -n "${port[$t]:-}" ] || continue
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[$t]}/")
  [ "$code" = 401 ] || { echo "bench: $t answered $code without a token" >&2; exit 1; }
done

# The miss path needs tokens no cache has seen: a fresh sidecar with a fresh Redis prefix
# and no local cache for every round, each token sent once (the file is larger than a round).
miss_round=0 miss_opened=0
fresh_miss() {
  if [ -n "${pid[miss]:-}" ]; then
    stop miss
    miss_opened=$((miss_opened + $(grep -c '"to":"open"' "$work/miss.log" || true)))
  fi
  miss_round=$((miss_round + 1))
  nextport=$((PORT_BASE + 60))
  # A fresh process, but not a cold pool: REDIS_MIN_IDLE=10 (the pool's size) dials it at start.
  sidecar miss LOCAL_CACHE_TTL=0 SESSION_KEY_PREFIX="${prefix}miss$miss_round:" REDIS_MIN_IDLE=10
  sleep 0.5
}

# cpu_ticks target: user+system CPU ticks used so far by the processes serving target (for
# nginx its workers, for nginx auth_request the workers and the sidecar behind them).
cpu_ticks() {
  local pids=${pid[$1]}
  case $1 in
  nginx) pids="$pids $(pgrep -P "${pid[nginx]}" | tr '\n' ' ')" ;;
  nginx-authreq) pids="$pids $(pgrep -P "${pid[nginx]}" | tr '\n' ' ') ${pid[authreq]}" ;;
  esac
  local sum=0 p
  for p in $pids; do sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$sum"
}

# load label target round conns threads seconds: one wrk run, its output kept.
load() {
  local label=$1 t=$2 r=$3 c=$4 th=$5 d=$6 args=()
  if [ "$t" = miss ]; then
    fresh_miss
    args=(-s "$work/tokens.lua" "http://127.0.0.1:${port[miss]}/" -- "$work/miss.tokens" "$th")
  elif [ "${t%-distinct}" != "$t" ]; then
    args=(-s "$work/tokens.lua" "http://127.0.0.1:${port[$t]}/" -- "$work/active.tokens" "$th")
  else
    args=(-H "$HOT" "http://127.0.0.1:${port[$t]}/")
  fi
  local before after
  before=$(cpu_ticks "$t")
  timeout $((d + 30)) wrk -t"$th" -c"$c" -d"${d}s" --timeout 5s --latency "${args[@]}" >"$work/$label.$t.$r.txt"
  after=$(cpu_ticks "$t")
  echo "$((after - before))" >"$work/$label.$t.$r.cpu"
  if grep -q "Non-2xx\|Socket errors" "$work/$label.$t.$r.txt"; then
    echo "bench: $t round $r: $(grep "Non-2xx\|Socket errors" "$work/$label.$t.$r.txt" | tr -s ' ')" >&2
  fi
}

echo "bench: warming up every target" >&2
for t in "${targets[@]}"; do [ "$t" = miss ] || load warmup "$t" 0 "$CONNS" "$THREADS" 1; done
# A cold burst of 64 lookups dials the Redis pool under REDIS_OP_TIMEOUT; on a loaded machine
# that can open the breaker, and the row would then measure Postgres for BREAKER_OPEN_FOR.
# Start the rounds with every breaker closed; the summary says whether one opened later.
for t in redis redis-distinct; do
  for _ in $(seq 40); do
    curl -s -o /dev/null -H "$HOT" "http://127.0.0.1:${port[$t]}/"
    curl -s "http://127.0.0.1:${port[$t]}/api/health/redis" | grep -q '"breaker":"closed"' && break
    sleep 0.5
  done
done
declare -A opened0
for t in local redis redis-distinct; do opened0[$t]=$(grep -c '"to":"open"' "$work/$t.log" || true); done
for r in $(seq "$ROUNDS"); do
  echo "bench: round $r of $ROUNDS: ${#targets[@]} targets × (${DURATION}s at $CONNS connections + ${SINGLE}s at 1)" >&2
  for t in "${targets[@]}"; do
    load conc "$t" "$r" "$CONNS" "$THREADS" "$DURATION"
    load single "$t" "$r" 1 1 "$SINGLE"
  done
  "$work/benchserver" rtt -redis "$REDIS_URL_BENCH" -postgres "$bench_db" -duration 1s >"$work/rtt.$r.txt"
done

# us file pct: a latency percentile from wrk's --latency output, in microseconds.
us() {
  awk -v p="$2%" '$1 == p {
    v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
    f = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : 60000000
    printf "%.0f\n", v * f }' "$1"
}
rps() { awk '/^Requests\/sec/ { printf "%.0f\n", $2 }' "$1"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
fmt_us() { awk -v v="$1" 'BEGIN { if (v >= 1000) printf "%.2f ms", v / 1000; else printf "%d µs", v }'; }

declare -A RPS P50 P99 S50 CPU
for t in "${targets[@]}"; do
  RPS[$t]=$(for f in "$work"/conc."$t".*.txt; do rps "$f"; done | median)
  P50[$t]=$(for f in "$work"/conc."$t".*.txt; do us "$f" 50; done | median)
  P99[$t]=$(for f in "$work"/conc."$t".*.txt; do us "$f" 99; done | median)
  S50[$t]=$(for f in "$work"/single."$t".*.txt; do us "$f" 50; done | median)
  # CPU µs per request of the serving processes under load: ticks ÷ requests, per round.
  CPU[$t]=$(for f in "$work"/conc."$t".*.txt; do
    awk -v ticks="$(cat "${f%.txt}.cpu")" -v hz="$(getconf CLK_TCK)" '/requests in/ { printf "%.1f\n", ticks / hz * 1e6 / $1 }' "$f"
  done | median)
done
# rtt name: the median over rounds of one round trip, in µs.
rtt() { for f in "$work"/rtt.*.txt; do tr ' ' '\n' <"$f" | awk -F= -v k="$1" '$1 == k { print $2 }'; done | median; }

declare -A what=(
  [bare]="bare ReverseProxy, sidecar's Transport + pool (fair)"
  [stock]="bare ReverseProxy as shipped (no buffer pool)"
  [nginx]="nginx proxy_pass"
  [nginx-authreq]="nginx auth_request → VALIDATE_PATH, then proxy_pass"
  [local]="sidecar, in-process cache hit"
  [redis]="sidecar, Redis hit, one token (LOCAL_CACHE_TTL=0)"
  [redis-distinct]="sidecar, Redis hit, 10k distinct tokens"
  [postgres]="sidecar, Postgres only, one token (no Redis, no local)"
  [postgres-distinct]="sidecar, Postgres only, 10k distinct tokens"
  [miss]="sidecar, miss path (distinct tokens, fresh Redis)"
  [local-warn]="sidecar, in-process hit, LOG_LEVEL=warn"
)
echo
echo "authsidecar benchmark — $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(go version | cut -d' ' -f3)"
echo "wrk -t$THREADS -c$CONNS ${DURATION}s and -t1 -c1 ${SINGLE}s per target per round, $ROUNDS alternating rounds, medians; 1 KB responses; $(date -u +%Y-%m-%dT%H:%MZ)"
echo
printf '| %-56s | %7s | %9s | %9s | %6s | %12s | %12s | %10s |\n' target req/s p50 p99 ×bare "1-conn p50" "added p50" "CPU µs/req"
echo "|$(printf -- '-%.0s' {1..58})|---------|-----------|-----------|--------|--------------|--------------|------------|"
for t in "${targets[@]}"; do
  ratio=$(awk -v a="${RPS[$t]}" -v b="${RPS[bare]}" 'BEGIN { printf "%.2f×", a / b }')
  added=$(( S50[$t] - S50[bare] ))
  if [ "$t" = bare ]; then added="—"; elif [ $added -ge 0 ]; then added="+$(fmt_us $added)"; else added="−$(fmt_us $((-added)))"; fi
  printf '| %-56s | %7s | %9s | %9s | %6s | %12s | %12s | %10s |\n' "${what[$t]}" "${RPS[$t]}" \
    "$(fmt_us "${P50[$t]}")" "$(fmt_us "${P99[$t]}")" "$ratio" "$(fmt_us "${S50[$t]}")" "$added" "${CPU[$t]}"
done
echo
bare_spread=$(for f in "$work"/single.bare.*.txt; do us "$f" 50; done | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%d–%d µs", lo, hi }')
RR=$(rtt redis_get_goredis) RRAW=$(rtt redis_get_raw) RPING=$(rtt redis_ping_raw) PG=$(rtt pg_select1_pgx)
echo "One round trip over one kept connection, median of the rounds' medians: Redis GET $RR µs through go-redis ($RRAW µs on a raw socket, PING $RPING µs); Postgres prepared SELECT 1 $PG µs through pgx."
echo "The fair bare proxy's own single-connection p50, lowest to highest round: $bare_spread."
echo
# The targets (issue 13): the throughput ratio to the fair bare proxy at $CONNS connections,
# and the single-connection p50 added over it. The latency bounds use the go-redis and pgx
# round trips above: the floor for a Go client of the same libraries.
echo "| path | ×fair bare | target | added 1-conn p50 | target | met? |"
echo "|---|---|---|---|---|---|"
goal() { # goal target min-ratio max-added-µs
  local t=$1 minr=$2 maxa=$3
  [ -n "${RPS[$t]:-}" ] || return 0
  awk -v a="${RPS[$t]}" -v b="${RPS[bare]}" -v s="${S50[$t]}" -v sb="${S50[bare]}" -v minr="$minr" -v maxa="$maxa" -v what="${what[$t]}" 'BEGIN {
    r = a / b; add = s - sb; okr = (r >= minr); oka = (add <= maxa)
    if (okr && oka) v = "met"
    else if (okr) v = sprintf("latency missed by %d µs", add - maxa)
    else if (oka) v = sprintf("ratio missed by %.2f×", minr - r)
    else v = sprintf("missed by %.2f× and %d µs", minr - r, add - maxa)
    printf "| %s | %.2f× | ≥ %.2f× | %+d µs | ≤ +%d µs | %s |\n", what, r, minr, add, maxa, v }'
}
goal local 0.97 15
goal redis-distinct 0.90 "$(awk -v r="$RR" 'BEGIN { printf "%d", r + 25 }')"
goal postgres-distinct 0.70 "$(awk -v r="$RR" -v p="$PG" 'BEGIN { printf "%d", r + p + 50 }')"
goal miss 0.55 "$(awk -v r="$RR" -v p="$PG" 'BEGIN { printf "%d", r + p + 50 }')"
echo
awk -v a="${RPS[local]}" -v b="${RPS[local-warn]}" -v sa="${S50[local]}" -v sb="${S50[local-warn]}" 'BEGIN {
  printf "Access log cost (in-process hit, LOG_LEVEL=info vs warn): %+.1f%% req/s, %+d µs single-connection p50\n",
    (a - b) / b * 100, sa - sb }'

hot_hash=$(printf %s bench-hot-token | sha256sum | cut -d' ' -f1)
key="${prefix}redis:{$hot_hash}"  # the session key carries a hash tag (redis.go)
echo "Redis MEMORY USAGE of one cached session (111-byte user agent): $(redis-cli -u "$REDIS_URL_BENCH" memory usage "$key") bytes (value $(redis-cli -u "$REDIS_URL_BENCH" strlen "$key") bytes, encoding $(redis-cli -u "$REDIS_URL_BENCH" object encoding "$key"))"

# Cache warming: a fresh prefix, then WARM_SECONDS of traffic over the active sessions
# (each seen about once every ACTIVE_TOKENS requests), starting as soon as the listener is up.
misses=$(curl -s "http://127.0.0.1:${port[redis-distinct]}/api/health/redis" | sed -n 's/.*"misses":\([0-9]*\).*/\1/p')
[ "${misses:-0}" = 0 ] || echo "Note: the distinct-token Redis row had $misses Postgres lookups (sessions expired from Redis, or the breaker open)"
for t in local redis redis-distinct; do
  n=$(( $(grep -c '"to":"open"' "$work/$t.log" || true) - opened0[$t] ))
  [ "$n" = 0 ] || echo "Note: the Redis breaker of the $t row opened $n time(s) during the rounds (REDIS_OP_TIMEOUT passed): for BREAKER_OPEN_FOR each, that row measured Postgres"
done
n=$((miss_opened + $(grep -c '"to":"open"' "$work/miss.log" 2>/dev/null || true)))
[ "$n" = 0 ] || echo "Note: the miss row's Redis breaker opened $n time(s) over its $miss_round fresh sidecars (REDIS_OP_TIMEOUT passed while the pool dialled): those lookups went to Postgres and filled nothing"
stop local; stop local-warn; stop redis; stop postgres; stop redis-distinct; stop postgres-distinct; stop authreq
[ -n "${pid[miss]:-}" ] && stop miss
# The seed's activity is as old as the run by now: warming reads sessions active within
# SESSION_CACHE_TTL, so make the active ones active again.
psql "$bench_db" -qc "UPDATE platform.user_sessions SET last_activity_at = now() WHERE last_activity_at > now() - interval '1 hour'" >/dev/null
for w in false true; do
  name=warm-$w
  nextport=$((PORT_BASE + 80))
  sidecar "$name" CACHE_WARM_ON_START=$w
  timeout $((WARM_SECONDS + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${WARM_SECONDS}s" -s "$work/tokens.lua" \
    "http://127.0.0.1:${port[$name]}/" -- "$work/active.tokens" "$THREADS" >"$work/$name.txt"
  health=$(curl -s "http://127.0.0.1:${port[$name]}/api/health/redis")
  hits=$(printf %s "$health" | sed -n 's/.*"hits":\([0-9]*\).*/\1/p')
  misses=$(printf %s "$health" | sed -n 's/.*"misses":\([0-9]*\).*/\1/p')
  warmed=$(grep -o '"sessions":[0-9]*' "$work/$name.log" | head -1 | cut -d: -f2 || true)
  awk -v h="$hits" -v m="$misses" -v w="$w" -v s="$WARM_SECONDS" -v n="${warmed:-0}" -v r="$(rps "$work/$name.txt")" 'BEGIN {
    printf "Hit rate of the first %ds, CACHE_WARM_ON_START=%-5s: %.2f%% (%d hits, %d misses, %d req/s%s)\n",
      s, w, h / (h + m) * 100, h, m, r, (w == "true") ? sprintf(", %d sessions warmed", n) : "" }'
  stop "$name"
done
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Command: scripts/bench.sh (ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS THREADS=$THREADS SINGLE=$SINGLE WARM_SECONDS=$WARM_SECONDS)"
