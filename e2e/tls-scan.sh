#!/usr/bin/env bash
# TLS scan of the gateway's HTTPS listener with testssl.sh (Debian package testssl.sh,
# command `testssl`): builds the workspace, makes dev certificates (one ECDSA, one RSA,
# chosen by SNI), starts hello + gateway on free 127.0.0.1 ports, scans each
# certificate's name and fails when
#   - a finding is rated VULNERABLE (or CRITICAL),
#   - SSLv2, SSLv3, TLS 1.0 or TLS 1.1 is offered (or TLS 1.2 / 1.3 is not),
#   - a cipher suite without forward secrecy (or an anonymous one) is offered.
# Every process it starts is stopped on exit. Takes ~75 s on 2 CPUs (testssl probes its
# own openssl for ~10 s, then ~40 s per scan; the two scans run in parallel).
#
#   e2e/tls-scan.sh                 (run by .ci/run)
#   TLS_SCAN_KEEP=1 e2e/tls-scan.sh keeps the work directory: testssl JSON + text, logs
#   TLS_SCAN_TIMEOUT=300            seconds each testssl run may take (default 300)
#
# The sslyze scan of the same listener is e2e/tests/tls_scan.rs (cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

die() { echo "tls-scan: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is needed ($2)"; }
need testssl "apt-get install -y testssl.sh"
need openssl "apt-get install -y openssl"
need curl "apt-get install -y curl"
need python3 "apt-get install -y python3"
need timeout "coreutils"
need cargo "https://rustup.rs"

scan_timeout=${TLS_SCAN_TIMEOUT:-300}
hosts=(ecdsa.test rsa.test)

# The same build as the e2e harness and `cargo test --workspace --all-features`, so the
# target directory is shared and nothing is rebuilt twice.
cargo build --quiet --workspace --bins --all-features
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/debug"

work=$(mktemp -d "${TMPDIR:-/tmp}/tls-scan.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # SIGKILL for the gateway, as the e2e harness does: SIGTERM would wait out its drain delay.
  [ -z "${gateway_pid:-}" ] || kill -KILL "$gateway_pid" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ] && [ -s "$work/gateway.log" ]; then
    echo "--- gateway log (last 20 lines) ---" >&2
    tail -n 20 "$work/gateway.log" >&2
  fi
  if [ -n "${TLS_SCAN_KEEP:-}" ]; then
    echo "tls-scan: kept $work"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

certs/dev-certs.sh --out "$work/ecdsa" --ca "$work/ca" --names ecdsa.test --key ecdsa --days 365 >/dev/null
certs/dev-certs.sh --out "$work/rsa" --ca "$work/ca" --names rsa.test --key rsa --days 365 >/dev/null

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
https_port=$(free_port)
admin_port=$(free_port)
[ "$https_port" != "$admin_port" ] || admin_port=$(free_port)

