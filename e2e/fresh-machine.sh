#!/usr/bin/env bash
# The README's two commands on a fresh machine: builds a clean Debian 12 (bookworm) root
# filesystem with debootstrap (minbase), copies in this machine's Rust toolchain (rustup
# and its default toolchain, no crate cache) and a clean checkout of HEAD, and in a
# chroot runs
#   - e2e/test.sh as a non-root user first: it must install nothing, print the
#     `sudo apt-get install` line and exit non-zero;
#   - e2e/demo.sh, in its own root filesystem: until the gateway answers the line the demo
#     prints (curl with the dev CA), then SIGINT to its process group, as Ctrl-C sends;
#     twice, the second run must install nothing;
#   - e2e/test.sh, in another root filesystem: the whole suite, twice, the second run must
#     install nothing.
# It reports what each run installed (the `setup:` lines) and how long it took, in
# target/fresh-machine/report.txt too. Needs root (debootstrap, chroot, mounts). The
# container test is opt-in (ignored by e2e/test.sh) and Docker does not run in a chroot.
# Takes ~40 min on 2 CPUs (two cold builds) and ~10 GB under target/fresh-machine.
#
#   e2e/fresh-machine.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

log() { printf '[fresh-machine] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts)"
# Every mount below is made in a private mount namespace of this script's own: none is
# seen outside it, and all go when the script ends.
if [ -z "${FRESH_MACHINE_UNSHARED:-}" ]; then
  FRESH_MACHINE_UNSHARED=1 exec unshare --mount --propagation private "$0" "$@"
fi

e2e/setup.sh rootfs
state=$repo/target/fresh-machine
suite=bookworm
# The demo's fixed ports (config/demo.toml and e2e/demo.sh): they must be free.
demo_ports=(8080 8443 9090 9001 9002 9003)
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
toolchain=$(rustup default | awk '{ print $1 }')
[ -d "$rustup_home/toolchains/$toolchain" ] || die "no toolchain $toolchain in $rustup_home"
commit=$(git rev-parse HEAD)
git diff --quiet HEAD || log "note: uncommitted changes are not copied (the checkout is $commit)"

# The Debian mirror apt uses here (as e2e/container/run.sh finds it).
mirror() {
  local url
  url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v '^[[:space:]]*#' | grep -oE 'https?://[^[:space:]]+' | grep -E '/debian/?$' | head -n 1 || true)
  echo "${DEBIAN_MIRROR:-${url:-http://deb.debian.org/debian}}"
}

report=()
note() {
  log "$*"
  report+=("$*")
}

# A root filesystem for one command: the pristine one, the toolchain, the checkout.
make_root() { # NAME
  local root=$state/$1
  cp -a "$state/pristine" "$root"
  # The network of this workplace, as every machine here has it: its resolver, and the
  # CA certificates of its HTTPS egress (ca-certificates adds them to the bundle when
  # e2e/setup.sh installs it).
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  if [ -d /usr/local/share/ca-certificates ]; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
  fi
  # The toolchain only: rustup's proxies and settings, the default toolchain; no crates.
  mkdir -p "$root/root/.cargo" "$root/root/.rustup/toolchains"
  cp -a "$cargo_home/bin" "$root/root/.cargo/"
  cp -a "$rustup_home/settings.toml" "$root/root/.rustup/"
  cp -a "$rustup_home/toolchains/$toolchain" "$root/root/.rustup/toolchains/"
  git clone -q --no-hardlinks "$repo" "$root/src"
  git -C "$root/src" checkout -q --detach "$commit"
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --bind /dev "$root/dev"
  mount --bind /dev/pts "$root/dev/pts"
  mount -t tmpfs tmpfs "$root/dev/shm"
}

# The machine's variables that name the CA bundle (pip, for one, reads only PIP_CERT).
ca_env=()
for var in SSL_CERT_FILE SSL_CERT_DIR PIP_CERT REQUESTS_CA_BUNDLE CURL_CA_BUNDLE; do
  [ -z "${!var:-}" ] || ca_env+=("$var=${!var}")
done

# in_root NAME [--user UID] COMMAND: runs COMMAND (bash) in /src of root NAME, with the
# environment of a fresh login: HOME, PATH (with rustup's), TERM, LANG and the CA
# bundle's variables.
in_root() {
  local root=$state/$1
  shift
  local as=()
  if [ "$1" = --user ]; then
    as=(setpriv --reuid "$2" --regid "$2" --clear-groups)
    shift 2
  fi
  chroot "$root" "${as[@]}" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 "${ca_env[@]}" \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /src && $1"
}

# What a run installed: its `setup:` lines, or "nothing".
installed() { # LOG
  local lines
  lines=$(grep '^setup: installed' "$1" | sed 's/^setup: installed /    /' || true)
  echo "${lines:-    nothing}"
}

