#!/usr/bin/env bash
# k8s_check.sh validates every manifest under deploy/ against a real
# kube-apiserver: `kubectl apply --dry-run=server --validate=strict`, with
# KServe's CRDs installed, so a field the API server does not know fails.
#
# The API server and kubectl are built once from the Go module proxy
# (k8s.io/kubernetes v1.34.4), in the same `go build` as the kubelet,
# scheduler and controller-manager that `make k8s-e2e` needs (53 minutes of
# wall time on a busy 2-core VM), and cached under
# ${XDG_CACHE_HOME:-~/.cache}/gcnserve/k8s; etcd is Debian's etcd-server.
# Everything listens on 127.0.0.1 and is torn down on exit.
#
#   scripts/k8s_check.sh           build if needed, then check
#   scripts/k8s_check.sh --build   only build the cached binaries (all of K8S_BINARIES)
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

# K8S_BINARIES: the commands built into $cache, all in one `go build` so they
# share compilation. `make k8s-e2e` (scripts/k8s_e2e.sh) needs the node's
# binaries too: building them together with the API server costs little more.
K8S_BINARIES=(kube-apiserver kubectl kubelet kube-scheduler kube-controller-manager)

build() {
  local b missing=0
  for b in "${K8S_BINARIES[@]}"; do [ -x "$cache/$b" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  command -v "$GO" >/dev/null || { log "go not found"; exit 1; }
  log "building ${K8S_BINARIES[*]} $K8S_VERSION into $cache (once; tens of minutes on 2 cores)"
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
    local pkgs=()
    { echo '//go:build tools'; echo; echo 'package tools'; echo; echo 'import ('
      for b in "${K8S_BINARIES[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$b\""; pkgs+=("k8s.io/kubernetes/cmd/$b"); done
      echo ')'; } > tools.go
    GOFLAGS=-mod=mod "$GO" mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod "$GO" get "${pkgs[@]}"
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
    mkdir -p "$cache/tmp"
    GOFLAGS=-mod=mod CGO_ENABLED=0 nice -n 10 "$GO" build -trimpath -ldflags "$ld" -o "$cache/tmp/" "${pkgs[@]}"
    for b in "${K8S_BINARIES[@]}"; do mv "$cache/tmp/$b" "$cache/$b"; done
    rmdir "$cache/tmp"
  )
  log "built: $("$kubectl" version --client 2>/dev/null | head -1)"
}

if [ "${1:-}" = "--build" ]; then
  build
  exit 0
fi

if [ ! -x "$apiserver" ] || [ ! -x "$kubectl" ]; then
  if [ -n "${K8S_CHECK_SKIP_MISSING:-}" ]; then
    log "SKIPPED: no cached kube-apiserver/kubectl in $cache (run scripts/k8s_check.sh --build once)"
    exit 0
  fi
  build
fi
etcd=$(command -v etcd || true)
[ -n "$etcd" ] || { log "needs etcd (Debian: apt-get install etcd-server)"; exit 1; }
command -v openssl >/dev/null || { log "needs openssl"; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

API_PORT=${K8S_CHECK_API_PORT:-26443}
ETCD_PORT=${K8S_CHECK_ETCD_PORT:-22379}
ETCD_PEER_PORT=$((ETCD_PORT + 1))

"$etcd" --name k8s-check --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "k8s-check=http://127.0.0.1:$ETCD_PEER_PORT" --log-level error >"$work/etcd.log" 2>&1 &
pids+=($!)

# A self-signed serving certificate, service-account keys and a token.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$work/apiserver.key" -out "$work/apiserver.crt" 2>/dev/null
openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
token=$(openssl rand -hex 16)
echo "$token,k8s-check,k8s-check,system:masters" > "$work/tokens.csv"

"$apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --tls-cert-file "$work/apiserver.crt" --tls-private-key-file "$work/apiserver.key" \
  --service-account-key-file "$work/sa.pub" --service-account-signing-key-file "$work/sa.key" \
  --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
  --token-auth-file "$work/tokens.csv" --authorization-mode AlwaysAllow \
  --service-cluster-ip-range 10.96.0.0/16 --cert-dir "$work/certs" \
  --feature-gates ImageVolume=true >"$work/apiserver.log" 2>&1 &
pids+=($!)

cat > "$work/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: check, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$work/apiserver.crt"}}]
users: [{name: check, user: {token: "$token"}}]
contexts: [{name: check, context: {cluster: check, user: check, namespace: default}}]
current-context: check
KC
export KUBECONFIG="$work/kubeconfig"
k() { "$kubectl" "$@"; }

