#!/usr/bin/env bash
# Benchmark suite: the gateway against nginx and HAProxy with equivalent configs
# (e2e/bench/gateway.toml.tmpl, nginx.conf.tmpl, haproxy.cfg.tmpl: the same certificate,
# TLS 1.2 + 1.3, keep-alive upstream pools, no access logs, one worker thread each, two
# in scenario 9) in front of three hello replicas, all on loopback. One proxy runs at a time; the proxies
# alternate run by run, for ROUNDS rounds. Installs its tools if missing (Debian), builds
# in release mode, prints one Markdown table. About 25 minutes on 2 CPUs.
#
#   e2e/bench/compare.sh
#
# Environment: ROUNDS=2, S1_ROUNDS=3 (scenario 1 carries the gateway variants of 7 and 8,
# whose differences are small next to the gateway's ±8% run-to-run spread), DURATION=8
# seconds per run, IDLE_CONNS=10000, ONLY="s1 s2 s3e s3r s4 s5 s6 s9 s10 s13"
# (scenarios to run; 7, 8 and 11 are gateway variants in s1).
#
#   1. HTTPS HTTP/1.1 keep-alive, small GET     wrk -t1 -c64
#   2. HTTPS HTTP/2                             h2load -t1 -c16 -m10
#   3. a full TLS handshake per request         2 × openssl s_time -new (no resumption), ECDSA and RSA-2048
#   4. plain HTTP/1.1 keep-alive                wrk -t1 -c64
#   5. IDLE_CONNS idle TLS keep-alive connections (compare.py idle): RSS per connection
#   6. 1 MiB responses                          wrk -t1 -c16, hello ?size=1048576
#   7. the gateway with 1,000 routes of every match kind (compare.py routes), and with a
#      100-server upstream, under load 1
#   8. the gateway with production features on (access log to a file, admin listener with
#      /metrics scraped every second, active health checks every second), all and one by
#      one, under load 1; off is scenario 1's gateway (RUST_LOG=warn, no admin, no checks);
#      and OpenTelemetry tracing to an OTLP receiver on loopback (otlp-receiver, HTTP) at
#      sample_ratio 1.0 and 0.01
#   9. two workers each (gateway threads = 2, nginx worker_processes 2, HAProxy nbthread 2),
#      under load 1: reported, no target (wrk shares the 2 CPUs with them)
#  10. gzip of a 64 KiB JSON response, gateway and nginx  wrk -t1 -c16 -H 'Accept-Encoding: gzip'
#      (CPU per MiB of JSON compressed; the compressed sizes are printed under the table),
#      and the gateway's br and zstd at their defaults (Debian's nginx has neither)
#  11. the gateway with route filters under load 1: request_headers + response_headers,
#      and a CORS route with requests from an allowed Origin (the same Origin sent to
#      scenario 1's route, which has no CORS, is the variant it is measured against)
#  12. the gateway with a rate limit on the route that never trips, under load 1: per
#      replica, and shared through a redis-server on loopback ([rate_limit] shared)
#  14. the gateway with route auth under load 1: basic auth (a verified, cached
#      credential), forward auth to authsvc on loopback (answering at once), and JWT
#      auth (ES256): one token (verified once, then kept) and every request a token
#      not verified before (wrk -s jwt-tokens.lua cycling through 100,000)
#  13. unary gRPC calls over HTTPS HTTP/2 to the greeter (tonic, h2c), gateway and nginx
#      (grpc_pass)                              h2load -t1 -c16 -m10, a SayHello message
#
# S1_VARIANTS="gw-..." runs only those gateway variants in scenario 1 (default: all).
#
# CPU µs per request is the proxy's utime+stime over a run (/proc/PID/stat; nginx: master
# + worker) divided by the requests completed. The load generator shares the CPUs with the
# proxy and the replicas, so requests/s and latency depend on it; CPU per request is the
# stable figure. Peak RSS is VmHWM (nginx: the sum over its processes); each run starts a
# fresh proxy.
set -euo pipefail
cd "$(dirname "$0")/../.."
bench=e2e/bench
ROUNDS=${ROUNDS:-2}
S1_ROUNDS=${S1_ROUNDS:-$((ROUNDS + 1))}
DURATION=${DURATION:-8}
IDLE_CONNS=${IDLE_CONNS:-10000}
ONLY=${ONLY:-s1 s2 s3e s3r s4 s5 s6 s9 s10 s13} # scenarios to run (7, 8 and 11 are variants in s1)
nginx_gzip="gzip off;"
gateway_grpc="" nginx_grpc="" nginx_grpc_upstream=""
HTTPS_PORT=18443
HTTP_PORT=18080
ADMIN_PORT=19090
HELLO_PORTS=(19001 19002 19003)
REDIS_PORT=19379
GREETER_PORT=19051
AUTH_PORT=19052
OTLP_PORT=19318

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for tool in nginx:nginx haproxy:haproxy wrk:wrk h2load:nghttp2-client openssl:openssl \
  curl:curl python3:python3 cmake:cmake top:procps redis-server:redis-server htpasswd:apache2-utils; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build --release --quiet --workspace --bins

