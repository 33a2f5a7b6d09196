#!/usr/bin/env bash
# k8s_e2e.sh (`make k8s-e2e`) runs deploy/kubernetes on a real one-node
# Kubernetes cluster on this machine and takes it through a rollout, pod
# loss, an eviction against the PodDisruptionBudget, a readiness check, the
# pod's security context and memory limit, and a model version published to
# the volume, all under steady client load (cmd/k8sload), then tears it down.
#
# The node: etcd (Debian's etcd-server), kube-apiserver, kube-controller-manager,
# kube-scheduler and kubelet v1.34.4 built from the Go module proxy
# (scripts/k8s_check.sh --build, cached), Debian's containerd + runc, the CNI
# bridge and host-local plugins (containernetworking-plugins). No registry:
# the pause image is a small static Go binary built here, the gcnserve image
# comes from scripts/build_image.sh; both are imported with `ctr images import`.
# The manifests go through deploy/kubernetes/lab (image source, CPU request,
# model volume). Service discovery is the client's: cmd/k8sload resolves the
# headless Service from its EndpointSlices (deploy/README.md says why).
#
# Needs root and cgroups; installs what it misses of etcd-server containerd runc
# containernetworking-plugins iptables conntrack podman mmdebstrap (apt-get). Not run in CI.
# Everything stays on this machine: loopback, a bridge (10.202.0.0/24) and
# the pods' network namespaces.
#
# The last line: k8s-e2e: pods_ready=N rollout_failed=N podkill_failed=N evictions_blocked=N
set -euo pipefail

K8S_VERSION=v1.34.4
GO=${GO:-go}
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gcnserve/k8s/$K8S_VERSION"
IMAGE=localhost/gcnserve:e2e
PAUSE=localhost/pause:e2e
work=/var/lib/gcnserve-k8s-e2e # deploy/kubernetes/lab/pv.yaml names $work/models
BRIDGE=gcne2e0
NODE_IP=10.202.0.1
POD_SUBNET=10.202.0.0/24
NODE=gcne2e
API_PORT=${K8S_E2E_API_PORT:-36443}
ETCD_PORT=${K8S_E2E_ETCD_PORT:-32379}
KUBELET_PORT=30250
CONTROL=127.0.0.1:${K8S_E2E_CONTROL_PORT:-39090}
RPS=${K8S_E2E_RPS:-100}

