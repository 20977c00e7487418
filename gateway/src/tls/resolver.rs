//! SNI certificate selection over a swappable certificate set, and the record of the
//! certificate each connection was served.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::LoadedCert;

/// The certificates of one listener, indexed for lookup by server name.
#[derive(Debug)]
pub struct CertSet {
    /// Served when no SNI is sent or no certificate covers it: the first directory.
    default: Arc<Served>,
    exact: HashMap<String, Arc<Served>>,
    /// `*.example.com` certificates, keyed by `example.com`.
    wildcard: HashMap<String, Arc<Served>>,
    /// The listener's client certificate policy, when it has a `client_ca`.
    client_auth: Option<Arc<super::ClientAuth>>,
}

/// A certificate as served: its key and the names it covers.
#[derive(Debug)]
pub struct Served {
    pub key: Arc<CertifiedKey>,
    /// Lower case; wildcards as `*.example.com`.
    pub names: Box<[String]>,
}

impl Served {
    /// Whether the certificate covers `host` (lower case, no port): by an exact name,
    /// or by a wildcard for exactly one more label.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.names.iter().any(|name| match name.strip_prefix("*.") {
            Some(parent) => host.split_once('.').is_some_and(|(label, rest)| {
                !label.is_empty() && rest.eq_ignore_ascii_case(parent)
            }),
            None => name.eq_ignore_ascii_case(host),
        })
    }
}

impl CertSet {
    /// Indexes `certs` by their names; where two cover the same name, the earlier wins.
    /// Returns `None` when `certs` is empty.
    pub fn new(certs: &[LoadedCert]) -> Option<Self> {
        let served: Vec<Arc<Served>> = certs
            .iter()
            .map(|c| {
                Arc::new(Served {
                    key: c.key.clone(),
                    names: c.names.clone().into_boxed_slice(),
                })
            })
            .collect();
        let default = served.first()?.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (cert, served) in certs.iter().zip(&served) {
            for name in &cert.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent),
                    None => (&mut exact, name.as_str()),
                };
                map.entry(key.to_owned()).or_insert_with(|| served.clone());
            }
        }
        Some(Self {
            default,
            exact,
            wildcard,
            client_auth: None,
        })
    }

    /// The set with `client_auth` as its client certificate policy.
    pub fn with_client_auth(mut self, client_auth: Option<Arc<super::ClientAuth>>) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// The client certificate policy, if the listener asks for certificates.
    pub fn client_auth(&self) -> Option<&Arc<super::ClientAuth>> {
        self.client_auth.as_ref()
    }

    /// The certificate for `server_name` (any case), or the default.
    pub fn select(&self, server_name: Option<&str>) -> &Arc<Served> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        // A wildcard covers exactly one label (RFC 6125 6.4.3).
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.wildcard.get(parent) {
                return key;
            }
        }
        &self.default
    }
}

tokio::task_local! {
    /// The certificate served to the handshake this task runs, set by the resolver when
    /// it chooses one: the handshake's own record, whatever reloads happen meanwhile.
    static SERVED: Cell<Option<Arc<Served>>>;
}

/// Runs `handshake` (one connection's, in its own task) with a place where the
/// resolver records the certificate it serves, for [`take_served`] to read once the
/// handshake completes.
pub fn recording_served<F: Future>(handshake: F) -> impl Future<Output = F::Output> {
    SERVED.scope(Cell::new(None), handshake)
}

/// The certificate the resolver served to the handshake running in this task (inside
/// [`recording_served`]), if it chose one.
pub(super) fn take_served() -> Option<Arc<Served>> {
    SERVED.try_with(Cell::take).ok().flatten()
}

/// Where a resolver finds the certificates of its listener as they are at each
/// handshake. The gateway's source is its listener's entry in the live snapshot
/// (`state::LiveCerts`); TLS itself does not depend on the snapshot.
pub trait CertSource: Send + Sync + std::fmt::Debug {
    /// The listener's certificates now; `None` when it has none.
    fn certs(&self) -> Option<Arc<CertSet>>;
}

/// Picks the certificate for each TLS handshake of one listener from what its
/// [`CertSource`] holds at that moment, so a reload's new certificates apply to the
/// next handshake.
#[derive(Debug)]
pub struct SniResolver {
    source: Box<dyn CertSource>,
}

impl SniResolver {
    /// Resolves from the certificates `source` holds at each handshake.
    pub fn new(source: impl CertSource + 'static) -> Self {
        Self {
            source: Box::new(source),
        }
    }

    /// The certificate a handshake with `server_name` would be served now.
    pub fn served(&self, server_name: Option<&str>) -> Option<Arc<Served>> {
        Some(self.source.certs()?.select(server_name).clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let served = self.served(hello.server_name())?;
        let key = served.key.clone();
        // Outside `recording_served` (no connection to record it for) there is no record.
        let _ = SERVED.try_with(|record| record.set(Some(served)));
        Some(key)
    }
}
