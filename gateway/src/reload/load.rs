//! Reads the config file and every certificate it names, checks them all, and
//! fingerprints what was read so an unchanged set of files can be recognised.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{self, Config, ConfigError, ListenerKind, Location};
use crate::tls::{self, LoadedCert, NotValid, TlsError};

/// Anything that stops a config from being loaded or served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{at}: bad certificate directory")]
    Cert {
        at: Location,
        #[source]
        source: Box<TlsError>,
    },
    #[error("{at}: bad client CA directory")]
    ClientCa {
        at: Location,
        #[source]
        source: Box<TlsError>,
    },
    #[error("{at}: bad upstream CA directory")]
    UpstreamCa {
        at: Location,
        #[source]
        source: Box<TlsError>,
    },
    #[error("{at}: bad upstream client certificate directory")]
    UpstreamClientCert {
        at: Location,
        #[source]
        source: Box<TlsError>,
    },
    #[error("{at}: upstream {name:?}: cannot set up TLS to its backends")]
    UpstreamTls {
        at: Location,
        name: String,
        #[source]
        source: Box<TlsError>,
    },
    #[error("{at}: bad auth users file")]
    Users {
        at: Location,
        #[source]
        source: Box<crate::auth::AuthError>,
    },
    #[error("{at}: bad JWKS file")]
    Jwks {
        at: Location,
        #[source]
        source: Box<crate::auth::AuthError>,
    },
    #[error("{at}: listener {name:?} cannot listen on {addr}")]
    Bind {
        at: Location,
        name: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listener {name:?}: cannot set up TLS")]
    Tls {
        name: String,
        #[source]
        source: crate::tls::TlsError,
    },
}

/// A validated config with every certificate it names loaded and checked.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Per listener (same order as `config.listeners`): its certificates, empty for plain HTTP.
    pub certs: Vec<Vec<LoadedCert>>,
    /// Per listener: its client certificate policy (`client_ca`), if any.
    pub client_auth: Vec<Option<Arc<tls::ClientAuth>>>,
    /// Per route (same order as `config.routes`): its authentication, if any.
    pub route_auth: Vec<Option<Arc<crate::auth::RouteAuth>>>,
    /// Per upstream (same order as `config.upstreams`): TLS to its backends, if any.
    pub upstream_tls: Vec<Option<Arc<tls::UpstreamTls>>>,
    /// Located problems that do not stop the load (an expired or not-yet-valid
    /// certificate); logged when the load is applied.
    pub warnings: Vec<CertWarning>,
    /// Identifies the bytes read: equal fingerprints, equal files.
    pub fingerprint: u64,
}

/// A certificate that loads but is not valid now: served all the same, with a warning.
#[derive(Debug, Clone)]
pub struct CertWarning {
    /// The certificate directory's entry in the config.
    pub at: Location,
    /// Its `tls.crt`.
    pub file: PathBuf,
    pub problem: NotValid,
}

impl fmt::Display for CertWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.file.display(), self.problem)
    }
}

/// A load that failed, with a fingerprint of what was read and found wrong.
#[derive(Debug)]
pub struct Failed {
    pub errors: Vec<LoadError>,
    /// The config dirs to watch, when the config itself could be read and validated.
    pub config: Option<Box<Config>>,
    pub fingerprint: u64,
}

/// Reads and validates the config at `path` and reads and checks its certificates:
/// everything `gateway check` reports. Certificate validity problems are warnings.
pub fn load(path: &Path) -> Result<Loaded, Failed> {
    let mut hasher = DefaultHasher::new();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(source) => {
            let error = ConfigError::Read {
                path: path.to_path_buf(),
                source,
            };
            return Err(failed(hasher, vec![error.into()], None));
        }
    };
    text.hash(&mut hasher);
    let config = match config::from_str(path, &text) {
        Ok(config) => config,
        Err(errors) => {
            let errors = errors.into_iter().map(LoadError::from).collect();
            return Err(failed(hasher, errors, None));
        }
    };

    let now = unix_now();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut certs = Vec::with_capacity(config.listeners.len());
    let mut client_auth = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let mut loaded = Vec::new();
        let mut client = None;
        if let ListenerKind::Https {
            certs: dirs,
            client: auth,
        } = &listener.kind
        {
            if let Some(auth) = auth {
                match tls::client_auth(&auth.ca.path, auth.required) {
                    Ok((policy, pem)) => {
                        pem.hash(&mut hasher);
                        client = Some(Arc::new(policy));
                    }
                    Err(source) => errors.push(LoadError::ClientCa {
                        at: auth.ca.at.clone(),
                        source: Box::new(source),
                    }),
                }
            }
            for dir in dirs {
                let result = tls::read_files(&dir.path).and_then(|files| {
                    files.cert_pem.hash(&mut hasher);
                    files.key_pem.hash(&mut hasher);
                    tls::parse(&files)
                });
                match result {
                    Ok(cert) => {
                        if let Some(problem) = cert.validity_problem(now) {
                            warnings.push(CertWarning {
                                at: dir.at.clone(),
                                file: cert.dir.join(tls::CERT_FILE),
                                problem,
                            });
                        }
                        loaded.push(cert);
                    }
                    Err(source) => errors.push(LoadError::Cert {
                        at: dir.at.clone(),
                        source: Box::new(source),
                    }),
                }
            }
        }
        certs.push(loaded);
        client_auth.push(client);
    }
    let upstream_tls = config
        .upstreams
        .iter()
        .map(|u| upstream_tls(u, &mut hasher, &mut errors))
        .collect();
    let route_auth = config
        .routes
        .iter()
        .map(|r| route_auth(r.auth.as_ref()?, &mut hasher, &mut errors))
        .collect();
    if errors.is_empty() {
        Ok(Loaded {
            config,
            certs,
            client_auth,
            route_auth,
            upstream_tls,
            warnings,
            fingerprint: hasher.finish(),
        })
    } else {
        Err(failed(hasher, errors, Some(Box::new(config))))
    }
}

