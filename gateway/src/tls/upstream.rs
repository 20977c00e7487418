//! TLS to backends: the client config of an upstream with `tls` (its CA or the system's
//! roots, its client certificate, the ALPN of its protocol), built once per load, and
//! the handshake over each new backend connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use pingora::protocols::Stream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::{LoadedCert, TlsError, CA_FILE};
use crate::config::{Protocol, UpstreamServerName};

/// How the connections of one upstream are secured.
pub struct UpstreamTls {
    connector: pingora::tls::TlsConnector,
    /// `None`: each backend's IP address.
    name: Option<String>,
    /// Identifies the files it was built from: equal fingerprints, same files.
    pub fingerprint: u64,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// What an upstream's backends are verified against.
pub enum Roots {
    /// The CA file of `tls.ca`.
    Ca(RootCertStore),
    /// The system's roots (no `tls.ca`).
    System,
    /// `insecure_skip_verify = true`.
    Unverified,
}

impl UpstreamTls {
    /// The TLS client of an upstream speaking `protocol`: verified by `roots` against
    /// `name`, presenting `client` when a backend asks for a certificate.
    pub fn new(
        roots: Roots,
        client: Option<&LoadedCert>,
        name: &UpstreamServerName,
        protocol: Protocol,
        fingerprint: u64,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Client)?;
        let builder = match roots {
            Roots::Ca(roots) => builder.with_root_certificates(roots),
            Roots::System => builder.with_root_certificates(system_roots()?),
            Roots::Unverified => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider))),
        };
        let mut config = match client {
            Some(cert) => builder.with_client_cert_resolver(Arc::new(Present(cert.key.clone()))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            Protocol::H2 => vec![b"h2".to_vec()],
            Protocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Protocol::Http1 | Protocol::H2c => vec![b"http/1.1".to_vec()],
        };
        Ok(Self {
            connector: pingora::tls::TlsConnector::from(Arc::new(config)),
            name: match name {
                UpstreamServerName::Name(n) => Some(n.clone()),
                UpstreamServerName::BackendIp => None,
            },
            fingerprint,
        })
    }

    /// The TLS handshake over `stream`, a new connection to `addr`.
    pub async fn handshake(
        &self,
        stream: tokio::net::TcpStream,
        addr: SocketAddr,
    ) -> pingora::Result<Stream> {
        let stream = pingora::protocols::l4::stream::Stream::from(stream);
        let ip;
        let name = match &self.name {
            Some(name) => name.as_str(),
            None => {
                ip = addr.ip().to_string();
                ip.as_str()
            }
        };
        let tls = pingora::protocols::tls::client::handshake(&self.connector, name, stream).await?;
        Ok(Box::new(tls))
    }
}

/// Reads `dir/ca.crt` (one or more CA certificates, PEM) into a root store; returns the
/// file's bytes too, for the load's fingerprint.
pub fn read_roots(dir: &Path) -> Result<(RootCertStore, Vec<u8>), TlsError> {
    let path = dir.join(CA_FILE);
    let pem = std::fs::read(&path).map_err(|source| TlsError::Read {
        path: path.clone(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|source| TlsError::Pem {
            path: path.clone(),
            source,
        })?;
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: path.clone(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate { path });
    }
    Ok((roots, pem))
}

/// The operating system's trusted roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = pingora::tls::load_native_certs().unwrap_or_default();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found);
    if added == 0 {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(roots)
}

/// Presents one certificate to every backend that asks for one.
#[derive(Debug)]
struct Present(Arc<CertifiedKey>);

impl ResolvesClientCert for Present {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `insecure_skip_verify`: any certificate is taken, but the handshake's signatures
/// are still checked (the peer holds the key of the certificate it showed).
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
