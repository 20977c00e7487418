#!/usr/bin/env bash
# Writes a development CA and a server certificate signed by it, laid out like a
# Kubernetes TLS Secret volume (tls.crt, tls.key, ca.crt). For local runs and tests only.
#
#   certs/dev-certs.sh [--out DIR] [--ca DIR] [--names NAME[,NAME...]]
#                      [--key ecdsa|rsa] [--key-format pkcs8|pkcs1|sec1] [--days N]
#
#   --out         where tls.crt, tls.key and ca.crt go      (default: certs/dev/tls)
#   --ca          the CA dir: ca.crt + ca.key, made if absent (default: certs/dev/ca)
#   --names       subjectAltNames; IP literals become IP SANs (default: localhost,127.0.0.1,::1)
#   --key         server key type: ECDSA P-256 or RSA-2048  (default: ecdsa)
#   --key-format  PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" (rsa only) or
#                 SEC1 "EC PRIVATE KEY" (ecdsa only)        (default: pkcs8)
#   --days        validity of the server certificate        (default: 30)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out="$here/dev/tls"
ca="$here/dev/ca"
names="localhost,127.0.0.1,::1"
key=ecdsa
key_format=pkcs8
days=30

die() { echo "dev-certs: $*" >&2; exit 64; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case "$1" in
    --out) out=$2 ;;
    --ca) ca=$2 ;;
    --names) names=$2 ;;
    --key) key=$2 ;;
    --key-format) key_format=$2 ;;
    --days) days=$2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
  shift 2
done
case "$key/$key_format" in
  ecdsa/pkcs8 | ecdsa/sec1 | rsa/pkcs8 | rsa/pkcs1) ;;
  *) die "--key $key does not go with --key-format $key_format" ;;
esac
command -v openssl >/dev/null || die "openssl is needed (apt-get install -y openssl)"

mkdir -p "$out" "$ca"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -s "$ca/ca.crt" ] || [ ! -s "$ca/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$ca/ca.key" -out "$ca/ca.crt" -days 3650 \
    -subj "/CN=gateway dev CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

san=""
IFS=',' read -r -a list <<<"$names"
for n in "${list[@]}"; do
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san=${san%,}

if [ "$key" = rsa ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null
else
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/key.pem" 2>/dev/null
fi
openssl req -new -key "$work/key.pem" -out "$work/req.csr" -subj "/CN=${list[0]}"
cat >"$work/ext.cnf" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
openssl x509 -req -in "$work/req.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
  -extfile "$work/ext.cnf" -out "$work/tls.crt" 2>/dev/null

case "$key_format" in
  pkcs8) cp "$work/key.pem" "$work/tls.key" ;;
  pkcs1) openssl rsa -in "$work/key.pem" -traditional -out "$work/tls.key" 2>/dev/null ;;
  sec1) openssl ec -in "$work/key.pem" -out "$work/tls.key" 2>/dev/null ;;
esac
chmod 600 "$work/tls.key"
cp "$work/tls.crt" "$work/tls.key" "$out/"
cp "$ca/ca.crt" "$out/ca.crt"
echo "dev-certs: wrote $out/tls.crt ($key, $san), $out/tls.key ($key_format), $out/ca.crt"
