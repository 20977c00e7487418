#!/usr/bin/env bash
# The Docker engine and images for e2e/tests/container.rs, on a machine where no image
# registry is reachable (see ../shared/README.md). Needs root (CI runs as root).
#
#   e2e/container/run.sh up     install docker.io and debootstrap if missing, start
#                               dockerd if none answers, build the local base images if
#                               missing, build the gateway image from docker/Dockerfile
#   e2e/container/run.sh down   remove the test's containers; stop dockerd if `up`
#                               started it
#
# Base images, cached in the engine by name (delete them to rebuild):
#   gateway-test/debian:bookworm           debootstrap --variant=minbase bookworm
#   gateway-test/cc-debian12:nonroot       like distroless cc: libc6, libgcc-s1 and
#                                          base-files, no shell, a nonroot (65532) user
#   gateway-test/rust:<rustc version>-bookworm
#                                          like the official rust image: the Debian base,
#                                          cmake and gcc, the host's Rust toolchain and
#                                          crates.io cache (rust.Dockerfile)
# The gateway image ($GATEWAY_IMAGE, default gateway:test) is built on every `up`; the
# engine's layer cache makes that quick when the build context did not change (any
# file change outside .dockerignore means a full release build, ~12 minutes on 2 CPUs).
# GATEWAY_CONTAINER_BUILD=0 skips that build and uses the image as it is.
#
# Logs and state go to $GATEWAY_CONTAINER_STATE (default target/container).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

state=${GATEWAY_CONTAINER_STATE:-$repo/target/container}
gateway_image=${GATEWAY_IMAGE:-gateway:test}
debian_image=gateway-test/debian:bookworm
runtime_image=gateway-test/cc-debian12:nonroot
suite=bookworm
# Containers the test runs carry this label; `down` removes any it left behind.
label=gateway-e2e=container
# The legacy builder: no buildx plugin is needed, and it reads local base images.
export DOCKER_BUILDKIT=0
# The docker.io client (matches the engine) rather than any other docker on PATH.
docker=docker
[ -x /usr/bin/docker ] && docker=/usr/bin/docker

