#!/usr/bin/env bash
# Runs every fuzz target for a bounded number of inputs (FUZZTIME, default 10000x: a few
# seconds each), one `go test -fuzz` per target: -fuzz accepts one target per package
# invocation. The committed seed corpora (testdata/fuzz/<target>) already run with every
# `go test`; this step looks for new inputs. A failing input is written to
# testdata/fuzz/<target>/ by go test: commit it with the fix, as a regression case.
#
# The default is a count, not a duration: with a duration, Go 1.26's fuzz coordinator can
# report its own deadline as a failure ("context deadline exceeded", no input written) when a
# busy machine delays a worker at the end (go.dev/issue/75804, fixed in Go 1.27). A count has
# no deadline to race. Called by scripts/test.sh; run alone for a longer session:
#   FUZZTIME=2000000x scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10000x}

# package  target — every parser of client or store bytes.
targets=(
  "./proxy/     FuzzTokenFrom"          # Authorization and Cookie → the token a lookup sees
  "./proxy/     FuzzPathRouting"        # request-target → resolved path, public or not
  "./proxy/     FuzzStripIdentity"      # header names and Connection → what the app receives
  "./proxy/     FuzzEncodeHeaderValue"  # identity values → X-User-* header values
  "./authcache/ FuzzDecodeSession"      # a Redis value → a session
  "./authcache/ FuzzSessionRoundTrip"   # a session → a Redis value → the same session
  "./authcache/ FuzzDecodePeerMessage"  # another replica's eviction message
  "./admin/     FuzzDecodeTarget"       # an /admin/invalidate body
  "./pgsession/ FuzzParseEvent"         # a NOTIFY payload
)

# Every Fuzz function of the repository must be listed above, so none is left out of CI.
listed=$(printf '%s\n' "${targets[@]}" | awk '{print $2}' | sort)
found=$(grep -rhoE '^func (Fuzz[A-Za-z0-9_]+)\(' --include='*_test.go' . | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/' | sort)
if [ "$listed" != "$found" ]; then
  echo "fuzz: scripts/fuzz.sh lists other targets than the code defines:" >&2
  diff <(echo "$listed") <(echo "$found") >&2 || true
  exit 1
fi

start=$SECONDS
for entry in "${targets[@]}"; do
  read -r pkg target _ <<<"$entry"
  echo "fuzz: $target ($pkg) for $fuzztime"
  go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/fuzz-$$.log 2>&1 || {
    cat /tmp/fuzz-$$.log; rm -f /tmp/fuzz-$$.log
    echo "fuzz: $target failed; the failing input is under ${pkg}testdata/fuzz/$target/" >&2
    exit 1
  }
done
rm -f /tmp/fuzz-$$.log
echo "fuzz: ${#targets[@]} targets in $((SECONDS - start))s"
