//! JWTs made outside the gateway: keys generated and tokens signed by the `openssl`
//! command (RS256, ES256, EdDSA; the JOSE JSON and base64url put together here), tokens
//! made by Python's PyJWT (`e2e/jwt/pyjwt_tokens.py`), and a JWKS served over HTTP by
//! Python's `http.server` (a real, separate web server that a test can stop).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::openssl;

/// base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// An RSA 2048 (`kid` "ossl-rsa"), a P-256 ("ossl-ec") and an Ed25519 ("ossl-ed") key
/// made by openssl in `dir`.
pub struct OpensslKeys {
    dir: PathBuf,
}

impl OpensslKeys {
    pub fn new(dir: &Path) -> Self {
        let d = dir;
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "rsa.pem",
            ],
        );
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ec.pem",
            ],
        );
        openssl(d, &["genpkey", "-algorithm", "ED25519", "-out", "ed.pem"]);
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The three public keys as a JWKS.
    pub fn jwks(&self) -> String {
        let modulus = openssl(&self.dir, &["rsa", "-in", "rsa.pem", "-noout", "-modulus"]);
        let hex = String::from_utf8_lossy(&modulus);
        let hex = hex.trim().trim_start_matches("Modulus=");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex modulus"))
            .collect();
        // A SubjectPublicKeyInfo's key is its last bytes: 04 || x || y, or Ed25519's 32.
        let spki = |pem: &str| {
            openssl(
                &self.dir,
                &["pkey", "-in", pem, "-pubout", "-outform", "DER"],
            )
        };
        let ec = spki("ec.pem");
        let point = &ec[ec.len() - 65..];
        let ed = spki("ed.pem");
        json!({"keys": [
            {"kty": "RSA", "kid": "ossl-rsa", "alg": "RS256", "n": b64url(&n), "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "kid": "ossl-ec", "x": b64url(&point[1..33]), "y": b64url(&point[33..])},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ossl-ed", "x": b64url(&ed[ed.len() - 32..])},
        ]})
        .to_string()
    }

    /// A compact JWS of `claims` signed by openssl with `alg` (RS256, ES256 or EdDSA).
    pub fn sign(&self, alg: &str, claims: &Value) -> String {
        let kid = match alg {
            "RS256" => "ossl-rsa",
            "ES256" => "ossl-ec",
            _ => "ossl-ed",
        };
        let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let signed = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let input = self.dir.join("signing-input");
        std::fs::write(&input, &signed).expect("write the signing input");
        let input = input.to_str().expect("utf-8 path");
        let sig = match alg {
            "RS256" => openssl(&self.dir, &["dgst", "-sha256", "-sign", "rsa.pem", input]),
            "ES256" => der_to_fixed(&openssl(
                &self.dir,
                &["dgst", "-sha256", "-sign", "ec.pem", input],
            )),
            _ => openssl(
                &self.dir,
                &[
                    "pkeyutl", "-sign", "-rawin", "-inkey", "ed.pem", "-in", input,
                ],
            ),
        };
        format!("{signed}.{}", b64url(&sig))
    }
}

/// An ECDSA-Sig-Value (DER `SEQUENCE { r INTEGER, s INTEGER }`) as JWS's `r || s`, 32
/// bytes each.
fn der_to_fixed(der: &[u8]) -> Vec<u8> {
    let mut at = 2; // SEQUENCE, length (< 128 for P-256)
    let mut out = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(der[at], 0x02, "an INTEGER");
        let len = usize::from(der[at + 1]);
        let int = &der[at + 2..at + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        at += 2 + len;
    }
    out
}

/// Tokens made by PyJWT, by case name; its key sets are written to `dir/jwks.json` and
/// `dir/jwks-rotated.json` (see `e2e/jwt/pyjwt_tokens.py`).
pub fn pyjwt_tokens(dir: &Path, issuer: &str, audience: &str) -> serde_json::Map<String, Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("jwt/pyjwt_tokens.py");
    let out = Command::new(crate::python3())
        .arg(script)
        .arg(dir)
        .args([issuer, audience])
        .output()
        .expect("run python3 (e2e/setup.sh test makes its virtualenv)");
    assert!(
        out.status.success(),
        "pyjwt_tokens.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("a JSON object") {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Python's `http.server` serving a directory on 127.0.0.1 (an ephemeral port), over
/// plain HTTP or HTTPS (`e2e/jwt/serve_tls.py`).
pub struct StaticServer {
    child: Option<Child>,
    pub port: u16,
}

impl StaticServer {
    pub fn serve(dir: &Path) -> Self {
        let mut cmd = Command::new(crate::python3());
        cmd.args([
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
            "--directory",
        ])
        .arg(dir);
        Self::spawn(cmd)
    }

    /// Over HTTPS, with the certificate and key in `cert_dir`.
    pub fn serve_tls(dir: &Path, cert_dir: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("jwt/serve_tls.py");
        let mut cmd = Command::new(crate::python3());
        cmd.arg(script).arg(dir).arg(cert_dir);
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run python3 (e2e/setup.sh test makes its virtualenv)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("its first line");
        // "Serving HTTP(S) on 127.0.0.1 port 41234 ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Self {
            child: Some(child),
            port,
        }
    }

    /// Stops the server: its port refuses connections from then on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop();
    }
}
