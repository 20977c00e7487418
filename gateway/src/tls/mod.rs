//! TLS: certificate loading (`certs`), SNI selection (`resolver`) and the listener's acceptor settings.

mod certs;
mod resolver;

use std::path::PathBuf;
use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;

use crate::telemetry::ConnectionStats;

pub use certs::{load_dir, parse, read_files, CertFiles, LoadedCert, CERT_FILE, KEY_FILE};
pub use resolver::{CertSet, SniResolver};

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
    #[error("{}: cannot parse the leaf certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: tls.key does not match the public key of the certificate in tls.crt", dir.display())]
    KeyMismatch {
        dir: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Installs the process-wide rustls crypto provider (ring, as pingora-rustls uses).
/// Safe to call more than once.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// TLS settings for an HTTPS listener: TLS 1.2 and 1.3 (pingora's rustls acceptor
/// allows no other), HTTP/2 and HTTP/1.1 by ALPN, certificates from `resolver`,
/// handshakes and open connections counted in `stats`.
///
/// Built without certificate files, so pingora's `build()` never reads (or panics on) files.
pub fn acceptor(
    resolver: Arc<SniResolver>,
    stats: Arc<ConnectionStats>,
) -> pingora::Result<TlsSettings> {
    let mut settings = TlsSettings::with_callbacks(Box::new(CountConnections(stats)))?;
    settings.set_cert_resolver(resolver);
    settings.enable_h2();
    Ok(settings)
}

/// Counts each completed handshake; the guard it returns is kept by pingora with the
/// connection (in its TLS digest), so the connection counts as active until it closes.
struct CountConnections(Arc<ConnectionStats>);

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for CountConnections {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(Arc::new(self.0.handshake(tls.version())))
    }
}

#[cfg(test)]
mod tests;
