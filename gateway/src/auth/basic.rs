//! HTTP Basic authentication (RFC 7617) against an htpasswd file. bcrypt runs off the
//! request path's thread (a blocking task) and only for credentials not seen lately:
//! verified header values are kept (`cache.rs`) for `CACHE_TTL`. An unknown user costs
//! the same bcrypt as a wrong password, so timing does not tell users apart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use super::cache::Cache;
use super::Users;

/// How long a verified credential is taken without bcrypt.
pub(super) const CACHE_TTL: Duration = Duration::from_secs(300);

/// A route's Basic auth: its users, its challenge, its cache.
pub struct Basic {
    users: Arc<Users>,
    /// A bcrypt hash of a random password at the file's highest cost, checked for
    /// unknown users.
    decoy: String,
    challenge: HeaderValue,
    /// Verified values, until when they are taken without bcrypt.
    cache: Cache<Instant>,
    /// bcrypt verifications run (the cache's misses), for tests.
    verified: AtomicU64,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basic")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl Basic {
    /// Basic auth for `users`, asking for `realm` (already checked to be quotable).
    pub fn new(users: Users, realm: &str) -> Self {
        let challenge = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
        let random = crate::upstream::random_u64().to_le_bytes();
        let decoy = bcrypt::hash(random, users.max_cost()).unwrap_or_default();
        Self {
            users: Arc::new(users),
            decoy,
            challenge: HeaderValue::try_from(challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Basic")),
            cache: Cache::new(),
            verified: AtomicU64::new(0),
        }
    }

    /// The `WWW-Authenticate` of a 401.
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    /// Whether the request carries a listed user's right password.
    pub async fn check(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return false;
        };
        let now = Instant::now();
        if self.cache.get(value, |until| *until > now).is_some() {
            return true;
        }
        let Some((user, password)) = credentials(value) else {
            return false;
        };
        let (hash, known) = match self.users.hash(&user) {
            Some(hash) => (hash.to_owned(), true),
            None => (self.decoy.clone(), false),
        };
        self.verified.fetch_add(1, Ordering::Relaxed);
        let verify = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash));
        let ok = matches!(verify.await, Ok(Ok(true))) && known;
        if ok {
            let now = Instant::now();
            self.cache
                .insert(value, now + CACHE_TTL, |until| *until > now);
        }
        ok
    }

    /// bcrypt verifications so far.
    pub fn verified(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }
}

/// The user and password of an `Authorization: Basic` value (scheme case-insensitive,
/// base64 of `user:password` in UTF-8).
fn credentials(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn basic(user: &str, password: &str) -> Basic {
        let hash = bcrypt::hash(password, 4).unwrap();
        let users = Users::parse(Path::new("users"), &format!("{user}:{hash}\n")).unwrap();
        Basic::new(users, "admin")
    }

    fn header(user_password: &str) -> HeaderMap {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::try_from(format!("Basic {encoded}")).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn right_credentials_pass_and_are_then_taken_from_the_cache() {
        let auth = basic("ann", "s3cret:x");
        assert!(
            auth.check(&header("ann:s3cret:x")).await,
            "a colon in the password"
        );
        assert_eq!(auth.verified(), 1);
        assert!(auth.check(&header("ann:s3cret:x")).await);
        assert_eq!(auth.verified(), 1, "the second time from the cache");
        assert_eq!(
            auth.challenge().to_str().unwrap(),
            "Basic realm=\"admin\", charset=\"UTF-8\""
        );
    }

    #[tokio::test]
    async fn wrong_missing_or_unknown_credentials_fail_and_are_not_cached() {
        let auth = basic("ann", "s3cret");
        assert!(!auth.check(&HeaderMap::new()).await);
        assert!(!auth.check(&header("ann:wrong")).await);
        assert!(!auth.check(&header("ann:wrong")).await);
        assert_eq!(auth.verified(), 2, "failures run bcrypt every time");
        assert!(!auth.check(&header("bo:s3cret")).await, "unknown user");
        assert_eq!(auth.verified(), 3, "an unknown user costs a bcrypt too");
        let mut bearer = HeaderMap::new();
        bearer.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert!(!auth.check(&bearer).await);
        let mut garbage = HeaderMap::new();
        garbage.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(!auth.check(&garbage).await);
        let mut lower = header("ann:s3cret");
        let v = lower
            .get(AUTHORIZATION)
            .unwrap()
            .to_str()
            .unwrap()
            .replace("Basic", "basic");
        lower.insert(AUTHORIZATION, HeaderValue::try_from(v).unwrap());
        assert!(auth.check(&lower).await, "the scheme is case-insensitive");
    }

    #[test]
    fn the_decoy_has_the_files_highest_cost() {
        let auth = basic("ann", "x");
        let parts = auth.decoy.parse::<bcrypt::HashParts>().unwrap();
        assert_eq!(parts.get_cost(), 4);
        assert_eq!(bcrypt::verify("x", &auth.decoy).ok(), Some(false));
    }
}