log() { echo "k8s-e2e: $(date -u +%H:%M:%S) $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (containerd, kubelet, a bridge)"
# Debian packages: install what is missing (as `make deps` does), else name it.
need=()
for pair in etcd:etcd-server containerd:containerd containerd-shim-runc-v2:containerd runc:runc ctr:containerd \
  podman:podman mmdebstrap:mmdebstrap openssl:openssl ip:iproute2 curl:curl iptables:iptables conntrack:conntrack; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  command -v apt-get >/dev/null || die "needs the Debian packages (or equivalents): ${need[*]}"
  log "apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2 || die "apt-get install ${need[*]} failed"
fi
[ -e "$work" ] && die "$work exists: another run, or a run that did not clean up (remove it)"

# 1. Binaries: the cached Kubernetes build (one go build for all of them),
#    the load driver.
"$root/scripts/k8s_check.sh" --build
kubectl="$cache/kubectl"
(cd "$root" && nice "$GO" build -o bin/k8sload ./cmd/k8sload)

pids=()
sock="$work/containerd/containerd.sock"
k() { "$kubectl" "$@"; }
kctr() { ctr -a "$sock" -n k8s.io "$@"; }

cleanup() {
  local rc=$?
  set +e
  log "tearing down"
  if [ -n "${load_pid:-}" ]; then kill "$load_pid" 2>/dev/null; wait "$load_pid" 2>/dev/null; fi
  if [ -n "${kubelet_pid:-}" ] && kill -0 "$kubelet_pid" 2>/dev/null; then
    # Let the kubelet stop the pods itself (CNI DEL, network namespaces).
    k delete deployment,hpa gcnserve --wait=false >/dev/null 2>&1
    for _ in $(seq 60); do
      [ -z "$(k get pods -o name 2>/dev/null)" ] && break
      sleep 1
    done
    k delete pods --all --grace-period=0 --force >/dev/null 2>&1
    sleep 2
    kill "$kubelet_pid" 2>/dev/null; wait "$kubelet_pid" 2>/dev/null
  fi
  if [ -S "$sock" ]; then
    for t in $(kctr tasks ls -q 2>/dev/null); do kctr tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
    sleep 1
    for t in $(kctr tasks ls -q 2>/dev/null); do kctr tasks delete -f "$t" >/dev/null 2>&1; done
    for c in $(kctr containers ls -q 2>/dev/null); do kctr containers delete "$c" >/dev/null 2>&1; done
  fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  # Shims of this containerd (their command line names its socket), by pid.
  for p in $(pgrep -f -- "-address $sock" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  # Network namespaces this run's pods left behind, then mounts under $work.
  for ns in /var/run/netns/cni-*; do
    [ -e "$ns" ] || continue
    grep -qxF "$ns" "$work/netns-before" 2>/dev/null && continue
    umount "$ns" 2>/dev/null; rm -f "$ns"
  done
  awk -v w="$work" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf /var/lib/cni/networks/gcne2e /var/lib/cni/results/gcne2e-*
  ip link del "$BRIDGE" 2>/dev/null
  if [ "${K8S_E2E_KEEP_LOGS:-}" ] && [ -d "$work/logs" ]; then cp -r "$work/logs" "$K8S_E2E_KEEP_LOGS"; fi
  rm -rf "$work"
  log "torn down"
  # The summary is the last line, also when a stage failed (-1: not reached).
  echo "k8s-e2e: pods_ready=$pods_ready rollout_failed=$rollout_failed podkill_failed=$podkill_failed evictions_blocked=$evictions_blocked"
  exit "$rc"
}
pods_ready=0 rollout_failed=-1 podkill_failed=-1 evictions_blocked=0
trap cleanup EXIT

mkdir -p "$work"/{logs,models,containerd,cni,kubelet,pods} "$work/models/karate/1"
ls -d /var/run/netns/cni-* 2>/dev/null > "$work/netns-before" || true

# 2. The images: pause (a static binary that waits for SIGTERM) and gcnserve.
log "building the pause and gcnserve images (podman)"
mkdir -p "$work/pause"
cat > "$work/pause/main.go" <<'GO'
// pause holds a pod's namespaces until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
GO
printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$work/pause/Containerfile"
(cd "$work/pause" && "$GO" mod init pause >/dev/null 2>&1 && CGO_ENABLED=0 "$GO" build -ldflags "-s -w" -o pause .)
export CONTAINERS_CONF="${XDG_CACHE_HOME:-$HOME/.cache}/gcnserve/image/containers.conf"
mkdir -p "$(dirname "$CONTAINERS_CONF")"
[ -f "$CONTAINERS_CONF" ] || printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF"
pm() { podman --runtime runc --cgroup-manager cgroupfs "$@"; }
pm build -q --network host -t "$PAUSE" -f "$work/pause/Containerfile" "$work/pause" >/dev/null
if [ -z "${K8S_E2E_SKIP_IMAGE:-}" ] || ! pm image exists "$IMAGE"; then
  IMAGE=$IMAGE "$root/scripts/build_image.sh" 2>&1 | tail -3 >&2
fi
pm save -q --format docker-archive -o "$work/pause.tar" "$PAUSE"
pm save -q --format docker-archive -o "$work/gcnserve.tar" "$IMAGE"

# 3. The node's network: a bridge the CNI plugin shares; its address is the
#    node's (a loopback node IP leaves the node without addresses, and
#    kubectl exec/logs need one). Pods reach only the bridge's subnet: no
#    gateway, no masquerading, no forwarding sysctl touched.
ip link add "$BRIDGE" type bridge
ip addr add "$NODE_IP/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
cat > "$work/cni/10-gcne2e.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "gcne2e", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$NODE_IP"}]]}},
  {"type": "loopback"}]}
JSON

# 4. containerd: its own root, state and socket; CRI with the local pause
#    image and restrict_oom_score_adj (runc may not lower oom_score_adj here).
cat > "$work/containerd/config.toml" <<TOML
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/cni"
TOML
containerd --config "$work/containerd/config.toml" >"$work/logs/containerd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
ctr -a "$sock" version >/dev/null 2>&1 || { tail -20 "$work/logs/containerd.log" >&2; die "containerd did not start"; }
kctr images import "$work/pause.tar" >/dev/null
kctr images import "$work/gcnserve.tar" >/dev/null
rm -f "$work/pause.tar" "$work/gcnserve.tar"
log "containerd $(containerd --version | awk '{print $3}') up; images: $(kctr images ls -q | grep -v '^sha256' | tr '\n' ' ')"