start=$(date +%s%N)
for _ in $(seq 300); do
  k get --raw /readyz >/dev/null 2>&1 && break
  if ! kill -0 "${pids[1]}" 2>/dev/null; then log "kube-apiserver exited:"; tail -20 "$work/apiserver.log" >&2; exit 1; fi
  sleep 0.1
done
k get --raw /readyz >/dev/null || { log "kube-apiserver not ready after 30s"; tail -20 "$work/apiserver.log" >&2; exit 1; }
for _ in $(seq 100); do k get namespace default >/dev/null 2>&1 && break; sleep 0.1; done
log "$(k version 2>/dev/null | tr '\n' ' ')ready in $(( ($(date +%s%N) - start) / 1000000 )) ms on 127.0.0.1:$API_PORT (etcd $("$etcd" --version | head -1 | awk '{print $3}'))"

# KServe's CRDs, from the Go module cache.
kserve_dir=$(cd "$root" && "$GO" mod download -json "github.com/kserve/kserve@$KSERVE_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
crds=("$kserve_dir"/config/crd/full/serving.kserve.io_{servingruntimes,clusterservingruntimes,inferenceservices}.yaml)
k create -f "${crds[0]}" -f "${crds[1]}" -f "${crds[2]}" >/dev/null
for crd in servingruntimes clusterservingruntimes inferenceservices; do
  for _ in $(seq 300); do
    [ "$(k get crd "$crd.serving.kserve.io" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] && break
    sleep 0.1
  done
done
log "KServe $KSERVE_VERSION CRDs installed"

fail=0
check() { # description, kubectl apply arguments...
  local what=$1; shift
  if out=$(k apply --dry-run=server --validate=strict "$@" 2>&1); then
    echo "$out" | sed "s|^|  ok   $what: |"
  else
    echo "$out" | sed "s|^|  FAIL $what: |"
    fail=1
  fi
}
cd "$root"
for f in deploy/kubernetes/base/*.yaml deploy/kserve/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] && continue
  check "$f" -f "$f"
done
check "kustomize deploy/kubernetes" -k deploy/kubernetes
check "kustomize deploy/kubernetes/image-volume" -k deploy/kubernetes/image-volume
# The image volume must survive validation (a disabled feature gate would drop it).
if k apply --dry-run=server -k deploy/kubernetes/image-volume -o yaml 2>/dev/null | grep -q 'reference: registry.example.com/gcnserve-models'; then
  echo "  ok   image-volume: the API server kept the image volume source"
else
  echo "  FAIL image-volume: the image volume source was dropped"; fail=1
fi

# Controls: strict validation must refuse a misspelt field, for a built-in
# type and for a KServe custom resource alike.
sed 's/^\(\s*\)terminationGracePeriodSeconds:/\1terminationGracePeriodSecond:/' deploy/kubernetes/base/deployment.yaml > "$work/bad-deployment.yaml"
sed 's/^\(\s*\)protocolVersions:/\1protocolVersion:/' deploy/kserve/servingruntime.yaml > "$work/bad-servingruntime.yaml"
for bad in "$work/bad-deployment.yaml" "$work/bad-servingruntime.yaml"; do
  if out=$(k apply --dry-run=server --validate=strict -f "$bad" 2>&1); then
    echo "  FAIL control $(basename "$bad") was accepted: $out"; fail=1
  else
    echo "  ok   control $(basename "$bad") refused: $(echo "$out" | grep -o 'strict decoding error: [^,]*' | head -1 || echo "$out" | head -1)"
  fi
done

if [ "$fail" = 0 ]; then log "PASS: every manifest accepted by kube-apiserver $K8S_VERSION (dry-run=server, validate=strict)"; fi
exit "$fail"
