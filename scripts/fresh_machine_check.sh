#!/usr/bin/env bash
# fresh_machine_check.sh replays the README's first command on a fresh Debian
# machine: a `mmdebstrap --variant=minbase --include=ca-certificates` chroot
# with Go copied into /usr/local/go and nothing else, a clean clone of this
# repository's HEAD in /src/gcnserve, and an empty environment
# (env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin). It passes when the
# server answers bin/gcnclient examples/karate.json, i.e. it reached SERVING.
# With --test it then runs the README's test command (`make test`) there too.
#
# By hand only, not in CI: it needs root (mmdebstrap, chroot, mount), a
# Debian host and the network (Debian's archive, the Go module proxy, the npm
# registry for ONNX Runtime), and takes minutes (--test: about an hour on 2
# shared cores). docs/FRESH_MACHINE.md has the last transcript.
#
#   scripts/fresh_machine_check.sh [--test] [--rev REV] [--dir DIR] [--logs DIR] [--keep]
#
#   --test       also run the README's second command, `make test`
#   --rev REV    check out REV instead of HEAD (e.g. bdb1796 shows the old failure)
#   --dir DIR    the chroot (default /tmp/fresh; must not exist)
#   --logs DIR   logs and summary.txt (default /tmp/fresh-logs)
#   --keep       keep the chroot afterwards (it is always unmounted)
#
# The only deviation from a newcomer's shell: GCNSERVE_ADDR is set to a free
# loopback port, since the chroot shares the host's network and :9999 may be
# taken there. The host's resolv.conf and CA bundle are copied in so name
# resolution and TLS work as on the host; /etc/hosts gets localhost.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
root=/tmp/fresh
logs=/tmp/fresh-logs
rev=HEAD
run_test=0
keep=0
suite=bookworm
run_timeout=${RUN_TIMEOUT:-3600}   # seconds for `make run` to reach SERVING
test_timeout=${TEST_TIMEOUT:-7200} # seconds for `make test`

while [ $# -gt 0 ]; do
  case "$1" in
    --test) run_test=1 ;;
    --keep) keep=1 ;;
    --rev) rev=$2; shift ;;
    --dir) root=$2; shift ;;
    --logs) logs=$2; shift ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
  shift
done

die() { echo "fresh_machine_check: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap, chroot, mount)"
[ -x /usr/local/go/bin/go ] || die "no Go in /usr/local/go to copy in"
[ ! -e "$root" ] || die "$root exists; remove it (check 'grep $root /proc/mounts' is empty first) or pass --dir"
commit=$(git -C "$repo" rev-parse --verify "$rev^{commit}") || die "no commit $rev"
mkdir -p "$logs"
summary=$logs/summary.txt
: >"$summary"
start=$SECONDS
step() { printf '[%4ds] %s\n' "$((SECONDS - start))" "$*" | tee -a "$summary"; }

# chroot_pids lists the processes running in the chroot (their root is
# $root): only ones this script started.
chroot_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && echo "${p#/proc/}"
  done
  return 0
}

