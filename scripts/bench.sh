#!/usr/bin/env bash
# The benchmark (issue 7): what authentication costs next to a bare httputil.ReverseProxy.
#
#   scripts/bench.sh            # about 4 minutes on 2 cores; loopback only, every load bounded
#
# It creates its own database (pgsession/sql/schema.sql + scripts/bench-seed.sql), starts a
# 1 KB upstream, the bare ReverseProxy baseline (same Transport as the sidecar), nginx
# proxy_pass (when installable) and the sidecar in its modes, drives each with wrk in
# alternating rounds and prints one table: req/s, p50, p99, the ratio to the bare proxy of the
# same run, and the single-connection p50 added over the bare proxy. Then Redis MEMORY USAGE
# of one cached session (111-byte user agent) and the hit rate of the first WARM_SECONDS with
# and without CACHE_WARM_ON_START. Everything it started, its database and its Redis keys are
# removed on exit.
#
# Knobs (environment): ROUNDS=5 DURATION=3 (seconds per wrk round) CONNS=64 THREADS=2
# SINGLE=2 (seconds of each round's single-connection run) WARM_SECONDS=30 PORT_BASE=18100
# MISS_TOKENS=40000 ACTIVE_TOKENS=10000 KEEP=1 (keep the work directory and logs).
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

# sidecar name VAR=value...: the sidecar with default settings but those given.
sidecar() {
  local name=$1; shift
  port[$name]=$nextport; nextport=$((nextport + 2))
  env UPSTREAM_URL="http://127.0.0.1:${port[upstream]}" DATABASE_URL="$bench_db" \
    REDIS_URL="$REDIS_URL_BENCH" SESSION_KEY_PREFIX="${prefix}$name:" \
    LISTEN_ADDR="127.0.0.1:${port[$name]}" ADMIN_ADDR="127.0.0.1:$((port[$name] + 1))" \
    "$@" "$work/authsidecar" >"$work/$name.log" 2>&1 &
  pid[$name]=$!
  await "$name" "http://127.0.0.1:${port[$name]}/api/health/redis"
}