fresh_root() {
  umount_all
  # Never remove a tree with /dev or /proc still mounted in it.
  ! findmnt -rn -o TARGET | grep -q "^$state/" || die "mounts left under $state"
  rm -rf "$state"
  mkdir -p "$state"
  local start=$SECONDS
  log "debootstrap --variant=minbase $suite from $(mirror) (log: $state/debootstrap.log)"
  debootstrap --variant=minbase "$suite" "$state/pristine" "$(mirror)" >"$state/debootstrap.log" 2>&1 ||
    {
      tail -n 20 "$state/debootstrap.log" >&2
      die "debootstrap failed"
    }
  rm -rf "$state/pristine/var/cache/apt/archives/"*.deb
  note "debootstrap $suite minbase: $((SECONDS - start)) s"
}

umount_all() {
  local m
  for m in $(findmnt -rn -o TARGET | grep "^$state/" | sort -r); do
    umount "$m" || umount -l "$m"
  done
}

nonroot_run() {
  local out rc=0 start=$SECONDS
  out=$(in_root test --user 65534 "e2e/test.sh" 2>&1) || rc=$?
  printf '%s\n' "$out" >"$state/nonroot.log"
  [ "$rc" -ne 0 ] || die "e2e/test.sh as a non-root user exited 0 with nothing installed"
  grep -q '^sudo apt-get install -y --no-install-recommends ' <<<"$out" ||
    die "e2e/test.sh as a non-root user did not print the apt-get line: $out"
  note "e2e/test.sh as uid 65534, nothing installed: exit $rc in $((SECONDS - start)) s, printed:"
  note "    $(grep '^sudo apt-get' <<<"$out")"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

demo_run() { # N
  local n=$1 out=$state/demo-$1.log start=$SECONDS pid ready="" answer rc=0 port
  for port in "${demo_ports[@]}"; do
    ! port_busy "$port" || die "port $port is in use: the demo needs ${demo_ports[*]}"
  done
  # Job control: the demo gets a process group of its own, and SIGINT is not ignored in it.
  set -m
  in_root demo "e2e/demo.sh" >"$out" 2>&1 &
  pid=$!
  set +m
  while kill -0 "$pid" 2>/dev/null; do
    if grep -q '^demo: the gateway serves' "$out"; then ready=$SECONDS; break; fi
    [ $((SECONDS - start)) -lt 3600 ] || break
    sleep 0.5
  done
  if [ -z "$ready" ]; then
    kill -INT -- "-$pid" 2>/dev/null || true
    tail -n 30 "$out" >&2
    die "demo run $n did not become ready (log: $out)"
  fi
  answer=$(in_root demo "curl -fsS --cacert certs/dev/tls/ca.crt https://localhost:8443/" 2>&1) || true
  # Ctrl-C: SIGINT to the whole process group.
  local stop=$SECONDS
  kill -INT -- "-$pid"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null || true
    die "demo run $n still running 30 s after SIGINT (log: $out)"
  fi
  wait "$pid" || rc=$?
  [ "$answer" = '{"message":"Hello"}' ] || die "demo run $n: the gateway answered '$answer' (log: $out)"
  grep -q '^demo: stopped' "$out" || die "demo run $n did not say it stopped (log: $out)"
  note "e2e/demo.sh run $n: ready in $((ready - start)) s, answered $answer, stopped $((SECONDS - stop)) s after SIGINT (exit $rc); installed:"
  note "$(installed "$out")"
  again "$n" "$out" "demo"
}

# A second run installs nothing.
again() { # N LOG WHAT
  [ "$1" = 1 ] || ! grep -q '^setup: installing' "$2" || failed+=("$3 run $1 installed something (log: $2)")
}

test_run() { # N
  local n=$1 out=$state/test-$1.log start=$SECONDS rc=0 totals
  set +e
  in_root test "e2e/test.sh" 2>&1 | tee "$out" | grep -E '^(setup:|test result:|error)' >&2
  rc=${PIPESTATUS[0]}
  set -e
  totals=$(awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "%d passed, %d failed, %d ignored", p, f, s }' "$out")
  note "e2e/test.sh run $n: exit $rc in $((SECONDS - start)) s ($totals); installed:"
  note "$(installed "$out")"
  again "$n" "$out" "test"
  [ "$rc" -eq 0 ] || failed+=("test run $n (log: $out)")
}

failed=()
fresh_root
make_root demo
make_root test
nonroot_run
demo_run 1
demo_run 2
test_run 1
test_run 2
# Checking what is present, on its own, once everything is installed.
start_ns=$(date +%s%N)
in_root test "e2e/setup.sh test"
note "e2e/setup.sh test with everything installed: $((($(date +%s%N) - start_ns) / 1000000)) ms"
umount_all

printf '%s\n' "${report[@]}" >"$state/report.txt"
echo "== fresh machine ($suite minbase, $toolchain, checkout $commit):"
printf '%s\n' "${report[@]}"
[ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]}"