server_pid=""
mounted=()
cleanup() {
  local rc=$? m i pids
  pids=$(chroot_pids)
  if [ -n "$pids" ]; then
    kill -TERM $pids 2>/dev/null || true
    for i in $(seq 30); do [ -n "$(chroot_pids)" ] || break; sleep 1; done
    pids=$(chroot_pids)
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    sleep 1
  fi
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    m=${mounted[i]}
    umount "$m" 2>/dev/null || umount -l "$m" || echo "fresh_machine_check: could not unmount $m" >&2
  done
  if grep -q " $root/" /proc/mounts; then
    echo "fresh_machine_check: still mounted under $root; not removing it" >&2
  elif [ "$keep" -eq 0 ] && [ -d "$root" ]; then
    rm -rf --one-file-system "$root"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_chroot CMD [VAR=value...]: a newcomer's login shell in the clone,
# nothing inherited.
in_chroot() {
  local cmd=$1
  shift
  nice chroot "$root" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@" \
    bash -lc "cd /src/gcnserve && $cmd"
}

command -v mmdebstrap >/dev/null || apt-get install -y -qq mmdebstrap >/dev/null
step "host: $(. /etc/os-release && echo "$PRETTY_NAME"), $(nproc) cores, $(/usr/local/go/bin/go version)"
step "mmdebstrap --variant=minbase --include=ca-certificates $suite $root"
nice mmdebstrap --variant=minbase --include=ca-certificates "$suite" "$root" >"$logs/mmdebstrap.log" 2>&1 ||
  die "mmdebstrap failed: $logs/mmdebstrap.log"
step "chroot: $(du -sh --one-file-system "$root" | cut -f1), $(chroot "$root" dpkg-query -W | wc -l) packages; make: $(chroot "$root" sh -c 'command -v make || echo absent'), gcc: $(chroot "$root" sh -c 'command -v gcc || echo absent'), curl: $(chroot "$root" sh -c 'command -v curl || echo absent'), git: $(chroot "$root" sh -c 'command -v git || echo absent')"

cp -a /usr/local/go "$root/usr/local/go"
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount -t sysfs sys "$root/sys" && mounted+=("$root/sys")
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/src"
git clone -q --no-local --no-checkout "$repo" "$root/src/gcnserve"
git -C "$root/src/gcnserve" checkout -q --detach "$commit"
step "clean clone of $(git -C "$repo" rev-parse --short "$commit") in /src/gcnserve; Go copied to /usr/local/go; /dev, /proc, /sys mounted"

# A free loopback port (the host may already serve :9999).
port=""
for p in $(shuf -i 20000-29999 -n 20); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || die "no free loopback port"

first=$(awk '/^```sh$/ { inblock = 1; next } inblock { print; exit }' "$root/src/gcnserve/README.md" | sed 's/[[:space:]]*#.*$//; s/[[:space:]]*$//')
[ -n "$first" ] || die "no first command in the README's first sh block"
step "README's first command: $first (GCNSERVE_ADDR=127.0.0.1:$port)"
t0=$SECONDS
setsid bash -c "$(declare -f in_chroot); root=$root port=$port; in_chroot '$first' GCNSERVE_ADDR=127.0.0.1:$port" >"$logs/run.log" 2>&1 &
server_pid=$!
served=0
while kill -0 "$server_pid" 2>/dev/null && [ $((SECONDS - t0)) -lt "$run_timeout" ]; do
  if grep -qs 'serving gRPC' "$logs/run.log"; then served=1; break; fi
  sleep 2
done
if [ "$served" -eq 0 ]; then
  step "FAIL: no 'serving gRPC' after $((SECONDS - t0))s; last lines of $logs/run.log:"
  tail -n 15 "$logs/run.log" | sed 's/^/    /' | tee -a "$summary"
  exit 1
fi
step "listening after $((SECONDS - t0))s; what installed itself:"
grep -E '^install_deps|^fetch_ort|^  [a-z]' "$logs/run.log" | sed 's/^/    /' | tee -a "$summary" || true

# SERVING: the health check and a real inference, from the README's second terminal.
ok=0
for i in $(seq 60); do
  if in_chroot "bin/gcnclient --addr 127.0.0.1:$port examples/karate.json" >"$logs/client.log" 2>&1; then ok=1; break; fi
  sleep 2
done
[ "$ok" -eq 1 ] || { step "FAIL: bin/gcnclient examples/karate.json: $(tail -n 3 "$logs/client.log")"; exit 1; }
# A header and one line per karate-club member.
[ "$(grep -c . "$logs/client.log")" -eq 35 ] || { step "FAIL: bin/gcnclient printed $(grep -c . "$logs/client.log") lines, want 35 (header + 34 members)"; exit 1; }
step "SERVING: bin/gcnclient examples/karate.json answered $(grep -c . "$logs/client.log") lines; first: $(head -n 1 "$logs/client.log")"
# SIGTERM to the server alone, as Ctrl-C's SIGINT would reach it: it drains
# (--drain-delay, 5 s) and exits, and then so does `make run`.
gcnserve=""
for p in $(chroot_pids); do
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = gcnserve ] && gcnserve="$gcnserve $p"
done
[ -n "$gcnserve" ] || { step "FAIL: no gcnserve process in the chroot"; exit 1; }
kill -TERM $gcnserve
t1=$SECONDS
for i in $(seq 60); do kill -0 "$server_pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$server_pid" 2>/dev/null; then
  step "FAIL: '$first' still running 60s after SIGTERM to gcnserve"
  exit 1
fi
rc=0
wait "$server_pid" || rc=$?
server_pid=""
step "SIGTERM: '$first' ended after $((SECONDS - t1))s, exit status $rc; server log: $(grep -o 'msg="stopped gracefully"' "$logs/run.log" || echo 'no "stopped gracefully"')"

if [ "$run_test" -eq 1 ]; then
  second=$(awk '/^```sh$/ { inblock = 1; next } inblock { n++ } inblock && n == 2 { print; exit }' "$root/src/gcnserve/README.md" | sed 's/[[:space:]]*#.*$//; s/[[:space:]]*$//')
  step "README's second command: $second"
  t0=$SECONDS
  if timeout "$test_timeout" bash -c "$(declare -f in_chroot); root=$root port=$port; in_chroot '$second'" >"$logs/test.log" 2>&1; then
    step "PASS: '$second' in $((SECONDS - t0))s ($(grep -c '^ok' "$logs/test.log") packages ok)"
  else
    step "FAIL: '$second' after $((SECONDS - t0))s; last lines of $logs/test.log:"
    tail -n 30 "$logs/test.log" | sed 's/^/    /' | tee -a "$summary"
    exit 1
  fi
fi
step "done; logs in $logs"
