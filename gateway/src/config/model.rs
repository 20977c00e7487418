//! Validated configuration: the only config types runtime code sees.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::error::Location;

/// Worker threads when `[server] threads` is not set: the CPUs this process may use
/// (`available_parallelism` honours cgroup CPU quotas and affinity masks).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How often files are re-read even when no change was seen (`[reload] poll_interval`).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// A whole, validated `gateway.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    pub admin: Option<Admin>,
    pub server: Server,
    pub reload: Reload,
    pub listeners: Vec<Listener>,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
}

/// The admin endpoint (`/healthz`, `/readyz`).
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub addr: SocketAddr,
    pub at: Location,
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub threads: usize,
}

/// How changes to the files are picked up.
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// Period of the safety-net re-read that catches changes the watcher missed.
    pub poll_interval: Duration,
}

/// One listening socket and what it does with requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    pub kind: ListenerKind,
    /// Where the listener is defined, for errors found later (binding, certificates).
    pub at: Location,
}

/// What a listener serves.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenerKind {
    /// TLS with certificates chosen by SNI; the first directory is the default.
    Https { certs: Vec<CertDir> },
    /// Plain HTTP serving the routes.
    Http,
    /// Plain HTTP answering every request with a 308 to `https://`.
    RedirectToHttps { port: Option<u16> },
}

/// A directory laid out like a mounted TLS Secret (`tls.crt`, `tls.key`).
#[derive(Debug, Clone, PartialEq)]
pub struct CertDir {
    /// Absolute, or relative to the process's working directory: already joined
    /// onto the config file's directory.
    pub path: PathBuf,
    pub at: Location,
}

/// A named group of servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<ServerAddr>,
}

/// One `servers` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    /// An IP literal, used as it is.
    Ip(SocketAddr),
    /// A name, resolved by the gateway.
    Name { host: String, port: u16 },
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(addr) => addr.fmt(f),
            Self::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A routing rule: requests whose host and path match go to `upstream`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub host: Option<HostMatch>,
    pub path_prefix: String,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
}

/// How a route matches the request's host (lower case, without port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// `a.example.com`
    Exact(String),
    /// `*.example.com` is stored as `.example.com`: any name ending with it.
    Suffix(String),
}
