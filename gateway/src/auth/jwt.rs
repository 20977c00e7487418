//! JWT bearer auth (RFC 7519, JWS compact form of RFC 7515): the signature is checked
//! against the route's key set (the key named by `kid`), then `exp`/`nbf` with the
//! leeway, `iss` and `aud`. A verified token is kept (`cache.rs`) until it expires, with
//! the fields its claims become, so a client reusing its token costs one map lookup; a
//! new key set makes every kept token be checked again.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::cache::Cache;
use super::jwks::{Alg, KeySet};
use super::jwks_remote::{Current, RemoteJwks};
use crate::config::JwtAuth;

/// A token without `exp` is kept this long (seconds) before being checked again.
const NO_EXP_KEEP: i64 = 300;

/// Where a route's keys are.
#[derive(Debug)]
pub enum Keys {
    File(Arc<Current>),
    Remote(Arc<RemoteJwks>),
}

/// A route's JWT auth.
pub struct Jwt {
    config: JwtAuth,
    keys: Keys,
    cache: Cache<Arc<Verified>>,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// What a verified token says: the fields its claims become, and until when it holds.
#[derive(Debug)]
pub struct Verified {
    generation: u64,
    not_before: Option<i64>,
    /// Unix seconds after which it is checked again (its `exp` plus the leeway, or
    /// `NO_EXP_KEEP` after it was verified).
    until: i64,
    fields: Vec<(HeaderName, HeaderValue)>,
}

/// Why a token was refused; each has its `WWW-Authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    NoKeys,
}

impl Refusal {
    /// The 401's `WWW-Authenticate` (RFC 6750 §3).
    pub fn challenge(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Missing => {
                "Bearer error=\"invalid_token\", error_description=\"no bearer token\""
            }
            Self::Malformed => {
                "Bearer error=\"invalid_token\", error_description=\"malformed token\""
            }
            Self::Algorithm => {
                "Bearer error=\"invalid_token\", error_description=\"algorithm not accepted\""
            }
            Self::UnknownKey => {
                "Bearer error=\"invalid_token\", error_description=\"unknown signing key\""
            }
            Self::Signature => {
                "Bearer error=\"invalid_token\", error_description=\"bad signature\""
            }
            Self::Expired => "Bearer error=\"invalid_token\", error_description=\"token expired\"",
            Self::NotYetValid => {
                "Bearer error=\"invalid_token\", error_description=\"token not yet valid\""
            }
            Self::Issuer => "Bearer error=\"invalid_token\", error_description=\"wrong issuer\"",
            Self::Audience => {
                "Bearer error=\"invalid_token\", error_description=\"wrong audience\""
            }
            Self::NoKeys => "Bearer error=\"invalid_token\", error_description=\"no signing keys\"",
        })
    }
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    /// Extensions the token says must be understood: none are, so any refuses it.
    crit: Option<Value>,
}

impl Jwt {
    pub fn new(config: JwtAuth, keys: Keys) -> Self {
        Self {
            config,
            keys,
            cache: Cache::new(),
        }
    }

