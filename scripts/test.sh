#!/usr/bin/env bash
# The test command: checks for Go (>= go.mod's version) and a C compiler (for -race; gcc is
# installed when missing), starts (or installs) Redis and PostgreSQL and installs promtool if
# needed, builds helm and kustomize once per machine (scripts/tools.sh; minutes, so never
# inside a test's timeout), then checks formatting, go vet, staticcheck, runs every test with the race
# detector, and runs each fuzz target for a bounded number of inputs (scripts/fuzz.sh). Each test creates
# its own database and Redis key prefix and removes them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
need_go
need_cc
. scripts/services.sh
ensure_redis
ensure_postgres
ensure_promtool
bash scripts/tools.sh helm >/dev/null
bash scripts/tools.sh kustomize >/dev/null

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
go vet ./...
go tool staticcheck ./...
go test -race -count=1 -timeout 15m "$@" ./...
bash scripts/fuzz.sh