start upstream "$work/benchserver" upstream -listen "127.0.0.1:$nextport" -size 1024
await upstream "http://127.0.0.1:${port[upstream]}/"
start bare "$work/benchserver" bare -listen "127.0.0.1:$nextport" -upstream "http://127.0.0.1:${port[upstream]}"
await bare "http://127.0.0.1:${port[bare]}/"
targets=(bare)
if command -v nginx >/dev/null; then
  port[nginx]=$nextport; nextport=$((nextport + 2))
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
  server {
    listen 127.0.0.1:${port[nginx]};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
  "$(command -v nginx)" -p "$work" -c "$work/nginx.conf" -g 'daemon off;' >"$work/nginx.log" 2>&1 &
  pid[nginx]=$!
  await nginx "http://127.0.0.1:${port[nginx]}/"
  targets+=(nginx)
fi
sidecar local                                   # the default: in-process cache hit
sidecar redis LOCAL_CACHE_TTL=0                 # every request: one MGET
sidecar postgres LOCAL_CACHE_TTL=0 REDIS_URL=   # every request: one Postgres query
sidecar local-warn LOG_LEVEL=warn               # local hit, access log off
# The hot token flatters the two modes above: concurrent requests for one token share one
# lookup (singleflight). Distinct tokens, as real users send, pay one lookup each.
sidecar redis-distinct LOCAL_CACHE_TTL=0 CACHE_WARM_ON_START=true
sidecar postgres-distinct LOCAL_CACHE_TTL=0 REDIS_URL=
for _ in $(seq 300); do grep -q '"cache warmed"' "$work/redis-distinct.log" && break; sleep 0.1; done
grep -q '"cache warmed"' "$work/redis-distinct.log" || { echo "bench: warming did not finish" >&2; exit 1; }
targets+=(local redis redis-distinct postgres postgres-distinct miss local-warn)
for t in bare local redis postgres local-warn; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$HOT" "http://127.0.0.1:${port[$t]}/")
  [ "$code" = 200 ] || { echo "bench: $t answered $code to the hot token" >&2; exit 1; }
done

# The miss path needs tokens no cache has seen: a fresh sidecar with a fresh Redis prefix
# and no local cache for every round, each token sent once (the file is larger than a round).
miss_round=0
fresh_miss() {
  [ -n "${pid[miss]:-}" ] && stop miss
  miss_round=$((miss_round + 1))
  nextport=$((PORT_BASE + 60))
  sidecar miss LOCAL_CACHE_TTL=0 SESSION_KEY_PREFIX="${prefix}miss$miss_round:"
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
  timeout $((d + 30)) wrk -t"$th" -c"$c" -d"${d}s" --timeout 5s --latency "${args[@]}" >"$work/$label.$t.$r.txt"
  if grep -q "Non-2xx\|Socket errors" "$work/$label.$t.$r.txt"; then
    echo "bench: $t round $r: $(grep "Non-2xx\|Socket errors" "$work/$label.$t.$r.txt" | tr -s ' ')" >&2
  fi
}

echo "bench: warming up every target" >&2
for t in "${targets[@]}"; do [ "$t" = miss ] || load warmup "$t" 0 "$CONNS" "$THREADS" 1; done
for r in $(seq "$ROUNDS"); do
  echo "bench: round $r of $ROUNDS: ${#targets[@]} targets × (${DURATION}s at $CONNS connections + ${SINGLE}s at 1)" >&2
  for t in "${targets[@]}"; do
    load conc "$t" "$r" "$CONNS" "$THREADS" "$DURATION"
    load single "$t" "$r" 1 1 "$SINGLE"
  done
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

declare -A RPS P50 P99 S50
for t in "${targets[@]}"; do
  RPS[$t]=$(for f in "$work"/conc."$t".*.txt; do rps "$f"; done | median)
  P50[$t]=$(for f in "$work"/conc."$t".*.txt; do us "$f" 50; done | median)
  P99[$t]=$(for f in "$work"/conc."$t".*.txt; do us "$f" 99; done | median)
  S50[$t]=$(for f in "$work"/single."$t".*.txt; do us "$f" 50; done | median)
done

declare -A what=(
  [bare]="bare httputil.ReverseProxy (baseline)"
  [nginx]="nginx proxy_pass"
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
printf '| %-56s | %7s | %9s | %9s | %6s | %12s | %12s |\n' target req/s p50 p99 ×bare "1-conn p50" "added p50"
echo "|$(printf -- '-%.0s' {1..58})|---------|-----------|-----------|--------|--------------|--------------|"
for t in "${targets[@]}"; do
  ratio=$(awk -v a="${RPS[$t]}" -v b="${RPS[bare]}" 'BEGIN { printf "%.2f×", a / b }')
  added=$(( S50[$t] - S50[bare] ))
  if [ "$t" = bare ]; then added="—"; elif [ $added -ge 0 ]; then added="+$(fmt_us $added)"; else added="−$(fmt_us $((-added)))"; fi
  printf '| %-56s | %7s | %9s | %9s | %6s | %12s | %12s |\n' "${what[$t]}" "${RPS[$t]}" \
    "$(fmt_us "${P50[$t]}")" "$(fmt_us "${P99[$t]}")" "$ratio" "$(fmt_us "${S50[$t]}")" "$added"
done
echo
awk -v a="${RPS[local]}" -v b="${RPS[local-warn]}" -v sa="${S50[local]}" -v sb="${S50[local-warn]}" 'BEGIN {
  printf "Access log cost (in-process hit, LOG_LEVEL=info vs warn): %+.1f%% req/s, %+d µs single-connection p50\n",
    (a - b) / b * 100, sa - sb }'

hot_hash=$(printf %s bench-hot-token | sha256sum | cut -d' ' -f1)
key="${prefix}redis:$hot_hash"
echo "Redis MEMORY USAGE of one cached session (111-byte user agent): $(redis-cli -u "$REDIS_URL_BENCH" memory usage "$key") bytes (value $(redis-cli -u "$REDIS_URL_BENCH" strlen "$key") bytes, encoding $(redis-cli -u "$REDIS_URL_BENCH" object encoding "$key"))"

# Cache warming: a fresh prefix, then WARM_SECONDS of traffic over the active sessions
# (each seen about once every ACTIVE_TOKENS requests), starting as soon as the listener is up.
misses=$(curl -s "http://127.0.0.1:${port[redis-distinct]}/api/health/redis" | sed -n 's/.*"misses":\([0-9]*\).*/\1/p')
[ "${misses:-0}" = 0 ] || echo "Note: the distinct-token Redis row had $misses Postgres lookups (sessions expired from Redis?)"
stop local; stop local-warn; stop redis; stop postgres; stop redis-distinct; stop postgres-distinct
[ -n "${pid[miss]:-}" ] && stop miss
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
echo "Command: scripts/bench.sh (ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS THREADS=$THREADS SINGLE=$SINGLE WARM_SECONDS=$WARM_SECONDS)"
