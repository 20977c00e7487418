//! A JSON Web Key Set (RFC 7517) read into public keys ring verifies with: RSA (`n`,
//! `e`), EC P-256/P-384 (`x`, `y`) and Ed25519 (OKP `x`). Keys for encryption, of other
//! types or curves are left out; a set with no usable key is an error.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature;
use serde::Deserialize;

/// The JWS algorithms accepted (RFC 7518); `none` and the HMAC ones never are: a
/// gateway holding a shared secret could mint tokens, and a public key taken as an HMAC
/// secret is the classic forgery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Alg {
    /// The `alg` of a JOSE header, if accepted.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "EdDSA" => Self::EdDsa,
            _ => return None,
        })
    }
}

/// A key's public part, as ring takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Public {
    /// Big-endian modulus and exponent.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed points (`04 || x || y`).
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl Public {
    /// Whether `alg` is an algorithm of this key type.
    fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                Public::Rsa { .. },
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512
            ) | (Public::P256(_), Alg::Es256)
                | (Public::P384(_), Alg::Es384)
                | (Public::Ed25519(_), Alg::EdDsa)
        )
    }
}

/// One signing key of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    kid: Option<String>,
    /// The key's `alg`, when it names one: then only that algorithm may use it.
    alg: Option<Alg>,
    public: Public,
}

impl Key {
    /// Whether a token signed with `alg` may be checked with this key.
    fn fits(&self, alg: Alg) -> bool {
        self.public.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }

    /// Whether `sig` is this key's signature of `message` under `alg`.
    fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        use signature::*;
        let params: &RsaParameters = match (&self.public, alg) {
            (Public::P256(point), Alg::Es256) => {
                let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point);
                return key.verify(message, sig).is_ok();
            }
            (Public::P384(point), Alg::Es384) => {
                let key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point);
                return key.verify(message, sig).is_ok();
            }
            (Public::Ed25519(x), Alg::EdDsa) => {
                return UnparsedPublicKey::new(&ED25519, x)
                    .verify(message, sig)
                    .is_ok();
            }
            (Public::Rsa { .. }, Alg::Rs256) => &RSA_PKCS1_2048_8192_SHA256,
            (Public::Rsa { .. }, Alg::Rs384) => &RSA_PKCS1_2048_8192_SHA384,
            (Public::Rsa { .. }, Alg::Rs512) => &RSA_PKCS1_2048_8192_SHA512,
            (Public::Rsa { .. }, Alg::Ps256) => &RSA_PSS_2048_8192_SHA256,
            (Public::Rsa { .. }, Alg::Ps384) => &RSA_PSS_2048_8192_SHA384,
            (Public::Rsa { .. }, Alg::Ps512) => &RSA_PSS_2048_8192_SHA512,
            _ => return false,
        };
        let Public::Rsa { n, e } = &self.public else {
            return false;
        };
        RsaPublicKeyComponents { n, e }
            .verify(params, message, sig)
            .is_ok()
    }
}

/// What can be wrong with a key set.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS (a JSON object with a \"keys\" array)")]
    Json(#[source] serde_json::Error),
    #[error("key {index}{}: {reason}", kid.as_ref().map(|k| format!(" (kid {k:?})")).unwrap_or_default())]
    Key {
        index: usize,
        kid: Option<String>,
        reason: &'static str,
    },
    #[error("no signing key of a supported type (RSA, EC P-256/P-384, Ed25519)")]
    NoKeys,
}

/// A set's signing keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct SetJson {
    keys: Vec<KeyJson>,
}

#[derive(Deserialize)]
struct KeyJson {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Reads a JWKS document.
    pub fn parse(json: &[u8]) -> Result<Self, JwksError> {
        let set: SetJson = serde_json::from_slice(json).map_err(JwksError::Json)?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for (index, k) in set.keys.into_iter().enumerate() {
            let bad = |reason| JwksError::Key {
                index,
                kid: k.kid.clone(),
                reason,
            };
            if k.usage.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let field = |v: &Option<String>, reason| {
                let text = v.as_deref().ok_or_else(|| bad(reason))?;
                URL_SAFE_NO_PAD
                    .decode(text.trim_end_matches('='))
                    .map_err(|_| bad("a field is not base64url"))
            };
            let alg = match k.alg.as_deref() {
                None => None,
                Some(name) => match Alg::from_name(name) {
                    Some(alg) => Some(alg),
                    // A key only for an algorithm we refuse (HS256, say) is never used.
                    None => continue,
                },
            };
            let public = match (k.kty.as_deref(), k.crv.as_deref()) {
                (Some("RSA"), _) => {
                    let n = field(&k.n, "RSA key without n")?;
                    let e = field(&k.e, "RSA key without e")?;
                    if n.len() < 256 {
                        return Err(bad("RSA key shorter than 2048 bits"));
                    }
                    Public::Rsa { n, e }
                }
                (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
                    let size = if crv == "P-256" { 32 } else { 48 };
                    let x = field(&k.x, "EC key without x")?;
                    let y = field(&k.y, "EC key without y")?;
                    if x.len() != size || y.len() != size {
                        return Err(bad("EC coordinates of the wrong length"));
                    }
                    let mut point = Vec::with_capacity(1 + 2 * size);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    match size {
                        32 => Public::P256(point),
                        _ => Public::P384(point),
                    }
                }
                (Some("OKP"), Some("Ed25519")) => {
                    let x = field(&k.x, "Ed25519 key without x")?;
                    if x.len() != 32 {
                        return Err(bad("Ed25519 key of the wrong length"));
                    }
                    Public::Ed25519(x)
                }
                // Other types (oct, EC secp256k1, X25519...) are not signing keys we check.
                _ => continue,
            };
            if alg.is_some_and(|a| !public.fits(a)) {
                return Err(bad("alg does not fit the key type"));
            }
            let key = Key {
                kid: k.kid,
                alg,
                public,
            };
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        Ok(Self { keys })
    }

    /// Whether a key with this `kid` is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Whether a key of the set (the one named `kid`, else any that fits `alg`) signed
    /// `message` with `sig`.
    pub fn verify(&self, alg: Alg, kid: Option<&str>, message: &[u8], sig: &[u8]) -> bool {
        self.keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .filter(|k| k.fits(alg))
            .any(|k| k.verify(alg, message, sig))
    }
}

#[cfg(test)]
#[path = "jwks/tests.rs"]
pub(super) mod tests;
