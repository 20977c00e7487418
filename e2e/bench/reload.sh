#!/usr/bin/env bash
# Reload benchmark: the gateway's live reload against `nginx -s reload`, on loopback.
# Installs nginx if missing, builds in release mode, prints a Markdown table.
#
#   e2e/bench/reload.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nginx >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
command -v openssl >/dev/null || { echo "reload.sh: openssl is needed" >&2; exit 1; }
cargo build --release --quiet --workspace --bins
echo "machine: $(nproc) CPUs, $(uname -sr); $(nginx -v 2>&1); $(date -u +%Y-%m-%d)"
exec target/release/reload-bench
