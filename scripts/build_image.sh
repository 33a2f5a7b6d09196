#!/usr/bin/env bash
# build_image.sh builds the gcnserve image with docker or podman, whichever
# works, and with --smoke runs it locked down (read-only root fs, non-root,
# no capabilities) and checks a client gets the golden Karate scores.
#
#   scripts/build_image.sh [--smoke]     image tag: $IMAGE (default gcnserve:latest)
#
# With LOCAL_BASE=1, or when no registry answers, BASE and BUILDER are made
# here instead of pulled: a Debian bookworm rootfs from mmdebstrap, imported
# with `podman import`, and the build stage gets the host's Go toolchain and
# module cache as volumes. On Debian: apt-get install podman runc mmdebstrap.
# Podman runs as root with runc, cgroupfs and host networking (this works in
# a container without systemd or a network of its own).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-gcnserve:latest}
SUITE=${SUITE:-bookworm}
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gcnserve/image"
smoke=false
[ "${1:-}" = "--smoke" ] && smoke=true
log() { echo "build_image: $*" >&2; }

version=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo devel)

engine=${ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null; then
    engine=podman
  else
    cat >&2 <<'MSG'
build_image: no container engine: neither a running docker nor podman was found.
  Debian/Ubuntu: apt-get install podman runc mmdebstrap   (then run this again)
  Or build the binary alone: make build  (bin/gcnserve needs no other file)
MSG
    exit 1
  fi
fi

args=(--build-arg "VERSION=$version" -t "$IMAGE" -f "$root/Dockerfile")
run_args=()
if [ "$engine" = podman ]; then
  # default_ulimits = []: podman's default nofile ulimit fails where the
  # process may not raise it (inside an unprivileged sandbox).
  conf="$cache/containers.conf"
  mkdir -p "$cache"
  printf '[containers]\ndefault_ulimits = []\n' > "$conf"
  export CONTAINERS_CONF="$conf"
  podman() { command podman --runtime runc --cgroup-manager cgroupfs "$@"; }
  args+=(--network host)
  run_args+=(--network host)
fi

base_default=gcr.io/distroless/cc-debian12:nonroot
builder_default=golang:1.26-bookworm
if [ -z "${LOCAL_BASE:-}" ] && ! "$engine" pull -q "$base_default" >/dev/null 2>&1; then
  log "no registry answers for $base_default: making the base images locally"
  LOCAL_BASE=1
fi

if [ -n "${LOCAL_BASE:-}" ]; then
  command -v mmdebstrap >/dev/null || { log "LOCAL_BASE needs mmdebstrap (apt-get install mmdebstrap)"; exit 1; }
  [ "$engine" = podman ] || { log "LOCAL_BASE is wired for podman (volumes in build)"; exit 1; }
  local_image() { # name variant packages
    local name=$1 variant=$2 pkgs=$3
    local tar="$cache/$(basename "${name//:/-}").tar"
    if ! podman image exists "$name"; then
      log "mmdebstrap --variant=$variant $SUITE -> $name"
      mkdir -p "$cache"
      mmdebstrap --quiet --variant="$variant" --include="$pkgs" "$SUITE" "$tar"
      podman import "$tar" "$name" >/dev/null
      rm -f "$tar"
    fi
  }
  # The runtime base: glibc, libstdc++ and CA certificates, nothing else
  # (the essential set still has a shell; distroless has none).
  local_image localhost/gcnserve-base:$SUITE essential ca-certificates,libstdc++6
  # The build stage: a C toolchain for cgo; Go comes from the host.
  local_image localhost/gcnserve-builder:$SUITE apt ca-certificates,gcc,libc6-dev,make,git,curl
  goroot=$(go env GOROOT)
  gomodcache=$(go env GOMODCACHE)
  gocache=$(go env GOCACHE)
  # The host's CA bundle (a TLS-intercepting proxy's CA included) and its
  # verified ONNX Runtime copy, when there is one.
  ortcache="${XDG_CACHE_HOME:-$HOME/.cache}/gcnserve/ort"
  [ -d "$ortcache" ] && args+=(--volume "$ortcache:/root/.cache/gcnserve/ort:ro")
  args+=(--volume /etc/ssl/certs:/etc/ssl/certs:ro)
  args+=(--volume "$gocache:/root/.cache/go-build" --build-arg BASE=localhost/gcnserve-base:$SUITE --build-arg BUILDER=localhost/gcnserve-builder:$SUITE
    --volume "$goroot:/usr/local/go:ro" --volume "$gomodcache:/root/go/pkg/mod")
fi

log "$engine build -t $IMAGE"
"$engine" build "${args[@]}" "$root"
log "built $IMAGE: $("$engine" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MB", $1/1e6}')"

$smoke || exit 0

# Smoke test: locked down as in deploy/kubernetes, the golden karate scores.
name=gcnserve-smoke-$$
port=${SMOKE_PORT:-19999}
"$engine" rm -f "$name" >/dev/null 2>&1 || true
trap '"$engine" rm -f "$name" >/dev/null 2>&1 || true' EXIT
if [ "$engine" = podman ]; then
  # Host networking: the published port is the listen address.
  publish=(-e "GCNSERVE_ADDR=127.0.0.1:$port" -e GCNSERVE_HTTP_ADDR=127.0.0.1:18000)
else
  publish=(-p "127.0.0.1:$port:9999")
fi
log "$engine run --read-only --cap-drop ALL --security-opt no-new-privileges $IMAGE"
"$engine" run -d --name "$name" "${run_args[@]}" --read-only --cap-drop ALL \
  --security-opt no-new-privileges "${publish[@]}" "$IMAGE" >/dev/null
[ -x "$root/bin/gcnclient" ] || (cd "$root" && go build -o bin/gcnclient ./cmd/client)
for _ in $(seq 200); do
  "$root/bin/gcnclient" --addr "127.0.0.1:$port" --timeout 1s --info >/dev/null 2>&1 && break
  sleep 0.1
done
"$engine" logs "$name" 2>&1 | sed 's/^/  container: /' >&2
log "user in the container: $("$engine" top "$name" user 2>/dev/null | tail -1 | tr -s ' ')"
"$engine" exec "$name" /usr/local/bin/gcnserve --version 2>/dev/null | sed 's/^/  /' >&2 || true
if [ "$engine" = podman ] && command -v curl >/dev/null; then
  log "HTTP /readyz: $(curl -fsS http://127.0.0.1:18000/readyz 2>&1 | head -c 200)"
fi
# The root file system is read-only (the local base has a shell to try it).
if "$engine" exec "$name" sh -c 'echo x > /probe' 2>/dev/null; then
  log "FAIL: the container could write to its root file system"; exit 1
elif "$engine" exec "$name" sh -c true 2>/dev/null; then
  log "root file system is read-only (writing /probe failed)"
fi
out=$("$root/bin/gcnclient" --addr "127.0.0.1:$port" "$root/examples/karate.json")
echo "$out" | head -4 | sed 's/^/  gcnclient: /' >&2
# Compare with PyTorch's scores (model/testdata/karate/karate.json).
GCNCLIENT_OUT=$out python3 -c '
import json, os, sys
want = json.load(open(sys.argv[1]))["scores"]
rows = [l.split() for l in os.environ["GCNCLIENT_OUT"].splitlines()[1:] if l.strip()]
got = {int(r[0]): float(r[1]) for r in rows}
bad = [i for i, w in enumerate(want) if abs(got.get(i, -9) - w) > 5e-5]
print(f"build_image: {len(got)} scores, {len(want) - len(bad)}/{len(want)} match PyTorch within 5e-5 (gcnclient prints 4 decimals)", file=sys.stderr)
sys.exit(1 if bad or len(got) != len(want) else 0)
' "$root/model/testdata/karate/karate.json"
log "smoke test passed"