# 5. etcd and the control plane, on loopback.
etcd --name gcne2e --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "gcne2e=http://127.0.0.1:$((ETCD_PORT + 1))" --log-level error >"$work/logs/etcd.log" 2>&1 &
pids+=($!)
pki="$work/pki"
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$pki/apiserver.key" -out "$pki/apiserver.crt" 2>/dev/null
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
token=$(openssl rand -hex 16)
echo "$token" > "$pki/token"
echo "$token,k8s-e2e,k8s-e2e,system:masters" > "$pki/tokens.csv"
"$cache/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
  --token-auth-file "$pki/tokens.csv" --authorization-mode AlwaysAllow \
  --service-cluster-ip-range 10.96.0.0/16 --cert-dir "$pki/apiserver" \
  --kubelet-preferred-address-types InternalIP >"$work/logs/apiserver.log" 2>&1 &
pids+=($!)
api_pid=$!
cat > "$work/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$pki/apiserver.crt"}}]
users: [{name: e2e, user: {token: "$token"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: e2e, namespace: default}}]
current-context: e2e
KC
export KUBECONFIG="$work/kubeconfig"
for _ in $(seq 600); do
  k get --raw /readyz >/dev/null 2>&1 && break
  kill -0 "$api_pid" 2>/dev/null || { tail -20 "$work/logs/apiserver.log" >&2; die "kube-apiserver exited"; }
  sleep 0.1
done
k get --raw /readyz >/dev/null || die "kube-apiserver not ready after 60 s"
cat > "$work/scheduler.yaml" <<YAML
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {kubeconfig: "$work/kubeconfig"}
leaderElection: {leaderElect: false}
YAML
"$cache/kube-scheduler" --config "$work/scheduler.yaml" --bind-address 127.0.0.1 --secure-port 30259 \
  >"$work/logs/scheduler.log" 2>&1 &
pids+=($!)
"$cache/kube-controller-manager" --kubeconfig "$work/kubeconfig" --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port 30257 \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/apiserver.crt" \
  --use-service-account-credentials=false >"$work/logs/controller-manager.log" 2>&1 &
pids+=($!)

# 6. The kubelet: cgroup v1 allowed, cgroupfs, no QoS cgroups, no allocatable
#    enforcement (what this VM supports), anonymous auth for the API server's
#    exec/logs (no webhook authorizer in this lab).
cat > "$work/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
containerRuntimeEndpoint: unix://$sock
address: $NODE_IP
port: $KUBELET_PORT
healthzBindAddress: 127.0.0.1
healthzPort: 30248
readOnlyPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
failSwapOn: false
podLogsDir: $work/pods
resolvConf: ""
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
YAML
"$cache/kubelet" --config "$work/kubelet.yaml" --kubeconfig "$work/kubeconfig" --root-dir "$work/kubelet" \
  --node-ip "$NODE_IP" --hostname-override "$NODE" >"$work/logs/kubelet.log" 2>&1 &
