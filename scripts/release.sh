#!/usr/bin/env bash
# Release build: static, stripped authsidecar binaries for linux/amd64 and linux/arm64 in
# dist/, with their SHA-256 sums in dist/SHA256SUMS.
#
#   scripts/release.sh                 # version from `git describe --tags --always --dirty`
#   VERSION=v0.2.0 scripts/release.sh  # e.g. on the tag v0.2.0
#
# Each binary is built as the Docker image builds it (CGO_ENABLED=0, -tags grpcnotrace,
# -trimpath, -ldflags "-s -w -X main.version=$VERSION"), with the VCS revision recorded, and named
# authsidecar-$VERSION-linux-$ARCH; `authsidecar version` prints the version and the
# revision. Check a download with `sha256sum -c SHA256SUMS`. Environment: VERSION, DIST
# (default dist), PLATFORMS (default "linux/amd64 linux/arm64"). e2e/release_test.go runs
# this script and checks both binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
need_go

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
DIST=${DIST:-dist}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64}
case $VERSION in
  "" | *[!A-Za-z0-9._+-]*) echo "release: VERSION \"$VERSION\" may hold only letters, digits and . _ + -" >&2; exit 2 ;;
esac

mkdir -p "$DIST"
rm -f "$DIST"/authsidecar-* "$DIST/SHA256SUMS"
for platform in $PLATFORMS; do
  os=${platform%/*} arch=${platform#*/}
  out="$DIST/authsidecar-$VERSION-$os-$arch"
  echo "release: $out" >&2
  # -buildvcs=auto: record the revision even where GOFLAGS turns it off.
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -buildvcs=auto -tags grpcnotrace -trimpath \
    -ldflags "-s -w -X main.version=$VERSION" -o "$out" .
done
(cd "$DIST" && sha256sum authsidecar-* > SHA256SUMS)
echo "release: $DIST/SHA256SUMS" >&2
