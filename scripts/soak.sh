#!/usr/bin/env bash
# The soak (issue 13, "An hour without drift"): the sidecar binary under a fixed, modest mix
# of traffic for DURATION, checked for wrong decisions and for drift.
#
#   scripts/soak.sh                  # 10 minutes
#   DURATION=1h scripts/soak.sh      # the long run (docs/performance.md)
#
# The driver (scripts/soak) starts the sidecar with its own redis-server on a free port and
# reaches Postgres through a TCP forwarder it can cut; the shared Redis and Postgres are never
# stopped. About 190 req/s: in-process hits, Redis hits, misses (sessions created just
# before), invalid tokens, a revocation a second (checked refused within 2 s), and 12
# WebSockets and 6 event streams held 20–60 s each. Postgres is cut for 10 s at a quarter of
# the run, Redis restarted at half. A sample every 10 s: RSS, heap, goroutines, open fds,
# both pools, both servers' client lists, request rate. The verdict (exit 1 on FAIL) and the
# figures go to OUT/summary.txt, the series to OUT/samples.csv and OUT/soak.png.
#
# Knobs (environment): DURATION=10m (at least 2m) OUT=/tmp/authsidecar-soak.XXXXXX (kept).
# The sidecar inherits the environment, so its other variables can be set the same way
# (LOCAL_CACHE_SIZE=10000 DURATION=1h scripts/soak.sh); the driver sets its addresses,
# LOG_LEVEL and INVALID_TOKEN_RATE.
# Its database and every process it started are removed on exit.
set -euo pipefail
# One compound command, read whole before it runs: editing this file during an hour's run
# cannot change the run (bash reads a plain script as it goes).
{
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_postgres
command -v redis-server >/dev/null || apt_install redis-server
command -v gnuplot >/dev/null || apt_install gnuplot-nox

DURATION=${DURATION:-10m}
OUT=${OUT:-$(mktemp -d /tmp/authsidecar-soak.XXXXXX)}
mkdir -p "$OUT"
db=authsidecar_soak_$$
admin_db=$AUTHSIDECAR_TEST_DATABASE_URL
soak_db=$(printf %s "$admin_db" | sed -E "s#^([a-z]+://[^/]*)/[^?]*#\1/$db#")
driver=""

cleanup() {
  set +e
  [ -n "$driver" ] && kill "$driver" 2>/dev/null && wait "$driver" 2>/dev/null
  psql "$admin_db" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "soak: building into $OUT" >&2
go build -o "$OUT/authsidecar" .
go build -o "$OUT/soak" ./scripts/soak
psql "$admin_db" -qc "CREATE DATABASE $db" >/dev/null
psql "$soak_db" -q -v ON_ERROR_STOP=1 -f pgsession/sql/schema.sql -f pgsession/sql/notify.sql >/dev/null

echo "soak: $DURATION, results in $OUT" >&2
"$OUT/soak" -sidecar "$OUT/authsidecar" -db "$soak_db" -out "$OUT" -duration "$DURATION" &
driver=$!
rc=0
wait "$driver" || rc=$?
driver=""
[ -s "$OUT/samples.csv" ] || { echo "soak: no samples (exit $rc)" >&2; exit "$rc"; }

# The plot: memory, then goroutines, descriptors and connections, then the request rate,
# with the Postgres cut and the Redis restart shaded.
. "$OUT/events.env" 2>/dev/null || true
end=$(tail -n 1 "$OUT/samples.csv" | cut -d, -f1)
gnuplot <<EOF_PLOT
set terminal png size 900,900 font ",9" noenhanced
set output "$OUT/soak.png"
set datafile separator ","
set datafile missing "NaN"
set key autotitle columnhead outside right
set grid
set xlabel "minutes (shaded: Postgres cut, Redis restart, each + 10 s)"
set xrange [0:$end/60.0]
set yrange [0:*]
set multiplot layout 3,1 title "authsidecar soak, $DURATION ($(date -u +%Y-%m-%d))"
$(for e in PG_CUT REDIS_RESTART; do
  f=${e}_FROM t=${e}_TO
  [ -n "${!f:-}" ] && echo "set object rect from ${!f}/60.0, graph 0 to (${!t}+10)/60.0, graph 1 fc rgb '#dddddd' fs solid noborder behind"
done)
set ylabel "MB"
plot for [c=2:4] "$OUT/samples.csv" using (\$1/60):c with lines lw 2
set ylabel "count"
plot for [c=5:10] "$OUT/samples.csv" using (\$1/60):c with lines lw 2, "" using (\$1/60):12 with lines lw 2 dt 2
set ylabel "req/s"
plot "$OUT/samples.csv" using (\$1/60):11 every ::1 with lines lw 2
unset multiplot
EOF_PLOT
echo "soak: $OUT/summary.txt, $OUT/samples.csv, $OUT/soak.png" >&2
exit "$rc"
}
