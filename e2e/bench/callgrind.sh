#!/usr/bin/env bash
# Instructions per request (valgrind's callgrind, user space only): the README's
# repeatable figure, where wall-clock runs on a shared machine are not. One gateway
# worker (`[server] threads = 1`) in front of three hello replicas on loopback; per
# scenario, 2,000 warm-up requests, then the measured ones with instrumentation on:
#
#   h1   plain HTTP/1.1    h2load --h1 -n N -c 64
#   tls  HTTPS HTTP/1.1    h2load --h1 -n N -c 64   (the 64 handshakes included)
#   h2   HTTPS HTTP/2      h2load -n N -c 16 -m 10  (the 16 handshakes included)
#
#   e2e/bench/callgrind.sh [GATEWAY_BINARY] [SCENARIOS]
#
# GATEWAY_BINARY defaults to target/release/gateway (build it first:
# `cargo build --release -p gateway`); SCENARIOS to "h1 tls h2"; N=5000 requests;
# KEEP=DIR keeps the profiles there (`callgrind_annotate DIR/callgrind.h1.1`);
# ROUTES=N adds N routes of every match kind that the requests do not match
# (compare.py routes: the growth scenario's table); ROUTE='...' adds TOML lines to the
# route the requests take (its filters: `request_headers = { set = { "x-a" = "1" } }`);
# HEADER='Name: value' is sent with every request (an `Origin` for a CORS route);
# EXTRA='...' adds top-level TOML tables at the end (`[tracing]` and its fields).
# Needs valgrind, h2load (nghttp2-client), openssl and the hello binary
# (`cargo build -p e2e --bin hello`). Prints one line per scenario.
set -eu
cd "$(dirname "$0")/../.."
bin=${1:-target/release/gateway}
scenarios=${2:-h1 tls h2}
N=${N:-5000}
hello=target/release/hello
[ -x "$hello" ] || hello=target/debug/hello
work=$(mktemp -d /tmp/bench-callgrind.XXXXXX)
hpids=()
cleanup() {
  [ ${#hpids[@]} -eq 0 ] || kill "${hpids[@]}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
wait_port() {
  for _ in $(seq 600); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.2; done
  echo "nothing listens on port $1" >&2
  exit 1
}
mkdir "$work/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$work/certs/tls.key" -out "$work/certs/tls.crt" -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost 2>/dev/null
ports=(19101 19102 19103)
for port in "${ports[@]}"; do
  "$hello" --listen "127.0.0.1:$port" --name "hello-$port" >/dev/null &
  hpids+=($!)
done
for port in "${ports[@]}"; do wait_port "$port"; done
cat >"$work/gateway.toml" <<TOML
[server]
threads = 1
[[listener]]
name = "https"
listen = "127.0.0.1:18543"
tls = { certs = ["$work/certs"] }
[[listener]]
name = "http"
listen = "127.0.0.1:18180"
[upstream.hello]
servers = ["127.0.0.1:19101", "127.0.0.1:19102", "127.0.0.1:19103"]
[[route]]
path_prefix = "/"
upstream = "hello"
${ROUTE:-}
${EXTRA:-}
TOML
[ "${ROUTES:-0}" -eq 0 ] || python3 e2e/bench/compare.py routes "$ROUTES" >>"$work/gateway.toml"
for s in $scenarios; do
  case $s in
    h1) url=http://127.0.0.1:18180/ args=(--h1 -c 64) ;;
    tls) url=https://127.0.0.1:18543/ args=(--h1 -c 64) ;;
    h2) url=https://127.0.0.1:18543/ args=(-c 16 -m 10) ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
  [ -z "${HEADER:-}" ] || args+=(-H "$HEADER")
  out="$work/callgrind.$s"
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$bin" run --config "$work/gateway.toml" 2>"$work/gateway.$s.log" &
  gw=$!
  wait_port 18180
  h2load "${args[@]}" -n 2000 "$url" >/dev/null 2>&1
  callgrind_control -i on "$gw" >/dev/null 2>&1
  h2load "${args[@]}" -n "$N" "$url" >"$work/load.$s" 2>&1 || true
  callgrind_control -i off "$gw" >/dev/null 2>&1
  callgrind_control -d "$gw" >/dev/null 2>&1
  kill -INT "$gw" 2>/dev/null || true
  wait "$gw" 2>/dev/null || true
  done=$(grep -o '[0-9]* succeeded' "$work/load.$s" | head -1 | cut -d' ' -f1)
  total=$(sed -n 's/^totals: //p' "$out.1")
  echo "$s: $done requests, $total instructions, $((total / done)) per request"
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$out.1" "$KEEP/callgrind.$s.1"; fi
done
