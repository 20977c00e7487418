//! Loads a certificate directory laid out like a mounted TLS Secret into a checked `CertifiedKey`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::TlsError;

/// File names of a `kubernetes.io/tls` Secret.
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// A certificate chain and its key, checked to belong together, plus what SNI
/// selection and expiry reporting need from the leaf.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub dir: PathBuf,
    pub key: Arc<CertifiedKey>,
    /// DNS names the leaf covers (lower case; wildcards as `*.example.com`).
    pub names: Vec<String>,
    /// Validity of the leaf, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl LoadedCert {
    /// Says why the leaf is not valid at `now` (seconds since the epoch), if it is not.
    pub fn validity_problem(&self, now: i64) -> Option<NotValid> {
        if now < self.not_before {
            Some(NotValid::Yet {
                secs_ahead: self.not_before - now,
            })
        } else if now > self.not_after {
            Some(NotValid::Expired {
                secs_ago: now - self.not_after,
            })
        } else {
            None
        }
    }
}

/// Why a leaf certificate is not valid at some moment (it is served all the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotValid {
    /// Its notBefore is `secs_ahead` seconds later.
    Yet { secs_ahead: i64 },
    /// Its notAfter was `secs_ago` seconds earlier.
    Expired { secs_ago: i64 },
}

impl fmt::Display for NotValid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Yet { secs_ahead } => write!(
                f,
                "certificate is not valid yet (notBefore is {secs_ahead} s from now)"
            ),
            Self::Expired { secs_ago } => write!(f, "certificate expired {secs_ago} s ago"),
        }
    }
}

/// The bytes of a certificate directory's `tls.crt` and `tls.key`, read from one
/// generation of the directory.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub dir: PathBuf,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// How many times a read is retried when the kubelet removes the generation being read.
const GENERATION_RETRIES: usize = 3;

/// Reads `dir/tls.crt` and `dir/tls.key` from the same generation.
///
/// A Secret volume's files are symlinks through `..data`, which the kubelet swaps to a
/// new timestamped directory; reading both files through one resolution of `..data`
/// never pairs a new certificate with an old key. Plain directories are read as they are.
pub fn read_files(dir: &Path) -> Result<CertFiles, TlsError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let base = match std::fs::read_link(dir.join("..data")) {
            Ok(target) => dir.join(target),
            Err(_) => dir.to_path_buf(),
        };
        let result = read(&base.join(CERT_FILE), &dir.join(CERT_FILE)).and_then(|cert_pem| {
            let key_pem = read(&base.join(KEY_FILE), &dir.join(KEY_FILE))?;
            Ok((cert_pem, key_pem))
        });
        match result {
            Ok((cert_pem, key_pem)) => {
                return Ok(CertFiles {
                    dir: dir.to_path_buf(),
                    cert_pem,
                    key_pem,
                })
            }
            // The generation was deleted after `..data` moved on: read the new one.
            Err(TlsError::Read { ref source, .. })
                if base != dir
                    && source.kind() == std::io::ErrorKind::NotFound
                    && attempt < GENERATION_RETRIES => {}
            Err(e) => return Err(e),
        }
    }
}

/// Parses a chain (leaf first) and its key (PKCS#8, PKCS#1 or SEC1) and checks that
/// they belong together.
pub fn parse(files: &CertFiles) -> Result<LoadedCert, TlsError> {
    let dir = files.dir.as_path();
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let chain = CertificateDer::pem_slice_iter(&files.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: cert_path.clone(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path });
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key_pem).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: key_path.clone(),
        },
        source => TlsError::Pem {
            path: key_path.clone(),
            source,
        },
    })?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| {
        TlsError::UnsupportedKey {
            path: key_path.clone(),
            source,
        }
    })?;

    let (_, leaf) =
        X509Certificate::from_der(&chain[0]).map_err(|source| TlsError::BadCertificate {
            path: cert_path.clone(),
            source,
        })?;
    let names = leaf_names(&leaf);
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();

    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|source| TlsError::KeyMismatch {
            dir: dir.to_path_buf(),
            source,
        })?;

    Ok(LoadedCert {
        dir: dir.to_path_buf(),
        key: Arc::new(certified),
        names,
        not_before,
        not_after,
    })
}

/// Reads `path`; errors name `shown`, the path the user configured.
fn read(path: &Path, shown: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: shown.to_path_buf(),
        source,
    })
}

/// DNS names from the subjectAltName extension; the subject CN only when there is none.
fn leaf_names(leaf: &X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = match leaf.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names = leaf
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    names
}
