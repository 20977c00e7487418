//! SNI certificate selection over a swappable certificate set.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::LoadedCert;
use crate::state::SharedSnapshot;

/// The certificates of one listener, indexed for lookup by server name.
#[derive(Debug)]
pub struct CertSet {
    /// Served when no SNI is sent or no certificate covers it: the first directory.
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` certificates, keyed by `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertSet {
    /// Indexes `certs` by their names; where two cover the same name, the earlier wins.
    /// Returns `None` when `certs` is empty.
    pub fn new(certs: &[LoadedCert]) -> Option<Self> {
        let default = certs.first()?.key.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certs {
            for name in &cert.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut wildcard, parent),
                    None => (&mut exact, name.as_str()),
                };
                map.entry(key.to_owned())
                    .or_insert_with(|| cert.key.clone());
            }
        }
        Some(Self {
            default,
            exact,
            wildcard,
        })
    }

    /// The certificate for `server_name` (any case), or the default.
    pub fn select(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
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

/// Picks the certificate for each TLS handshake of one listener from the current
/// snapshot, so a reload's new certificates apply to the next handshake.
#[derive(Debug)]
pub struct SniResolver {
    snapshot: SharedSnapshot,
    listener: usize,
}

impl SniResolver {
    /// Resolves for listener number `listener` of the snapshot.
    pub fn new(snapshot: SharedSnapshot, listener: usize) -> Self {
        Self { snapshot, listener }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.snapshot.load();
        let certs = snapshot.listeners.get(self.listener)?.certs.as_ref()?;
        Some(certs.select(hello.server_name()).clone())
    }
}
