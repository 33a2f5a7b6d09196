#!/usr/bin/env bash
# k8s_check.sh validates every manifest under deploy/ against a real
# kube-apiserver: `kubectl apply --dry-run=server --validate=strict`, with
# KServe's CRDs installed, so a field the API server does not know fails.
#
# The API server and kubectl are built once from the Go module proxy
# (k8s.io/kubernetes v1.34.4, about 9 minutes on 2 cores) and cached under
# ${XDG_CACHE_HOME:-~/.cache}/gcnserve/k8s; etcd is Debian's etcd-server.
# Everything listens on 127.0.0.1 and is torn down on exit.
#
#   scripts/k8s_check.sh           build if needed, then check
#   scripts/k8s_check.sh --build   only build the cached binaries
#   K8S_CHECK_SKIP_MISSING=1 ...   exit 0 with a note when the cached build is absent (CI)
set -euo pipefail

K8S_VERSION=v1.34.4
KSERVE_VERSION=v0.20.0
GO=${GO:-go}
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gcnserve/k8s/$K8S_VERSION"
apiserver="$cache/kube-apiserver"
kubectl="$cache/kubectl"

log() { echo "k8s-check: $*" >&2; }

build() {
  [ -x "$apiserver" ] && [ -x "$kubectl" ] && return 0
  command -v "$GO" >/dev/null || { log "go not found"; exit 1; }
  log "building kube-apiserver and kubectl $K8S_VERSION into $cache (once; ~9 min on 2 cores)"
  local mod
  mod=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$mod'" RETURN
  (
    cd "$mod"
    "$GO" mod init k8scheck.local >/dev/null 2>&1
    "$GO" mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    # k8s.io/kubernetes replaces its 31 staging modules with ./staging paths,
    # which do not exist in the module zip: point each at its published twin.
    local gomod
    gomod=$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    local staged
    staged=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
    [ "$(echo "$staged" | wc -l)" -ge 30 ] || { log "found no staging replaces in $gomod"; exit 1; }
    for m in $staged; do
      "$GO" mod edit -replace="$m=$m@v0${K8S_VERSION#v1}"
    done
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    GOFLAGS=-mod=mod "$GO" mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod "$GO" get k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
    mkdir -p "$cache"
    GOFLAGS=-mod=mod CGO_ENABLED=0 nice -n 19 "$GO" build -trimpath -ldflags "$ld" -o "$cache/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
    GOFLAGS=-mod=mod CGO_ENABLED=0 nice -n 19 "$GO" build -trimpath -ldflags "$ld" -o "$cache/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
    mv "$cache/kube-apiserver.tmp" "$apiserver"
    mv "$cache/kubectl.tmp" "$kubectl"
  )
  log "built: $("$kubectl" version --client 2>/dev/null | head -1)"
}

if [ "${1:-}" = "--build" ]; then
  build
  exit 0
fi