# File descriptors: the idle scenario needs IDLE_CONNS in the client and in the proxy.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
if [ "$IDLE_CONNS" -gt $((nofile - 1000)) ]; then
  echo "compare.sh: open files limited to $nofile: $((nofile - 1000)) idle connections, not $IDLE_CONNS" >&2
  IDLE_CONNS=$((nofile - 1000))
fi

# HAProxy wants two descriptors per connection (client and server side) for its maxconn.
haproxy_maxconn=$((IDLE_CONNS + 100))
if [ $((2 * haproxy_maxconn + 100)) -gt "$nofile" ]; then
  haproxy_maxconn=$(((nofile - 100) / 2))
  echo "compare.sh: open files limited to $nofile: HAProxy's maxconn is $haproxy_maxconn" >&2
fi

work=$(mktemp -d /tmp/bench-compare.XXXXXX)
results=$work/results.jsonl
pids=()       # the replicas
proxy_pid=""  # the proxy under test (nginx: its master)
scraper=""    # the /metrics scrape loop
workers=1     # worker threads or processes of each proxy (scenario 9: 2)
cleanup() {
  trap - EXIT INT TERM
  stop_proxy
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

py() { python3 "$bench/compare.py" "$@"; }
die() { echo "compare.sh: $*" >&2; exit 1; }

# --- certificates and replicas ----------------------------------------------------------

certs/dev-certs.sh --out "$work/ecdsa" --ca "$work/ca" >/dev/null
certs/dev-certs.sh --key rsa --out "$work/rsa" --ca "$work/ca" >/dev/null
for kind in ecdsa rsa; do cat "$work/$kind/tls.crt" "$work/$kind/tls.key" >"$work/$kind/haproxy.pem"; done

# On 0.0.0.0 so that the 100-server upstream reaches the same three replicas as
# 127.0.0.1 ... 127.0.0.34 (scenario 7 then differs from scenario 1 only in the config).
for port in "${HELLO_PORTS[@]}"; do
  target/release/hello --listen "0.0.0.0:$port" --name "hello-$port" >/dev/null &
  pids+=($!)
done
for port in "${HELLO_PORTS[@]}"; do
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
done
# The shared rate limit's Redis (scenario 12), no persistence.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
pids+=($!)
# The gRPC backend of scenario 13, and the SayHello request it is sent: one gRPC frame
# (uncompressed, 4-byte length) holding HelloRequest { name = "bench" }.
target/release/greeter --listen "127.0.0.1:$GREETER_PORT" --name bench >/dev/null &
pids+=($!)
printf '\x00\x00\x00\x00\x07\x0a\x05bench' >"$work/grpc-call.bin"
# Scenario 14's auth: an htpasswd file (bcrypt, as htpasswd -B writes it) and the auth
# service of the forward auth variant.
htpasswd -B -b -c "$work/users" bench bench 2>/dev/null
target/release/authsvc --listen "127.0.0.1:$AUTH_PORT" >/dev/null &
pids+=($!)
# The JWT variants' key set and ES256 tokens: more than the 16,384 verified tokens the
# gateway keeps, so gw-jwt-new's requests (each the next token) are all verified anew.
target/release/jwtgen "$work" 100000
jwt_token=$(head -n 1 "$work/jwt-tokens")
export JWT_TOKENS="$work/jwt-tokens"
# Scenario 8's tracing variants export to an OTLP receiver (HTTP/protobuf) on loopback;
# it decodes and counts the spans (GET /_count) but prints none, as a collector on
# another machine would take no CPU from the gateway's.
target/release/otlp-receiver --protocol http --quiet --listen "127.0.0.1:$OTLP_PORT" >/dev/null &
pids+=($!)

# --- the proxies ------------------------------------------------------------------------

# gateway_config VARIANT CERT_DIR: gateway.toml for the baseline or one of the variants.
gateway_config() {
  local variant=$1 cert=$2 admin="" health="" routes="" fields="" servers shared="" tracing=""
  servers=$(printf '"127.0.0.1:%s", ' "${HELLO_PORTS[@]}")
  case $variant in
    gw-routes1000)
      py routes 999 >"$work/routes.toml"
      routes="@$work/routes.toml" ;;
    gw-servers100)
      servers=$(for i in $(seq 34); do for port in "${HELLO_PORTS[@]}"; do
        printf '"127.0.0.%s:%s", ' "$i" "$port"; done; done | cut -d' ' -f1-100) ;;
  esac
  case $variant in
    gw-headers) fields='request_headers = { set = { "x-env" = "prod" }, add = { "x-tag" = "a" }, remove = ["x-debug"] }
