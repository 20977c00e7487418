//! Loads everything a config names and wires it into a pingora server.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::{self, Config, ConfigError, ListenerKind, Location};
use crate::proxy::Gateway;
use crate::state::Snapshot;
use crate::tls::{self, CertSet, LoadedCert, SniResolver, TlsError};

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
        source: Box<pingora::Error>,
    },
}

/// A validated config with every certificate it names loaded and checked.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Per listener (same order as `config.listeners`): its certificates, empty for plain HTTP.
    pub certs: Vec<Vec<LoadedCert>>,
}

/// Reads and validates the config at `path` and loads its certificates: everything
/// `gateway check` reports. Certificate validity problems are logged as warnings.
pub fn load(path: &Path) -> Result<Loaded, Vec<LoadError>> {
    let config = config::load(path)
        .map_err(|errs| errs.into_iter().map(LoadError::from).collect::<Vec<_>>())?;
    let now = unix_now();
    let mut errors = Vec::new();
    let mut certs = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let mut loaded = Vec::new();
        if let ListenerKind::Https { certs: dirs } = &listener.kind {
            for dir in dirs {
                match tls::load_dir(&dir.path) {
                    Ok(cert) => {
                        if let Some(problem) = cert.validity_problem(now) {
                            tracing::warn!("{}: {problem}", dir.at);
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
    }
    if errors.is_empty() {
        Ok(Loaded { config, certs })
    } else {
        Err(errors)
    }
}

/// Checks that every listen address can be bound now, so a taken port is a clear
/// error instead of a failure inside pingora's listener setup.
pub fn check_binds(config: &Config) -> Result<(), Vec<LoadError>> {
    let admin = config.admin.iter().map(|a| ("admin", a.addr, &a.at));
    let listeners = config
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.addr, &l.at));
    let errors: Vec<LoadError> = admin
        .chain(listeners)
        .filter_map(|(name, addr, at)| {
            let source = TcpListener::bind(addr).err()?;
            Some(LoadError::Bind {
                at: at.clone(),
                name: name.to_owned(),
                addr,
                source,
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Builds the pingora server: one proxy service per listener, sharing one routing
/// snapshot, plus the admin service.
pub fn build(loaded: Loaded) -> Result<Server, LoadError> {
    let Loaded { config, certs } = loaded;
    let conf = ServerConf {
        threads: config.server.threads,
        // Idle upstream connections kept per process; at least the expected concurrency,
        // or connections churn (see the performance notes in ../shared).
        upstream_keepalive_pool_size: 1024,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(10),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::build(&config)));
    for (listener, certs) in config.listeners.iter().zip(certs) {
        let gateway = Gateway::new(listener, snapshot.clone());
        let mut service = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            gateway,
            &format!("listener {}", listener.name),
        );
        let addr = listener.addr.to_string();
        match CertSet::new(&certs) {
            Some(set) => {
                let resolver = Arc::new(SniResolver::new(set));
                let settings = tls::acceptor(resolver).map_err(|source| LoadError::Tls {
                    name: listener.name.clone(),
                    source,
                })?;
                service.add_tls_with_settings(&addr, None, settings);
            }
            None => service.add_tcp(&addr),
        }
        server.add_service(service);
    }
    if let Some(admin) = &config.admin {
        let mut service = Service::new("admin".to_owned(), HttpServer::new_app(AdminApp));
        service.add_tcp(&admin.addr.to_string());
        server.add_service(service);
    }
    Ok(server)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
