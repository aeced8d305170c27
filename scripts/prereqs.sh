#!/usr/bin/env bash
# Sourced first by test.sh, demo.sh, e2e.sh and release.sh: checks, before anything else,
# that this machine can build authsidecar, and installs what Debian can provide.
#
#   need_go       Go >= the go.mod "go" line. Debian 12's golang-go (1.19) is too old and
#                 is never installed: the message says what to install instead.
#   need_cc       a C compiler, which `go test -race` needs (cgo): installs gcc with
#                 apt-get when it is missing.
#
# Each prints one line saying what is missing and returns non-zero; it sets no shell
# options (the sourcing script does).

prereq_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# go_required prints the Go version go.mod asks for, e.g. 1.26.8.
go_required() {
  sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$prereq_root/go.mod" | head -n 1
}

# version_at_least A B: true when dotted version A >= B.
version_at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

need_go() {
  local want have
  want=$(go_required)
  if ! command -v go >/dev/null 2>&1; then
    echo "prereqs: Go $want or newer is required and not installed; install it from the official tarball (go.dev/dl, then add /usr/local/go/bin to PATH), not Debian's golang-go (1.19 on Debian 12)" >&2
    return 1
  fi
  # Asked inside the module: a go >= 1.21 that may switch toolchains (GOTOOLCHAIN=auto)
  # reports, and fetches, the one go.mod names.
  have=$(cd "$prereq_root" && go env GOVERSION 2>/dev/null | sed 's/^go//; s/[^0-9.].*//')
  if ! version_at_least "${have:-0}" "$want"; then
    echo "prereqs: Go $want or newer is required, $(command -v go) is ${have:-unknown}; install a current release from the official tarball (go.dev/dl), not Debian's golang-go" >&2
    return 1
  fi
}

need_cc() {
  command -v "${CC:-cc}" >/dev/null 2>&1 && return 0
  command -v gcc >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "prereqs: no C compiler (go test -race needs one): apt-get install gcc" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc >/dev/null &&
      command -v gcc >/dev/null 2>&1 && return 0
  fi
  echo "prereqs: a C compiler is required by go test -race; install gcc (apt-get install gcc, as root)" >&2
  return 1
}