response_headers = { set = { "cache-control" = "no-store" }, remove = ["x-powered-by"] }' ;;
    gw-cors) fields='cors = { allow_origins = ["https://app.example.com"], allow_methods = ["GET", "POST"], expose_headers = ["x-request-id"] }' ;;
    gw-ratelimit) fields='rate_limit = { requests = 10000000 }' ;;
    gw-basic) fields="auth = { basic = { users = \"$work/users\" } }" ;;
    gw-forward) fields="auth = { forward = { url = \"http://127.0.0.1:$AUTH_PORT/oauth2/auth\", request_headers = [\"cookie\"], response_headers = [\"x-auth-request-user\"] } }" ;;
    gw-jwt | gw-jwt-new) fields="auth = { jwt = { jwks = \"$work/jwks.json\", audiences = [\"bench\"], claims_to_headers = { sub = \"x-user\" } } }" ;;
    gw-ratelimit-shared) fields='rate_limit = { requests = 10000000 }'
      shared="[rate_limit]
shared = { redis = \"redis://127.0.0.1:$REDIS_PORT\" }" ;;
  esac
  case $variant in
    gw-trace) tracing="[tracing]
otlp = { endpoint = \"http://127.0.0.1:$OTLP_PORT\" }
sample_ratio = 1.0" ;;
    gw-trace-1pct) tracing="[tracing]
otlp = { endpoint = \"http://127.0.0.1:$OTLP_PORT\" }
sample_ratio = 0.01" ;;
  esac
  case $variant in gw-prod | gw-admin) admin="[admin]
listen = \"127.0.0.1:$ADMIN_PORT\"" ;; esac
  case $variant in gw-prod | gw-health) health='health = { path = "/healthz", interval = "1s" }' ;; esac
  py render "$bench/gateway.toml.tmpl" WORKERS=$workers HTTPS_PORT=$HTTPS_PORT HTTP_PORT=$HTTP_PORT CERT_DIR="$cert" \
    SERVERS="${servers%, }" ADMIN="$admin" HEALTH="$health" EXTRA_ROUTES="$routes" ROUTE_FIELDS="$fields" RATE_LIMIT="$shared" \
    TRACING="$tracing" GRPC="$gateway_grpc"
}

