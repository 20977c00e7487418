//! Authentication at the edge: a route's `auth` decides, before its rate limit and
//! before anything reaches the backend, whether a request passes. Basic auth
//! (`basic`: an htpasswd file of bcrypt entries) lives in `basic.rs`, its file format in
//! `htpasswd.rs`; forward auth (`forward`: nginx's `auth_request`) asks an auth service
//! through the request path's own backend connections (`proxy/auth_request.rs`); JWT
//! auth (`jwt`: bearer tokens) checks tokens in `jwt.rs` against a key set (`jwks.rs`)
//! read from a file or fetched from a URL (`jwks_remote.rs`). Verified credentials are
//! kept in `cache.rs`.

mod basic;
mod cache;
mod htpasswd;
mod jwks;
mod jwks_remote;
mod jwt;

use std::path::PathBuf;

use http::{HeaderMap, HeaderValue};

pub use basic::Basic;
pub use htpasswd::Users;
pub use jwks::{JwksError, KeySet};
pub use jwks_remote::{Current, RemoteJwks};
pub use jwt::{file_keys, Jwt, Keys, Refusal, Verified};

/// What can be wrong with an auth file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: user {user:?} has a {scheme} password; only bcrypt ($2y$, as `htpasswd -B` writes) is accepted", path.display())]
    Scheme {
        path: PathBuf,
        line: usize,
        user: String,
        scheme: &'static str,
    },
    #[error("{}:{line}: not a `user:hash` line", path.display())]
    Malformed { path: PathBuf, line: usize },
    #[error("{}:{line}: user {user:?} is listed twice (first on line {first})", path.display())]
    Duplicate {
        path: PathBuf,
        line: usize,
        first: usize,
        user: String,
    },
    #[error("{} has no users", path.display())]
    Empty { path: PathBuf },
    #[error("{}: bad JWKS", path.display())]
    Jwks {
        path: PathBuf,
        #[source]
        source: JwksError,
    },
}

/// A route's authentication, built at load.
#[derive(Debug)]
pub enum RouteAuth {
    /// Boxed: its cache shards are large next to the other variants.
    Basic(Box<Basic>),
    Forward(Forward),
    Jwt(Box<Jwt>),
}

/// A route's forward auth: its settings and its auth service's upstream.
#[derive(Debug)]
pub struct Forward {
    pub config: crate::config::ForwardAuth,
    pub upstream: std::sync::Arc<crate::upstream::Upstream>,
}

/// What a route's authentication says about a request.
pub enum Verdict<'a> {
    Pass,
    /// `401`, with this `WWW-Authenticate`.
    Challenge(&'a HeaderValue),
}

impl Basic {
    /// The verdict on a request's headers.
    pub async fn verdict(&self, headers: &HeaderMap) -> Verdict<'_> {
        match self.check(headers).await {
            true => Verdict::Pass,
            false => Verdict::Challenge(self.challenge()),
        }
    }
}