/// Reads the CA and client certificate of `upstream`'s `tls` and builds its TLS client
/// (none without `tls`). The files' bytes go into `hasher` and the client's own
/// fingerprint, which says whether a reload changed them.
fn upstream_tls(
    upstream: &config::Upstream,
    hasher: &mut DefaultHasher,
    errors: &mut Vec<LoadError>,
) -> Option<Arc<tls::UpstreamTls>> {
    let t = upstream.tls.as_ref()?;
    let mut own = DefaultHasher::new();
    if t.insecure_skip_verify {
        tracing::warn!(
            upstream = %upstream.name,
            "{}: tls.insecure_skip_verify = true: backend certificates are not verified",
            t.at
        );
    }
    let roots = match (&t.ca, t.insecure_skip_verify) {
        (_, true) => Some(tls::Roots::Unverified),
        (None, false) => Some(tls::Roots::System),
        (Some(ca), false) => match tls::read_roots(&ca.path) {
            Ok((roots, pem)) => {
                pem.hash(&mut own);
                Some(tls::Roots::Ca(roots))
            }
            Err(source) => {
                let (at, source) = (ca.at.clone(), Box::new(source));
                errors.push(LoadError::UpstreamCa { at, source });
                None
            }
        },
    };
    let client = match &t.client_cert {
        None => Some(None),
        Some(dir) => {
            let result = tls::read_files(&dir.path).and_then(|files| {
                files.cert_pem.hash(&mut own);
                files.key_pem.hash(&mut own);
                tls::parse(&files)
            });
            match result {
                Ok(cert) => Some(Some(cert)),
                Err(source) => {
                    let (at, source) = (dir.at.clone(), Box::new(source));
                    errors.push(LoadError::UpstreamClientCert { at, source });
                    None
                }
            }
        }
    };
    let (roots, client) = (roots?, client?);
    let fingerprint = own.finish();
    fingerprint.hash(hasher);
    let built = tls::UpstreamTls::new(
        roots,
        client.as_ref(),
        &t.server_name,
        upstream.protocol,
        fingerprint,
    );
    match built {
        Ok(client) => Some(Arc::new(client)),
        Err(source) => {
            errors.push(LoadError::UpstreamTls {
                at: t.at.clone(),
                name: upstream.name.clone(),
                source: Box::new(source),
            });
            None
        }
    }
}

/// Reads a route's auth files (an htpasswd file, a JWKS file) and builds its check; the
/// bytes go into `hasher`.
fn route_auth(
    auth: &config::RouteAuth,
    hasher: &mut DefaultHasher,
    errors: &mut Vec<LoadError>,
) -> Option<Arc<crate::auth::RouteAuth>> {
    match auth {
        // Built with the snapshot, from its upstream: no files.
        config::RouteAuth::Forward(_) => None,
        config::RouteAuth::Jwt(jwt) => {
            let config::JwksSource::File(path) = &jwt.jwks else {
                return None; // fetched: built with the snapshot
            };
            let parsed = std::fs::read(path)
                .map_err(|source| crate::auth::AuthError::Read {
                    path: path.clone(),
                    source,
                })
                .and_then(|bytes| {
                    bytes.hash(hasher);
                    crate::auth::KeySet::parse(&bytes).map_err(|source| {
                        crate::auth::AuthError::Jwks {
                            path: path.clone(),
                            source,
                        }
                    })
                });
            match parsed {
                Ok(set) => Some(Arc::new(crate::auth::RouteAuth::Jwt(Box::new(
                    crate::auth::Jwt::new(jwt.clone(), crate::auth::file_keys(set)),
                )))),
                Err(source) => {
                    let (at, source) = (jwt.at.clone(), Box::new(source));
                    errors.push(LoadError::Jwks { at, source });
                    None
                }
            }
        }
        config::RouteAuth::Basic { users, at, realm } => {
            let read =
                std::fs::read_to_string(users).map_err(|source| crate::auth::AuthError::Read {
                    path: users.clone(),
                    source,
                });
            let parsed = read.and_then(|text| {
                text.hash(hasher);
                crate::auth::Users::parse(users, &text)
            });
            match parsed {
                Ok(parsed) => Some(Arc::new(crate::auth::RouteAuth::Basic(Box::new(
                    crate::auth::Basic::new(parsed, realm),
                )))),
                Err(source) => {
                    let (at, source) = (at.clone(), Box::new(source));
                    errors.push(LoadError::Users { at, source });
                    None
                }
            }
        }
    }
}

/// A failure's fingerprint covers the errors too: the same bad files give the same one.
fn failed(
    mut hasher: DefaultHasher,
    errors: Vec<LoadError>,
    config: Option<Box<Config>>,
) -> Failed {
    for e in &errors {
        crate::error_chain(e).hash(&mut hasher);
    }
    Failed {
        errors,
        config,
        fingerprint: hasher.finish(),
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_reported() {
        let failed = load(Path::new("/nonexistent/gateway.toml")).unwrap_err();
        let msg = crate::error_chain(&failed.errors[0]);
        assert!(
            msg.starts_with("/nonexistent/gateway.toml: cannot read config file: "),
            "{msg}"
        );
    }
}