    /// Checks the request's bearer token.
    pub async fn check(&self, headers: &HeaderMap) -> Result<Arc<Verified>, Refusal> {
        let value = headers.get(AUTHORIZATION).ok_or(Refusal::Missing)?;
        let now = crate::reload::unix_now();
        let mut current = match &self.keys {
            Keys::File(c) => c.clone(),
            Keys::Remote(r) => r.current_or_wait().await.ok_or(Refusal::NoKeys)?,
        };
        let fresh = |v: &Arc<Verified>, generation: u64| {
            v.generation == generation && now <= v.until && self.started(v.not_before, now)
        };
        if let Some(v) = self.cache.get(value, |v| fresh(v, current.generation)) {
            return Ok(v);
        }
        let token = bearer(value).ok_or(Refusal::Missing)?;
        let (signed, sig) = token.rsplit_once('.').ok_or(Refusal::Malformed)?;
        let (head, body) = signed.split_once('.').ok_or(Refusal::Malformed)?;
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Refusal::Malformed);
        let header: JoseHeader =
            serde_json::from_slice(&decode(head)?).map_err(|_| Refusal::Malformed)?;
        let alg = Alg::from_name(&header.alg).ok_or(Refusal::Algorithm)?;
        if header.crit.is_some() {
            return Err(Refusal::Malformed);
        }
        let sig = decode(sig)?;
        let kid = header.kid.as_deref();
        if let (Some(kid), Keys::Remote(remote)) = (kid, &self.keys) {
            if !current.set.has_kid(kid) {
                // Keys rotated at the IdP: ask again (rate-limited) before refusing.
                if let Some(newer) = remote.refetch(current.generation).await {
                    current = newer;
                }
            }
        }
        if kid.is_some_and(|kid| !current.set.has_kid(kid)) {
            return Err(Refusal::UnknownKey);
        }
        if !current.set.verify(alg, kid, signed.as_bytes(), &sig) {
            return Err(Refusal::Signature);
        }
        let claims: Value =
            serde_json::from_slice(&decode(body)?).map_err(|_| Refusal::Malformed)?;
        let verified = self.claims(&claims, now, current.generation)?;
        let verified = Arc::new(verified);
        self.cache
            .insert(value, verified.clone(), |v| fresh(v, current.generation));
        Ok(verified)
    }

    /// The leeway in seconds.
    fn leeway(&self) -> i64 {
        i64::try_from(self.config.leeway.as_secs()).unwrap_or(i64::MAX)
    }

    fn started(&self, not_before: Option<i64>, now: i64) -> bool {
        not_before.is_none_or(|nbf| now.saturating_add(self.leeway()) >= nbf)
    }

    /// Checks the registered claims and builds the fields the listed ones become.
    fn claims(&self, claims: &Value, now: i64, generation: u64) -> Result<Verified, Refusal> {
        let leeway = self.leeway();
        let date = |name: &str| -> Result<Option<i64>, Refusal> {
            match claims.get(name) {
                None => Ok(None),
                // NumericDate: seconds, possibly fractional.
                Some(v) => v.as_f64().map(|f| Some(f as i64)).ok_or(Refusal::Malformed),
            }
        };
        let exp = date("exp")?;
        let not_before = date("nbf")?;
        if exp.is_some_and(|exp| now > exp.saturating_add(leeway)) {
            return Err(Refusal::Expired);
        }
        if !self.started(not_before, now) {
            return Err(Refusal::NotYetValid);
        }
        if let Some(issuer) = &self.config.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(Refusal::Issuer);
            }
        }
        if !self.config.audiences.is_empty() {
            let wanted = |a: &str| self.config.audiences.iter().any(|w| w == a);
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => wanted(a),
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(wanted),
                _ => false,
            };
            if !ok {
                return Err(Refusal::Audience);
            }
        }
        let mut fields = Vec::with_capacity(self.config.claims_to_headers.len());
        for (claim, name) in &self.config.claims_to_headers {
            let found = claim.split('.').try_fold(claims, |v, key| v.get(key));
            if let Some(value) = found.and_then(field_value) {
                fields.push((name.clone(), value));
            }
        }
        Ok(Verified {
            generation,
            not_before,
            until: match exp {
                Some(exp) => exp.saturating_add(leeway),
                None => now.saturating_add(NO_EXP_KEEP),
            },
            fields,
        })
    }

    /// Puts a verified token's claim fields on the request, after removing every field
    /// of those names the client sent.
    pub fn apply(&self, verified: &Verified, headers: &mut HeaderMap) {
        for (_, name) in &self.config.claims_to_headers {
            headers.remove(name);
        }
        for (name, value) in &verified.fields {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// The token of an `Authorization: Bearer` value (scheme case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A claim as a field value: strings as they are, numbers and booleans as JSON, arrays
/// joined with commas, objects as JSON. `None` when not a valid field value.
fn field_value(v: &Value) -> Option<HeaderValue> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => return None,
        other => other.to_string(),
    };
    HeaderValue::try_from(text).ok()
}

/// A file's keys, as the JWT check takes them.
pub fn file_keys(set: KeySet) -> Keys {
    Keys::File(Arc::new(Current { generation: 0, set }))
}

#[cfg(test)]
#[path = "jwt/tests.rs"]
mod tests;
