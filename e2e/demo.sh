#!/usr/bin/env bash
# The local demo: three hello replicas, dev certificates and the gateway with
# config/demo.toml, all on 127.0.0.1. Ctrl-C stops everything. First installs what it
# needs and is missing (e2e/setup.sh demo: a C compiler, cmake, openssl, curl).
#
#   e2e/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

e2e/setup.sh demo
cargo build --quiet --workspace --bins
# (Re)make dev certificates when missing or expiring within a day.
if ! openssl x509 -checkend 86400 -noout -in certs/dev/tls/tls.crt >/dev/null 2>&1; then
  certs/dev-certs.sh --out certs/dev/tls --ca certs/dev/ca
fi

pids=()
cleanup() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "demo: stopped"
}
trap cleanup EXIT INT TERM

for i in 1 2 3; do
  target/debug/hello --listen "127.0.0.1:900$i" --name "hello-$i" >/dev/null &
  pids+=($!)
done
target/debug/gateway check --config config/demo.toml >/dev/null
target/debug/gateway run --config config/demo.toml &
pids+=($!)

ready=""
for _ in $(seq 300); do
  if curl -fsS http://127.0.0.1:9090/readyz >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "demo: the gateway is not ready after 30 s" >&2; exit 1; }
cat <<MSG

demo: the gateway serves https://localhost:8443/ (http://localhost:8080/ redirects there).
Try (verified TLS with the dev CA, no -k):

  curl --cacert certs/dev/tls/ca.crt https://localhost:8443/

Each answer's x-hello-instance header names the replica (curl -i). Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
