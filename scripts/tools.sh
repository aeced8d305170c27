#!/usr/bin/env bash
# Prints the path of a pinned deployment tool, building it from its Go module the first
# time: neither has a Debian package, and the Go module proxy is all a CI machine needs.
#
#   scripts/tools.sh helm        # helm.sh/helm/v3, for the chart in deploy/helm
#   scripts/tools.sh kustomize   # sigs.k8s.io/kustomize, for deploy/k8s
#
# Each binary is cached under $AUTHSIDECAR_TOOLS_DIR (default
# ${XDG_CACHE_HOME:-~/.cache}/authsidecar/tools) in a directory named after its version,
# so a machine builds each version once (about 2 min for helm, 20 s for kustomize, on
# 2 cores) and a version bump here rebuilds. The e2e tests call this script.
set -euo pipefail

HELM_VERSION=v3.22.0
# v5.8.2 and later need Go 1.27.
KUSTOMIZE_VERSION=v5.8.1

name=${1:?usage: scripts/tools.sh helm|kustomize}
case $name in
  helm)      module=helm.sh/helm/v3/cmd/helm version=$HELM_VERSION
             ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" ;;
  kustomize) module=sigs.k8s.io/kustomize/kustomize/v5 version=$KUSTOMIZE_VERSION
             ldflags="-s -w" ;;
  *) echo "tools: unknown tool $name (helm or kustomize)" >&2; exit 2 ;;
esac

cache=${AUTHSIDECAR_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/authsidecar/tools}
dir=$cache/$name-$version
bin=$dir/$name
if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  # One build per machine even when several test processes ask at once.
  exec 9>"$dir.lock"
  flock 9
  if [ ! -x "$bin" ]; then
    echo "tools: building $name $version from $module (cached in $dir)" >&2
    tmp=$(mktemp -d "$dir.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    # Outside any module, so the repository's go.mod plays no part.
    (cd "$tmp" && GOBIN=$tmp go install -trimpath -ldflags "$ldflags" "$module@$version") >&2
    mv "$tmp/$name" "$bin"
  fi
fi
echo "$bin"