pids+=($!)
kubelet_pid=$!
start=$(date +%s)
for _ in $(seq 120); do
  [ "$(k get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] && break
  kill -0 "$kubelet_pid" 2>/dev/null || { tail -30 "$work/logs/kubelet.log" >&2; die "kubelet exited"; }
  sleep 1
done
[ "$(k get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ] ||
  { grep -E '^E' "$work/logs/kubelet.log" | tail -20 >&2; die "node $NODE not Ready after 120 s"; }
log "node $NODE Ready in $(($(date +%s) - start)) s: $(k get node "$NODE" -o 'jsonpath={.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion} {.status.addresses}')"

# 7. The model repository, then deploy/kubernetes through the lab overlay.
cp "$root/model/karate.onnx" "$work/models/karate/1/model.onnx"
chmod -R a+rX "$work/models"
for _ in $(seq 60); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 1; done
k apply -k "$root/deploy/kubernetes/lab" >&2
start=$(date +%s)
ready_pods() { k get pods -l app.kubernetes.io/name=gcnserve -o 'jsonpath={range .items[*]}{.metadata.deletionTimestamp}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c '^|True$' || true; }
pod_names() { k get pods -l app.kubernetes.io/name=gcnserve -o 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}'; }
wait_ready() { # want timeout_s: want Ready pods, none terminating, nothing else
  local want=$1 t=$2
  for _ in $(seq "$t"); do
    [ "$(ready_pods)" = "$want" ] && [ "$(pod_names | wc -l)" = "$want" ] && return 0
    sleep 1
  done
  k get pods -o wide >&2
  return 1
}
wait_ready 3 240 || { k describe pods | tail -40 >&2; grep -E '^E' "$work/logs/kubelet.log" | tail -20 >&2; die "3 pods not Ready after 240 s"; }
pods_ready=$(ready_pods)
log "$pods_ready pods Ready $(($(date +%s) - start)) s after apply (HPA minReplicas 3)"
k get pods -o wide >&2
log "HPA: $(k get hpa gcnserve -o 'jsonpath={.status.currentReplicas}/{.status.desiredReplicas} replicas; {range .status.conditions[*]}{.type}={.status} ({.reason}) {end}')"

# 8. Steady load through the headless Service.
"$root/bin/k8sload" --api "https://127.0.0.1:$API_PORT" --token-file "$pki/token" --ca-file "$pki/apiserver.crt" \
  --service default/gcnserve-headless --port 9999 --graph "$root/examples/karate.json" \
  --rps "$RPS" --control "$CONTROL" >"$work/logs/k8sload.log" 2>&1 &
load_pid=$!
phase() { curl -fsS "http://$CONTROL/phase?name=$1"; }
for _ in $(seq 100); do curl -fsS "http://$CONTROL/total" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 3
phase steady >/dev/null
sleep 5
out=$(phase checks)
log "steady: $out"
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
peers_of() { field "$1" peers | tr ',' '\n' | grep -c . || true; }
[ "$(field "$out" failed)" = 0 ] || die "failed calls before any disruption: $out"
[ "$(peers_of "$out")" = 3 ] || die "load does not reach 3 pods: $out"

failures=0
check() { # ok|fail description
  if [ "$1" = ok ]; then log "  ok   $2"; else log "  FAIL $2"; failures=$((failures + 1)); fi
}
pod_ip() { k get pod "$1" -o 'jsonpath={.status.podIP}'; }
host_pid() { # pod -> host pid of its gcnserve process
  local id
  id=$(k get pod "$1" -o 'jsonpath={.status.containerStatuses[0].containerID}')
  kctr tasks ls | awk -v id="${id#containerd://}" '$1 == id {print $2}'
}

# 9. Inside a pod: uid, read-only root, GOMEMLIMIT from the memory limit.
#    With `kubectl exec` when the image has a shell (the local base of
#    build_image.sh); an image without one (distroless) is read through its
#    process from the node: /proc/PID/status and mountinfo, the cgroup file
#    under /proc/PID/root, and the pod's own /metrics.
p=$(pod_names | head -1)
if [ -z "${K8S_E2E_NO_EXEC:-}" ] && k exec "$p" -- bash -c true >/dev/null 2>&1; then
  how="kubectl exec"
  inside=$(k exec "$p" -- bash -c '
    echo "uid=$(id -u) gid=$(id -g)"
    if touch /probe 2>/dev/null; then echo rootfs=writable; else echo rootfs=read-only; fi
    echo "cgroup_limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
    exec 3<>/dev/tcp/127.0.0.1/8000
    printf "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n" >&3
    grep -E "^go_gc_gomemlimit_bytes " <&3 | sed "s/^go_gc_gomemlimit_bytes /gomemlimit=/"' 2>&1) || true
else
  hp=$(host_pid "$p")
  how="its process from the node (/proc/$hp)"
  inside="uid=$(awk '/^Uid:/ {print $2}' "/proc/$hp/status") gid=$(awk '/^Gid:/ {print $2}' "/proc/$hp/status")
rootfs=$(awk '$5 == "/" {split($6, o, ","); print (o[1] == "ro" ? "read-only" : "writable"); exit}' "/proc/$hp/mountinfo")
cgroup_limit=$(cat "/proc/$hp/root/sys/fs/cgroup/memory/memory.limit_in_bytes" 2>/dev/null || cat "/proc/$hp/root/sys/fs/cgroup/memory.max")
gomemlimit=$(curl -fsS "http://$(pod_ip "$p"):8000/metrics" | sed -n 's/^go_gc_gomemlimit_bytes //p')" || true
fi
log "inside $p, read with $how: $(echo "$inside" | tr '\n' ' ')"
limit=$(echo "$inside" | sed -n 's/^cgroup_limit=//p')
gml=$(echo "$inside" | sed -n 's/^gomemlimit=//p' | awk '{printf "%.0f", $1}')
check "$(echo "$inside" | grep -qx 'uid=65532 gid=65532' && echo ok)" "runs as uid/gid 65532"
check "$(echo "$inside" | grep -qx 'rootfs=read-only' && echo ok)" "root file system is read-only"
check "$([ "${limit:-0}" = 2147483648 ] && echo ok)" "cgroup memory limit is the manifest's 2Gi ($limit)"
check "$([ -n "$gml" ] && [ "$gml" -gt 0 ] && [ "$gml" -lt "${limit:-0}" ] && echo ok)" \
  "GOMEMLIMIT ${gml:-?} derived from the limit ($(awk -v a="${gml:-0}" -v b="${limit:-1}" 'BEGIN{printf "%.0f%%", 100*a/b}'))"
log "  server log: $(k logs "$p" | grep -m1 'GOMEMLIMIT' | head -c 300)"

# 10. Readiness: a pod that turns NOT_SERVING (SIGTERM starts its 5 s drain,
#     the process still alive and answering health) gets no calls, and the
#     kubelet's readiness probe marks it not Ready.
victim=$(pod_names | sed -n 2p)
vip=$(pod_ip "$victim")
vpid=$(host_pid "$victim")
phase before-drain >/dev/null
kill -TERM "$vpid"
t0=$(date +%s%N)
sleep 0.5
phase notserving >/dev/null
notready=no
# Until 4 s into the 5 s drain: is the pod marked not Ready?
while [ $(($(date +%s%N) - t0)) -lt 3700000000 ]; do
  [ "$(k get pod "$victim" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = False ] && notready=yes
  sleep 0.1
done
alive=no
kill -0 "$vpid" 2>/dev/null && alive=yes
out=$(phase readiness-restart)
log "while $victim ($vip) drained: $out"
vcalls=$(field "$out" peers | tr ',' '\n' | sed -n "s/^$vip://p")
check "$([ "$alive" = yes ] && [ -z "$vcalls" ] && [ "$(field "$out" failed)" = 0 ] && echo ok)" \
  "NOT_SERVING pod got ${vcalls:-0} calls in 4 s of its drain (process alive: $alive), failed $(field "$out" failed)"
check "$([ $notready = yes ] && echo ok)" "kubelet readiness probe marked $victim not Ready during the drain"
wait_ready 3 120 || die "pods not Ready again after the drain"
sleep 3
out=$(phase eviction)
check "$([ "$(field "$out" failed)" = 0 ] && echo ok)" "container restart after the drain: $out"
# The drained process exited by itself (0) before the grace period ran out.
last=$(k get pod "$victim" -o 'jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode} {.status.containerStatuses[0].lastState.terminated.startedAt} {.status.containerStatuses[0].lastState.terminated.finishedAt}')
check "$([ "${last%% *}" = 0 ] && echo ok)" "the drained container exited with code ${last%% *} (started, finished: ${last#* })"

# 11. Evictions against the PDB (maxUnavailable 1): the first is allowed,
#     the next ones, while its replacement is not Ready, are refused.
evict() { # pod -> HTTP-ish result
  printf '{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"%s","namespace":"default"}}' "$1" > "$work/eviction.json"
  k create --raw "/api/v1/namespaces/default/pods/$1/eviction" -f "$work/eviction.json" 2>&1
}
mapfile -t ps < <(pod_names)
evictions_blocked=0
r=$(evict "${ps[0]}") && check ok "eviction of ${ps[0]} allowed (PDB: 1 disruption allowed)" || check fail "eviction of ${ps[0]} refused: $r"
for p in "${ps[1]}" "${ps[2]}"; do
  if r=$(evict "$p"); then
    check fail "eviction of $p allowed while ${ps[0]} is out: $r"
  else
    evictions_blocked=$((evictions_blocked + 1))
    check ok "eviction of $p refused: $(echo "$r" | tr '\n' ' ' | head -c 160)"
  fi
done
wait_ready 3 180 || die "pods not Ready after the eviction"
sleep 3
out=$(phase rollout)
log "eviction phase: $out"
check "$([ "$(field "$out" failed)" = 0 ] && echo ok)" "no failed calls across the eviction"

# 12. kubectl rollout restart (maxUnavailable 0, maxSurge 1).
start=$(date +%s.%N)
k rollout restart deployment/gcnserve >&2
k rollout status deployment/gcnserve --timeout=300s >&2 || die "rollout did not finish"
rollout_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
wait_ready 3 120 || die "old pods did not go away after the rollout"
sleep 3
out=$(phase podkill)
rollout_failed=$(field "$out" failed)
log "rollout restart: $rollout_s s to complete; $out"
check "$([ "$rollout_failed" = 0 ] && echo ok)" "rollout restart: $(field "$out" requests) calls, $rollout_failed failed"

# 13. Pod loss: delete one pod, SIGKILL another's process, at once.
mapfile -t ps < <(pod_names)
kpid=$(host_pid "${ps[1]}")
k delete pod "${ps[0]}" --wait=false >&2
kill -KILL "$kpid"
log "deleted ${ps[0]}, SIGKILLed ${ps[1]}'s gcnserve (host pid $kpid)"
sleep 5
wait_ready 3 180 || die "pods not Ready after the pod loss"
sleep 3
out=$(phase publish)
podkill_failed=$(field "$out" failed)
log "pod loss: $out"
check "$([ "$podkill_failed" = 0 ] && echo ok)" "pod delete + SIGKILL: $(field "$out" requests) calls, $podkill_failed failed"
check "$([ "$(k get pod "${ps[1]}" -o 'jsonpath={.status.containerStatuses[0].restartCount}')" -ge 1 ] && echo ok)" \
  "the SIGKILLed container was restarted in place"

# 14. A new model version published to the volume (written aside, renamed
#     in) is served by every pod without a restart.
before=$(k get pods -l app.kubernetes.io/name=gcnserve -o 'jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount} {end}')
mkdir "$work/models/karate/.2"
cp "$root/model/karate.onnx" "$work/models/karate/.2/model.onnx"
chmod -R a+rX "$work/models/karate/.2"
mv "$work/models/karate/.2" "$work/models/karate/2"
start=$(date +%s)
ips=$(k get pods -l app.kubernetes.io/name=gcnserve -o 'jsonpath={range .items[*]}{.status.podIP}{"\n"}{end}')
served=no
for _ in $(seq 60); do
  sleep 1
  out=$(phase publishing)
  all=yes
  for ip in $ips; do
    echo "$out" | grep -q "[=,]$ip/2:" || all=no
  done
  [ $all = yes ] && { served=yes; break; }
done
publish_s=$(($(date +%s) - start))
phase after-publish >/dev/null
sleep 2
out=$(phase end)
after=$(k get pods -l app.kubernetes.io/name=gcnserve -o 'jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount} {end}')
log "after publishing karate/2: $out"
check "$([ $served = yes ] && ! echo "$out" | grep -q '/1:' && echo ok)" \
  "karate version 2 served by all $(echo "$ips" | wc -w) pods within $publish_s s, version 1 no more"
check "$([ "$before" = "$after" ] && echo ok)" "no pod restarted for it ($after)"
check "$([ "$(field "$out" failed)" = 0 ] && echo ok)" "no failed calls while the version switched"

log "warning events: $(k get events --field-selector type=Warning -o 'jsonpath={range .items[*]}{.reason}({.involvedObject.kind}) x{.count}: {.message}{"\n"}{end}' | sed 's/pod: "[^"]*"/pod: P/' | cut -c1-150 | sort | uniq -c | sort -rn | head -20 | sed 's/^ */    /' | sed '1s/^/\n/')"
total=$(curl -fsS "http://$CONTROL/total")
log "whole run under load: $total"
log "$failures check(s) failed; rollout ${rollout_s}s"
[ "$failures" = 0 ] || exit 1
