//! Makes the benchmark's JWTs: `jwtgen DIR N` writes a P-256 key's JWKS to
//! `DIR/jwks.json` and N distinct ES256 tokens for it (`sub`/`aud` "bench", a day to
//! live), one per line, to `DIR/jwt-tokens`. ECDSA signatures are randomised, so tokens
//! of the same claims still differ.

use std::io::Write;

use e2e::jwt::b64url;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next()) else {
        return Err("usage: jwtgen DIR N".into());
    };
    let n: usize = n.parse()?;
    let rng = SystemRandom::new();
    let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| "key generation")?;
    let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|_| "key")?;
    let point = key.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..])}]});
    std::fs::write(format!("{dir}/jwks.json"), jwks.to_string())?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    let header = b64url(br#"{"alg":"ES256","kid":"bench","typ":"JWT"}"#);
    let claims = serde_json::json!({"sub": "bench", "aud": "bench", "exp": exp});
    let signed = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(format!("{dir}/jwt-tokens"))?);
    for _ in 0..n {
        let sig = key.sign(&rng, signed.as_bytes()).map_err(|_| "signing")?;
        writeln!(out, "{signed}.{}", b64url(sig.as_ref()))?;
    }
    out.flush()?;
    Ok(())
}