log() { printf '[container] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# phase NAME CMD...: runs CMD with its output in $state/NAME.log, says how long it took,
# and shows the log's tail if it failed.
phase() {
  local name=$1
  shift
  local start=$SECONDS
  log "$name ..."
  # A subshell with errexit of its own (an `if` around it would switch errexit off).
  set +e
  (
    set -e
    "$@"
  ) >"$state/$name.log" 2>&1
  local status=$?
  set -e
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$state/$name.log" >&2
    die "$name failed (log: $state/$name.log)"
  fi
  log "$name done in $((SECONDS - start))s"
}

have_image() { "$docker" image inspect "$1" >/dev/null 2>&1; }

engine_answers() { "$docker" info >/dev/null 2>&1; }

# Our dockerd's pid, if the pid file names a running dockerd.
our_dockerd() {
  local pid
  pid=$(cat "$state/dockerd.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

start_engine() {
  if engine_answers; then
    log "using the running Docker engine"
    return
  fi
  log "starting dockerd (log: $state/dockerd.log)"
  # No bridge and no iptables (there is none to manage here): containers use --network host.
  setsid dockerd --bridge=none --iptables=false </dev/null >"$state/dockerd.log" 2>&1 &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 150); do
    engine_answers && return
    our_dockerd >/dev/null || break
    sleep 0.2
  done
  tail -n 20 "$state/dockerd.log" >&2
  die "dockerd did not start"
}

stop_engine() {
  local pid
  if ! pid=$(our_dockerd); then
    rm -f "$state/dockerd.pid"
    return
  fi
  log "stopping dockerd ($pid)"
  kill -TERM "$pid"
  for _ in $(seq 150); do
    [ -d "/proc/$pid" ] || break
    sleep 0.2
  done
  if [ -d "/proc/$pid" ]; then
    log "dockerd did not stop in 30s: killing it"
    kill -KILL "$pid" || true
  fi
  rm -f "$state/dockerd.pid"
}

# The Debian mirror apt uses here (debootstrap needs one).
mirror() {
  local url
  url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v '^[[:space:]]*#' | grep -oE 'https?://[^[:space:]]+' | grep -E '/debian/?$' | head -n 1 || true)
  echo "${DEBIAN_MIRROR:-${url:-http://deb.debian.org/debian}}"
}

import_dir() { # DIR IMAGE [docker import --change ...]
  local dir=$1 image=$2
  shift 2
  tar --numeric-owner -C "$dir" -c . | "$docker" import "$@" - "$image"
}

debootstrap_rootfs() {
  rm -rf "$state/rootfs"
  debootstrap --variant=minbase "$suite" "$state/rootfs" "$(mirror)"
}

# distroless cc's content, from the packages debootstrap downloaded.
runtime_rootfs() {
  local dir=$state/runtime-rootfs pkg deb
  rm -rf "$dir"
  mkdir -p "$dir"
  for pkg in base-files libc6 libgcc-s1; do
    deb=$(ls "$state/rootfs/var/cache/apt/archives/${pkg}"_*.deb)
    dpkg-deb -x "$deb" "$dir"
  done
  mkdir -p "$dir/etc" "$dir/tmp" "$dir/home/nonroot"
  chmod 1777 "$dir/tmp"
  chown 65532:65532 "$dir/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
  # No shell, like distroless: the image must run without one.
  ! ls "$dir"/bin/sh "$dir"/usr/bin/sh >/dev/null 2>&1 || die "the runtime base has a shell"
}

base_images() {
  if ! have_image "$debian_image" || ! have_image "$runtime_image"; then
    phase debootstrap debootstrap_rootfs
    phase runtime-rootfs runtime_rootfs
    phase import-runtime import_dir "$state/runtime-rootfs" "$runtime_image" \
      --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot'
    rm -rf "$state/rootfs/var/cache/apt/archives/"*.deb
    phase import-debian import_dir "$state/rootfs" "$debian_image" \
      --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    rm -rf "$state/rootfs" "$state/runtime-rootfs"
  fi
  local version deps old
  version=$(rustc --version | awk '{ print $2 }')
  # The image carries cargo's registry as it was when it was built: a new dependency in
  # Cargo.lock (nothing is downloaded inside the build) needs a new image.
  cargo fetch --locked --quiet
  deps=$(sha256sum Cargo.lock | cut -c1-12)
  rust_image=gateway-test/rust:$version-$suite-$deps
  if ! have_image "$rust_image"; then
    phase rust-context rust_context
    phase rust-image "$docker" build --network host -f e2e/container/rust.Dockerfile \
      --build-arg "BASE_IMAGE=$debian_image" -t "$rust_image" "$state/rust-context"
    rm -rf "$state/rust-context"
    for old in $("$docker" images --format '{{.Repository}}:{{.Tag}}' gateway-test/rust); do
      [ "$old" = "$rust_image" ] || "$docker" rmi "$old" >/dev/null 2>&1 || true
    done
  fi
}

# The build context of rust.Dockerfile: the host toolchain's sysroot (without docs and
# sources) and cargo's registry cache and index (hard links where possible).
rust_context() {
  local ctx=$state/rust-context sysroot cargo_home part
  sysroot=$(rustc --print sysroot)
  cargo_home=${CARGO_HOME:-$HOME/.cargo}
  rm -rf "$ctx"
  mkdir -p "$ctx/rust" "$ctx/cargo/registry"
  for part in bin lib libexec etc; do
    [ -d "$sysroot/$part" ] || continue
    cp -al "$sysroot/$part" "$ctx/rust/" 2>/dev/null || cp -a "$sysroot/$part" "$ctx/rust/"
  done
  rm -rf "$ctx/rust/lib/rustlib/src" "$ctx/rust/lib/rustlib/rustc-src"
  [ -x "$ctx/rust/bin/cargo" ] || die "no cargo in $sysroot/bin"
  for part in cache index; do
    [ -d "$cargo_home/registry/$part" ] || continue
    cp -al "$cargo_home/registry/$part" "$ctx/cargo/registry/" 2>/dev/null ||
      cp -a "$cargo_home/registry/$part" "$ctx/cargo/registry/"
  done
}

gateway_image() {
  phase gateway-image "$docker" build --network host -f docker/Dockerfile --label "$label" \
    --build-arg "RUST_IMAGE=$rust_image" --build-arg "RUNTIME_IMAGE=$runtime_image" \
    -t "$gateway_image" .
  # Keep the build stage of this build (it is untagged: the next build with the same
  # sources reuses it) and remove the previous one (~2.5 GB each), and the previous
  # image (untagged now, with our label).
  local stage previous
  stage=$(awk '/^Step [0-9]+\/[0-9]+ : FROM /{ n++ } n == 1 && /^ ---> [0-9a-f]+$/{ id = $2 } END { print id }' \
    "$state/gateway-image.log")
  previous=$("$docker" image inspect --format '{{.Id}}' "$gateway_image-build" 2>/dev/null || true)
  if [ -n "$stage" ]; then
    "$docker" tag "$stage" "$gateway_image-build"
    if [ -n "$previous" ] && [ "$previous" != "$("$docker" image inspect --format '{{.Id}}' "$stage")" ]; then
      "$docker" rmi "$previous" >/dev/null 2>&1 || true
    fi
  fi
  "$docker" image prune -f --filter "label=$label" >/dev/null
}

up() {
  local start=$SECONDS
  # docker.io and debootstrap, when missing (nothing is done when both are there).
  e2e/setup.sh container
  start_engine
  base_images
  if [ "${GATEWAY_CONTAINER_BUILD:-1}" = 0 ]; then
    have_image "$gateway_image" || die "GATEWAY_CONTAINER_BUILD=0 but there is no image $gateway_image"
    log "using the existing image $gateway_image (GATEWAY_CONTAINER_BUILD=0)"
  else
    gateway_image
  fi
  log "image $gateway_image ready in $((SECONDS - start))s"
}

down() {
  if engine_answers; then
    local ids
    ids=$("$docker" ps -aq --filter "label=$label")
    [ -z "$ids" ] || echo "$ids" | xargs "$docker" rm -f >/dev/null
  fi
  stop_engine
}

[ "$(id -u)" -eq 0 ] || die "needs root (apt-get, dockerd, debootstrap)"
mkdir -p "$state"
case "${1:-}" in
up) up ;;
down) down ;;
*) die "usage: $0 up|down" ;;
esac