# start PROXY CERT_DIR: starts it and waits until both listeners answer.
start_proxy() {
  local proxy=$1 cert=$2 servers="" log_level=warn log_format=text
  case $proxy in
    nginx)
      for port in "${HELLO_PORTS[@]}"; do servers+="server 127.0.0.1:$port; "; done
      py render "$bench/nginx.conf.tmpl" WORKERS=$workers WORK="$work" NOFILE="$nofile" HTTPS_PORT=$HTTPS_PORT \
        HTTP_PORT=$HTTP_PORT CERT_DIR="$cert" NGINX_SERVERS="$servers" GZIP="$nginx_gzip" GRPC="$nginx_grpc" \
        GRPC_UPSTREAM="$nginx_grpc_upstream" >"$work/nginx.conf"
      nginx -p "$work/" -c "$work/nginx.conf" -e "$work/nginx.error.log" -g 'daemon off;' \
        2>"$work/nginx.log" &
      proxy_pid=$! ;;
    haproxy)
      for port in "${HELLO_PORTS[@]}"; do servers+="    server s$port 127.0.0.1:$port
"; done
      py render "$bench/haproxy.cfg.tmpl" WORKERS=$workers NOFILE="$nofile" MAXCONN="$haproxy_maxconn" HTTPS_PORT=$HTTPS_PORT \
        HTTP_PORT=$HTTP_PORT CERT_DIR="$cert" HAPROXY_SERVERS="$servers" >"$work/haproxy.cfg"
      haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
      proxy_pid=$! ;;
    gateway | gw-*)
      gateway_config "$proxy" "$cert" >"$work/gateway.toml"
      case $proxy in
        gw-prod | gw-accesslog) log_level=info log_format=json ;; # as the container image logs
        gw-accesslog-text) log_level=info ;;
      esac
      RUST_LOG=$log_level GATEWAY_LOG_FORMAT=$log_format \
        target/release/gateway run --config "$work/gateway.toml" 2>"$work/gateway.log" &
      proxy_pid=$! ;;
  esac
  # An auth variant's route wants its credentials.
  local -a creds=()
  case $proxy in
    gw-basic) creds=(-u bench:bench) ;;
    gw-forward) creds=(-b session=ok-bench) ;;
    gw-jwt | gw-jwt-new) creds=(-H "Authorization: Bearer $jwt_token") ;;
  esac
  for _ in $(seq 100); do
    if curl -fsk --max-time 1 "${creds[@]}" "https://localhost:$HTTPS_PORT/" 2>/dev/null | grep -q Hello &&
      curl -fs --max-time 1 "${creds[@]}" "http://127.0.0.1:$HTTP_PORT/" 2>/dev/null | grep -q Hello; then
      break
    fi
    kill -0 "$proxy_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! curl -fsk --max-time 1 "${creds[@]}" "https://localhost:$HTTPS_PORT/" 2>/dev/null | grep -q Hello; then
    tail -n 20 "$work"/*.log >&2
    die "$proxy did not come up"
  fi
  case $proxy in
    gw-prod | gw-admin)
      (while :; do curl -fs --max-time 1 -o /dev/null "http://127.0.0.1:$ADMIN_PORT/metrics"; sleep 1; done) &
      scraper=$! ;;
  esac
}

# ppids: the proxy's processes (nginx: master and worker).
proxy_pids() { mapfile -t ppids < <(echo "$proxy_pid"; pgrep -P "$proxy_pid" || true); }

stop_proxy() {
  if [ -n "$scraper" ]; then kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; scraper=""; fi
  [ -n "$proxy_pid" ] || return 0
  # gateway: SIGINT exits at once (SIGTERM would keep serving for shutdown_delay);
  # nginx: SIGTERM is its fast shutdown; haproxy -db: SIGTERM stops at once.
  local sig=TERM
  [ "$(cat /proc/$proxy_pid/comm 2>/dev/null)" = gateway ] && sig=INT
  kill -s "$sig" "$proxy_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true
  proxy_pid=""
}

cpu_ticks() { proxy_pids; py sample "${ppids[@]}" | cut -d' ' -f1; }

# --- one run ----------------------------------------------------------------------------

https="https://localhost:$HTTPS_PORT/"
# A unary gRPC call as h2load sends it: POST of the request frame, gRPC's fields.
grpc_url="https://localhost:$HTTPS_PORT/greeter.v1.Greeter/SayHello"
grpc=(-d "$work/grpc-call.bin" -H "content-type: application/grpc" -H "te: trailers")
# measure SCENARIO PROXY ROUND: one load run against the running proxy, recorded.
measure() {
  local scenario=$1 proxy=$2 round=$3 out="$work/$1-$2-$3" t0 t1 cap=$((DURATION + 20))
  local -a record=(record "$results" --scenario "$scenario" --proxy "$proxy" --round "$round")
  local enc=gzip
  case $proxy in gw-br) enc=br ;; gw-zstd) enc=zstd ;; esac
  local -a hdr=()
  case $proxy in
    gw-cors | gw-origin) hdr=(-H "Origin: https://app.example.com") ;;
    gw-basic) hdr=(-H "Authorization: Basic $(printf bench:bench | base64)") ;;
    gw-forward) hdr=(-H "Cookie: session=ok-bench") ;;
    gw-jwt) hdr=(-H "Authorization: Bearer $jwt_token") ;;
    gw-jwt-new) hdr=(-s "$bench/jwt-tokens.lua") ;;
  esac
  case $scenario in # warm-up: pools filled, first-use allocations done
    s1 | s6 | s9) timeout 10 wrk -t1 -c64 -d1s "${hdr[@]}" "$https" >/dev/null ;;
    s10) timeout 10 wrk -t1 -c16 -d1s -H "Accept-Encoding: $enc" "$https?json=65536" >/dev/null ;;
    s2) timeout 10 h2load -t1 -c16 -m10 -n 5000 "$https" >/dev/null ;;
    s13) timeout 10 h2load -t1 -c16 -m10 -n 5000 "${grpc[@]}" "$grpc_url" >/dev/null ;;
    s4) timeout 10 wrk -t1 -c64 -d1s "http://127.0.0.1:$HTTP_PORT/" >/dev/null ;;
  esac
  if [ "$scenario" = s5 ]; then
    proxy_pids
    timeout 120 python3 "$bench/compare.py" idle "$results" --proxy "$proxy" --round "$round" \
      --port "$HTTPS_PORT" --conns "$IDLE_CONNS" --pids "${ppids[@]}"
    return
  fi
  local spans0=""
  case $proxy in gw-trace*) spans0=$(curl -s "http://127.0.0.1:$OTLP_PORT/_count") ;; esac
  t0=$(cpu_ticks)
  case $scenario in
    s1 | s9) timeout $cap wrk -t1 -c64 -d"${DURATION}s" --latency "${hdr[@]}" "$https" >"$out.txt" ;;
    s2) timeout $cap h2load -t1 -c16 -m10 -D "$DURATION" --log-file="$out.log" "$https" >"$out.txt" ;;
    s13) timeout $cap h2load -t1 -c16 -m10 -D "$DURATION" --log-file="$out.log" "${grpc[@]}" "$grpc_url" \
      >"$out.txt" ;;
    s3*)
      timeout $cap openssl s_time -connect "127.0.0.1:$HTTPS_PORT" -new -www / -time "$DURATION" >"$out.1.txt" 2>&1 &
      timeout $cap openssl s_time -connect "127.0.0.1:$HTTPS_PORT" -new -www / -time "$DURATION" >"$out.2.txt" 2>&1
      wait $! ;;
    s4) timeout $cap wrk -t1 -c64 -d"${DURATION}s" --latency "http://127.0.0.1:$HTTP_PORT/" >"$out.txt" ;;
    s6) timeout $cap wrk -t1 -c16 -d"${DURATION}s" --latency "$https?size=1048576" >"$out.txt" ;;
    s10) timeout $cap wrk -t1 -c16 -d"${DURATION}s" --latency -H "Accept-Encoding: $enc" "$https?json=65536" \
      >"$out.txt" ;;
  esac
  t1=$(cpu_ticks)
  proxy_pids
  if [ -n "$spans0" ]; then
    # What the receiver took during the round (and the second after it, when the
    # last batch goes), against the requests wrk made: the row is only worth its
    # number when the spans were exported, not dropped.
    sleep 1.5
    local spans requests
    spans=$(( $(curl -s "http://127.0.0.1:$OTLP_PORT/_count") - spans0 ))
    requests=$(awk '/requests in/ { print $1 }' "$out.txt")
    echo "$proxy round $round: $spans spans received for $requests requests" >>"$work/trace-spans"
  fi
  case $scenario in
    s2 | s13) py "${record[@]}" --tool h2load --out "$out.txt" "$out.log" --cpu "$t0" "$t1" --pids "${ppids[@]}" ;;
    s3*) py "${record[@]}" --tool s_time --out "$out.1.txt" "$out.2.txt" --cpu "$t0" "$t1" --pids "${ppids[@]}" ;;
    s6) py "${record[@]}" --tool wrk --out "$out.txt" --cpu "$t0" "$t1" --pids "${ppids[@]}" --mib-per-request 1 ;;
    s10)
      # MiB of JSON in (what the proxy compresses), and the compressed size out.
      local bytes_in bytes_out
      bytes_in=$(curl -sk "$https?json=65536" | wc -c)
      bytes_out=$(curl -sk -H "Accept-Encoding: $enc" "$https?json=65536" | wc -c)
      echo "$proxy round $round: $bytes_in bytes of JSON -> $bytes_out $enc" >>"$work/s10-sizes"
      py "${record[@]}" --tool wrk --out "$out.txt" --cpu "$t0" "$t1" --pids "${ppids[@]}" \
        --mib-per-request "$(python3 -c "print($bytes_in / 1048576)")" ;;
    *) py "${record[@]}" --tool wrk --out "$out.txt" --cpu "$t0" "$t1" --pids "${ppids[@]}" ;;
  esac
  rm -f "$out".*
}

# scenario NAME ROUNDS CERT_DIR PROXY...: the order rotated by one each round.
scenario() {
  local name=$1 rounds=$2 cert=$3 round i n
  shift 3
  [[ " $ONLY " == *" $name "* ]] || return 0
  local -a proxies=("$@")
  n=${#proxies[@]}
  for round in $(seq "$rounds"); do
    for i in $(seq 0 $((n - 1))); do
      local proxy=${proxies[$(((i + round - 1) % n))]}
      start_proxy "$proxy" "$cert"
      measure "$name" "$proxy" "$round"
      stop_proxy
    done
  done
}

# --- the suite --------------------------------------------------------------------------

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
busy_before=$(top -b -n 2 -d 1 -w 200 | awk '/^top -/ { n++; p = 0 } p && $9 + 0 >= 20 { printf "%s %s%%, ", $12, $9 }
  n == 2 && $1 == "PID" { p = 1 }')
echo "compare.sh: $ROUNDS rounds ($S1_ROUNDS for scenario 1) of ${DURATION}s runs, results in $results" >&2

both=(gateway nginx haproxy)
s1_variants=(gw-routes1000 gw-servers100 gw-prod gw-accesslog gw-accesslog-text gw-admin gw-health
  gw-trace gw-trace-1pct gw-headers gw-origin gw-cors gw-ratelimit gw-ratelimit-shared gw-basic gw-forward
  gw-jwt gw-jwt-new)
[ -z "${S1_VARIANTS:-}" ] || read -r -a s1_variants <<<"$S1_VARIANTS"
scenario s1 "$S1_ROUNDS" "$work/ecdsa" "${both[@]}" "${s1_variants[@]}"
scenario s2 "$ROUNDS" "$work/ecdsa" "${both[@]}"
scenario s3e "$ROUNDS" "$work/ecdsa" "${both[@]}"
scenario s3r "$ROUNDS" "$work/rsa" "${both[@]}"
scenario s4 "$ROUNDS" "$work/ecdsa" "${both[@]}"
scenario s5 "$ROUNDS" "$work/ecdsa" "${both[@]}"
scenario s6 "$ROUNDS" "$work/ecdsa" "${both[@]}"
workers=2
scenario s9 "$ROUNDS" "$work/ecdsa" "${both[@]}"
workers=1
# gzip of a 64 KiB JSON response: the gateway's [compression] defaults (gzip level 2 of
# zlib-ng, about the size of zlib's level 1) against nginx's gzip at its default level 1.
nginx_gzip="gzip on; gzip_types application/json; gzip_comp_level 1; gzip_min_length 1024; gzip_vary on; gzip_proxied any;"
scenario s10 "$ROUNDS" "$work/ecdsa" gateway nginx gw-br gw-zstd
nginx_gzip="gzip off;"
# Unary gRPC: the gateway's HTTP/2 upstream (streams multiplexed over pooled h2c
# connections) against nginx's grpc_pass with a keep-alive upstream pool.
gateway_grpc="[upstream.greeter]
servers = [\"127.0.0.1:$GREETER_PORT\"]
protocol = \"h2c\"

[[route]]
path_prefix = \"/greeter.v1.Greeter/\"
upstream = \"greeter\""
nginx_grpc_upstream="upstream greeter { server 127.0.0.1:$GREETER_PORT; keepalive 1024; }"
nginx_grpc="location /greeter.v1.Greeter/ { grpc_pass grpc://greeter; grpc_set_header X-Forwarded-For \$remote_addr; }"
scenario s13 "$ROUNDS" "$work/ecdsa" gateway nginx
gateway_grpc="" nginx_grpc="" nginx_grpc_upstream=""

# The TLS parameters each proxy negotiates with the clients (OpenSSL 3 defaults).
tls_params=""
for proxy in "${both[@]}"; do
  start_proxy "$proxy" "$work/ecdsa"
  tls_params+="$proxy $(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername localhost </dev/null 2>/dev/null |
    awk '/^New,/ { v = $2; c = $NF } /^Server Temp Key/ { k = $4 } END { printf "%s %s %s", v, c, k }' | tr -d ,); "
  stop_proxy
done

echo
echo "## gateway vs nginx vs HAProxy, $started"
echo
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(uname -sr);" \
  "load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
[ -z "$busy_before" ] || echo "other busy processes at the start: ${busy_before%, }"
echo "versions: $(target/release/gateway --version 2>&1 | head -1) (release build); $(nginx -v 2>&1 | sed 's/.*: //');" \
  "$(haproxy -v | head -1 | cut -d' ' -f1-3); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(h2load --version | head -1);" \
  "$(openssl version | cut -d' ' -f1-2); Python $(python3 -c 'import platform; print(platform.python_version())')"
echo "TLS negotiated by OpenSSL clients: ${tls_params%; }"
[ "$haproxy_maxconn" -ge "$IDLE_CONNS" ] ||
  echo "open files limited to $nofile (hard limit): HAProxy, with two descriptors per connection, gets maxconn $haproxy_maxconn"
echo "runs: one proxy at a time, one worker thread each (scenario 9: two), alternating run by run, $ROUNDS rounds" \
  "($S1_ROUNDS for scenario 1 and its gateway variants), ${DURATION}s per run;" \
  "values are means over the rounds, ± half the round-to-round range"
echo
py table "$results"
if [ -s "$work/trace-spans" ]; then
  echo "scenario 8 spans: $(tr '\n' ';' <"$work/trace-spans" | sed 's/;$//; s/;/; /g')"
fi
if [ -s "$work/s10-sizes" ]; then
  echo
  echo "scenario 10 sizes: $(sort -u "$work/s10-sizes" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
fi