# The files exist before hello starts: the background job opens them only once it runs,
# and the loop below may read first.
: >"$work/hello.out"
: >"$work/hello.log"
"$bin/hello" --listen 127.0.0.1:0 --name hello >"$work/hello.out" 2>"$work/hello.log" &
pids+=($!)
hello_addr=""
for _ in $(seq 100); do
  hello_addr=$(sed -n 's/^listening on //p' "$work/hello.out")
  [ -n "$hello_addr" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || die "hello exited: $(cat "$work/hello.log")"
  sleep 0.05
done
[ -n "$hello_addr" ] || die "hello did not start"

cat >"$work/gateway.toml" <<EOF
[admin]
listen = "127.0.0.1:$admin_port"

[[listener]]
name = "https"
listen = "127.0.0.1:$https_port"
tls = { certs = ["$work/ecdsa", "$work/rsa"] }

[upstream.hello]
servers = ["$hello_addr"]

[[route]]
path_prefix = "/"
upstream = "hello"
EOF
"$bin/gateway" check --config "$work/gateway.toml" >/dev/null
"$bin/gateway" run --config "$work/gateway.toml" 2>"$work/gateway.log" >/dev/null &
gateway_pid=$!
pids+=("$gateway_pid")
ready=""
for _ in $(seq 200); do
  kill -0 "$gateway_pid" 2>/dev/null || die "gateway exited before it was ready"
  if curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || die "gateway not ready after 20 s"
# Each name gets its own certificate, verified with the dev CA, and hello answers.
for host in "${hosts[@]}"; do
  curl -fsS --cacert "$work/ca/ca.crt" --resolve "$host:$https_port:127.0.0.1" \
    "https://$host:$https_port/" >/dev/null || die "https://$host:$https_port/ does not answer"
done
echo "tls-scan: gateway on 127.0.0.1:$https_port ready after $((SECONDS - started)) s; scanning ${hosts[*]} with testssl $(sed -n 's/^declare -r VERSION="\(.*\)"$/\1/p' "$(command -v testssl)" | head -n 1)"

# -p protocols, -e every cipher suite testssl knows (with key exchange), -U all
# vulnerability checks. --ip: connect to 127.0.0.1 and send the name as SNI, with
# --nodns none no DNS lookup at all (so not `--ip one`, which resolves the name).
scan_started=$SECONDS
scan_pids=()
for host in "${hosts[@]}"; do
  timeout "$scan_timeout" testssl --quiet --warnings off --color 0 \
    --ip 127.0.0.1 --nodns none --connect-timeout 5 --openssl-timeout 5 \
    -p -e -U --jsonfile "$work/testssl-$host.json" "$host:$https_port" \
    >"$work/testssl-$host.txt" 2>&1 &
  scan_pids+=($!)
  pids+=($!)
done
for i in "${!hosts[@]}"; do
  rc=0
  wait "${scan_pids[$i]}" || rc=$?
  [ "$rc" -ne 124 ] || die "testssl on ${hosts[$i]} took longer than $scan_timeout s (TLS_SCAN_TIMEOUT)"
  # testssl's exit status is not a verdict; the JSON is checked below.
  [ -s "$work/testssl-${hosts[$i]}.json" ] || {
    cat "$work/testssl-${hosts[$i]}.txt" >&2
    die "testssl on ${hosts[$i]} exited $rc without a JSON report"
  }
done
echo "tls-scan: testssl scans took $((SECONDS - scan_started)) s"

check_py=$(cat <<'PY'
"""Checks testssl.sh flat JSON reports (argv: host=file ...); exit 1 listing failures."""
import json
import re
import sys

LEGACY = {"SSLv2": "SSLv2", "SSLv3": "SSLv3", "TLS1": "TLS 1.0", "TLS1_1": "TLS 1.1"}
CURRENT = {"TLS1_2": "TLS 1.2", "TLS1_3": "TLS 1.3"}
REQUIRED = list(LEGACY) + list(CURRENT) + ["heartbleed", "CCS", "ROBOT"]
# "vulnerable", but not "not vulnerable" / "likely not vulnerable" ...
VULNERABLE = re.compile(r"(?<!not )vulnerable", re.IGNORECASE)

failures = []
for arg in sys.argv[1:]:
    host, path = arg.split("=", 1)
    try:
        with open(path) as f:
            findings = json.load(f)
    except (OSError, ValueError) as e:
        failures.append(f"{host}: cannot read testssl's JSON {path}: {e}")
        continue
    if isinstance(findings, dict):  # --jsonfile-pretty layout, in case
        findings = [f for s in findings.get("scanResult", []) for v in s.values()
                    if isinstance(v, list) for f in v]
    by_id = {}
    for f in findings:
        by_id.setdefault(f.get("id", ""), []).append(f)
    fail = lambda msg: failures.append(f"{host}: {msg}")

    for f in findings:
        fid, sev, text = f.get("id", ""), f.get("severity", ""), f.get("finding", "")
        if fid == "scanProblem" or sev == "FATAL":
            fail(f"scan problem: {fid} {sev}: {text}")
        elif VULNERABLE.search(text) or sev == "CRITICAL":
            fail(f"{fid} (severity {sev}): {text}")
    for fid in REQUIRED:
        if fid not in by_id:
            fail(f"no {fid} finding in the report (scan incomplete?)")
    offered_protocols = []
    for fid, name in {**LEGACY, **CURRENT}.items():
        for f in by_id.get(fid, []):
            text = f.get("finding", "")
            offered = not text.startswith("not offered")
            if offered:
                offered_protocols.append(name)
            if fid in LEGACY and offered:
                fail(f"{name} offered: {f.get('severity')}: {text}")
            if fid in CURRENT and not text.startswith("offered"):
                fail(f"{name} not offered: {f.get('severity')}: {text}")

    # -e: "x1302   TLS_AES_256_GCM_SHA384   ECDH 253   AESGCM   256   TLS_AES_256_GCM_SHA384"
    # (-E prefixes the protocol). Forward secret: TLS 1.3 (x13..), or an ephemeral (EC)DH
    # key exchange, shown as "ECDH <bits>" / "DH <bits>" (static ones as "ECDH/RSA" ...).
    ciphers = []
    for f in findings:
        fid = f.get("id", "")
        if not (fid.startswith("cipher_x") or fid.startswith("cipher-")):
            continue
        tokens = f.get("finding", "").split()
        hexes = [i for i, t in enumerate(tokens) if re.fullmatch(r"x[0-9a-fA-F]{2,6}", t)]
        if not hexes or len(tokens) < hexes[0] + 3:
            fail(f"cannot parse cipher finding {fid}: {f.get('finding')!r}")
            continue
        i = hexes[0]
        code, name, kx = tokens[i], tokens[i + 1], tokens[i + 2]
        iana = tokens[-1] if tokens[-1].startswith(("TLS_", "SSL_")) else name
        anonymous = bool(re.search(r"(^|-)A(EC)?DH-|_anon_|NULL", name + " " + iana))
        tls13 = code.lower().startswith("x13") and len(code) == 5
        forward_secret = tls13 or kx in ("ECDH", "DH")
        ciphers.append(f"{iana} ({kx})")
        if anonymous:
            fail(f"anonymous or NULL cipher offered: {code} {name} {iana}")
        elif not forward_secret:
            fail(f"cipher without forward secrecy offered: {code} {name} {iana} (key exchange {kx})")
    if not ciphers:
        fail("no offered cipher in the report (scan incomplete?)")

    others = [f"{f['severity']} {f['id']}: {f.get('finding', '')}" for f in findings
              if f.get("severity") in ("HIGH", "MEDIUM", "LOW", "WARN")
              and not VULNERABLE.search(f.get("finding", ""))]
    print(f"  {host}: protocols offered: {', '.join(offered_protocols) or '-'}")
    print(f"  {host}: {len(ciphers)} cipher suites offered: {', '.join(ciphers)}")
    for line in others:
        print(f"  {host}: note (not a failure): {line}")

if failures:
    print(f"tls-scan: FAILED, {len(failures)} problem(s):", file=sys.stderr)
    for line in failures:
        print(f"  - {line}", file=sys.stderr)
    sys.exit(1)
PY
)
reports=()
for host in "${hosts[@]}"; do reports+=("$host=$work/testssl-$host.json"); done
if python3 -c "$check_py" "${reports[@]}"; then
  echo "tls-scan: passed in $((SECONDS - started)) s: no VULNERABLE finding, nothing below TLS 1.2, only forward-secret ciphers"
else
  for host in "${hosts[@]}"; do
    echo "--- testssl output for $host ---" >&2
    cat "$work/testssl-$host.txt" >&2
  done
  echo "tls-scan: failed after $((SECONDS - started)) s" >&2
  exit 1
fi
