//! Client certificates: the verifier built from a listener's `client_ca` directory, the
//! live verifier the acceptor asks at each handshake (so a reload's CA applies to the
//! next one), and the `X-Forwarded-Client-Cert` value of a verified certificate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderValue;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_parser::extensions::GeneralName;

use super::{CertSource, TlsError};

/// The file of a `client_ca` directory (as a Secret or ConfigMap with that key mounts it).
pub const CA_FILE: &str = "ca.crt";

/// A listener's client certificate policy, built from its CA file.
#[derive(Debug)]
pub struct ClientAuth {
    pub verifier: Arc<dyn ClientCertVerifier>,
}

/// Reads `dir/ca.crt` (one or more CA certificates, PEM) and builds the verifier:
/// `required` refuses handshakes without a valid certificate, otherwise one without a
/// certificate passes (an invalid one never does). Returns the file's bytes too, for
/// the load's fingerprint.
pub fn client_auth(dir: &Path, required: bool) -> Result<(ClientAuth, Vec<u8>), TlsError> {
    let (roots, pem) = super::read_roots(dir)?;
    let path = dir.join(CA_FILE);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    let verifier = builder.build().map_err(|source| TlsError::Verifier {
        path: PathBuf::from(&path),
        source,
    })?;
    Ok((ClientAuth { verifier }, pem))
}

/// The client certificate verifier of one listener's acceptor: asks for certificates
/// only while the listener's live TLS state has a `client_ca`, and verifies them with
/// the verifier of that moment.
#[derive(Debug)]
pub struct LiveClientAuth {
    source: Box<dyn CertSource>,
}

impl LiveClientAuth {
    pub fn new(source: impl CertSource + 'static) -> Self {
        Self {
            source: Box::new(source),
        }
    }

    fn current(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        let certs = self.source.certs()?;
        certs.client_auth().map(|c| c.verifier.clone())
    }

    /// The verifier of now, for a certificate a client sent (only when asked for).
    fn asked(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.current()
            .ok_or_else(|| rustls::Error::General("client certificates are not asked for".into()))
    }
}

impl ClientCertVerifier for LiveClientAuth {
    fn offer_client_auth(&self) -> bool {
        self.current().is_some_and(|v| v.offer_client_auth())
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current().is_some_and(|v| v.client_auth_mandatory())
    }

    /// No CA names are sent in the request (the live CA can change between reloads;
    /// clients with one certificate, as services have, send it all the same).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.asked()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.asked()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.asked()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current()
            .map(|v| v.supported_verify_schemes())
            .unwrap_or_else(|| {
                rustls::crypto::ring::default_provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            })
    }
}

/// The `X-Forwarded-Client-Cert` element (Envoy's format) of a verified leaf
/// certificate: `Hash=<SHA-256 of the DER, hex>;Subject="<RFC 4514 DN>"`, then a
/// `URI=` and a `DNS=` pair per subjectAltName of those kinds. `None` when the
/// certificate does not parse (it was verified, so it does).
pub fn forwarded_client_cert(leaf: &[u8]) -> Option<HeaderValue> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let mut out = String::from("Hash=");
    for byte in pingora::tls::hash_certificate(&CertificateDer::from(leaf)) {
        let _ = write!(out, "{byte:02x}");
    }
    out.push_str(";Subject=\"");
    for c in subject_dn(cert.subject()).chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => {
                    let _ = write!(out, ";URI={uri}");
                }
                GeneralName::DNSName(dns) => {
                    let _ = write!(out, ";DNS={dns}");
                }
                _ => {}
            }
        }
    }
    // Names with bytes a header cannot carry make no header.
    HeaderValue::try_from(out).ok()
}

/// RFC 4514's names for the attribute types it lists (others are written as OIDs).
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => return None,
    })
}

/// A distinguished name as RFC 4514 writes it: the last RDN first, `,` between them,
/// `+` inside multi-valued ones, special characters escaped.
fn subject_dn(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            match short_name(&attr.attr_type().to_id_string()) {
                Some(short) => out.push_str(short),
                None => out.push_str(&attr.attr_type().to_id_string()),
            }
            out.push('=');
            let value = attr.as_str().unwrap_or("");
            let last = value.chars().count().saturating_sub(1);
            for (k, c) in value.chars().enumerate() {
                let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
                    || (k == 0 && (c == '#' || c == ' '))
                    || (k == last && c == ' ');
                if special {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
