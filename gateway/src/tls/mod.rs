//! TLS: certificate loading (`certs`), SNI selection (`resolver`) and the listener's acceptor settings.

mod certs;
mod client;
mod resolver;
mod upstream;

use std::path::PathBuf;
use std::sync::Arc;

use pingora::listeners::tls::{Acceptor, TlsSettings};

use crate::telemetry::ConnectionStats;

pub use certs::{parse, read_files, CertFiles, LoadedCert, NotValid, CERT_FILE, KEY_FILE};
pub use client::{client_auth, forwarded_client_cert, ClientAuth, LiveClientAuth, CA_FILE};
pub use resolver::{recording_served, CertSet, CertSource, Served, SniResolver};
pub use upstream::{read_roots, Roots, UpstreamTls};

/// What can be wrong with a certificate directory.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid PEM", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{} holds no CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: unsupported private key", path.display())]
    UnsupportedKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: cannot parse the leaf certificate", path.display())]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    #[error("{}: tls.key does not match the public key of the certificate in tls.crt", dir.display())]
    KeyMismatch {
        dir: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: not a CA certificate rustls accepts", path.display())]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: cannot build a client certificate verifier", path.display())]
    Verifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("cannot set up a TLS client")]
    Client(#[source] rustls::Error),
    #[error("no tls.ca given, and the system has no trusted root certificates (install ca-certificates, or set tls.ca)")]
    NoSystemRoots,
    #[error("cannot set up TLS session tickets")]
    Ticketer(#[source] rustls::Error),
    #[error("cannot set up the TLS listener")]
    Settings(#[source] Box<pingora::Error>),
}

/// Installs the process-wide rustls crypto provider (ring, as pingora-rustls uses).
/// Safe to call more than once.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// The TLS acceptor of an HTTPS listener: TLS 1.3 and 1.2 only, with ring's cipher
/// suites (all forward-secret AEAD: ECDHE with AES-GCM or ChaCha20-Poly1305), session
/// resumption by session id and by tickets (keys rotated every 6 hours), no 0-RTT,
/// HTTP/2 and HTTP/1.1 by ALPN, certificates from `resolver`. Each completed handshake
/// is counted in `stats`; run inside [`recording_served`], it leaves the [`Served`]
/// certificate in the connection's TLS digest, which requests read for `strict_sni`.
///
/// Built without certificate files, so pingora's `build()` never reads (or panics on)
/// files; the rustls config it builds is then replaced by ours.
pub fn acceptor(
    resolver: Arc<SniResolver>,
    client_auth: Arc<LiveClientAuth>,
    stats: Arc<ConnectionStats>,
) -> Result<Acceptor, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_client_cert_verifier(client_auth)
    .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server picks the suite from its own order (scanners flag client-chosen order).
    config.ignore_client_order = true;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Ticketer)?;
    let callbacks = Handshakes { stats, resolver };
    let mut settings =
        TlsSettings::with_callbacks(Box::new(callbacks)).map_err(TlsError::Settings)?;
    settings.set_cert_resolver(Arc::new(NoCert));
    let mut acceptor = settings.build();
    acceptor.acceptor = Arc::new(config).into();
    Ok(acceptor)
}

/// TLS 1.2 sessions remembered for resumption by id (about 200 bytes each).
const SESSION_CACHE_SIZE: usize = 10_000;

/// Stands in for the resolver in pingora's own config, which is replaced at once.
#[derive(Debug)]
struct NoCert;

impl rustls::server::ResolvesServerCert for NoCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

/// Counts each completed handshake and records which certificate it was served: the
/// one the resolver chose for it, not the one the current snapshot would choose (a
/// reload may have come between the two).
struct Handshakes {
    stats: Arc<ConnectionStats>,
    resolver: Arc<SniResolver>,
}

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for Handshakes {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.stats.handshake(tls.version());
        // Not recorded (a handshake run outside `recording_served`): the certificate
        // its server name selects now.
        let served = resolver::take_served().or_else(|| self.resolver.served(tls.server_name()));
        let facts = Handshake {
            served: served?,
            client_cert: tls.peer_certificate_der().and_then(forwarded_client_cert),
        };
        let facts: Arc<dyn std::any::Any + Send + Sync> = Arc::new(facts);
        Some(facts)
    }
}

/// What a completed handshake leaves in the connection's TLS digest for its requests.
#[derive(Debug)]
pub struct Handshake {
    /// The certificate served (for `strict_sni`).
    pub served: Arc<Served>,
    /// The verified client certificate as `X-Forwarded-Client-Cert` (with `client_ca`).
    pub client_cert: Option<http::HeaderValue>,
}

#[cfg(test)]
mod tests;
