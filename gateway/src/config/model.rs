//! Validated configuration: the only config types runtime code sees.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::error::Location;

/// Worker threads when `[server] threads` is not set: the CPUs this process may use
/// (`available_parallelism` honours cgroup CPU quotas and affinity masks).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The longest duration any setting takes (longer ones overflow timers).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often files are re-read even when no change was seen (`[reload] poll_interval`).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// After SIGTERM, how long the gateway keeps accepting while load balancers take the
/// pod out (`[server] shutdown_delay`).
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
/// Then how long in-flight requests get to finish (`[server] drain_timeout`).
/// 5 s + 20 s fits the default 30 s `terminationGracePeriodSeconds`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Upstream defaults (`[upstream.NAME]`).
pub const DEFAULT_RETRIES: u32 = 2;
/// HTTP/2 streams per backend connection (nginx's `http2_max_concurrent_streams`).
pub const DEFAULT_MAX_STREAMS: u32 = 100;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Health defaults (`health = { ... }`).
pub const DEFAULT_HEALTH_PATH: &str = "/";
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_HEALTHY_AFTER: u32 = 2;
pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(10);
/// DNS defaults (`[dns]`).
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(30);

/// A whole, validated `gateway.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    pub admin: Option<Admin>,
    pub server: Server,
    pub reload: Reload,
    pub dns: Dns,
    pub listeners: Vec<Listener>,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    /// The whole definition of each route, indexed like `routes`.
    pub rules: Vec<RouteRule>,
    /// `[compression]`: what routes that compress do (a copy is in each one's chain).
    pub compression: crate::routes::filters::compression::Compression,
    /// `[rate_limit] shared`: the routes' limits shared through Redis.
    pub rate_limit: Option<crate::ratelimit::Shared>,
    /// `[access_log]`: the access lines' format and extra fields.
    pub access_log: crate::telemetry::access_format::AccessFormat,
    /// `[tracing]`: OpenTelemetry spans and where they go; `None`: no spans (a client's
    /// `traceparent` still goes to the backend as it came).
    pub tracing: Option<Tracing>,
}

/// How long one export of spans may take (`[tracing] otlp.timeout`), as OTLP's default.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// `[tracing]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// The OTLP URL: over HTTP the whole traces URL (`.../v1/traces`), over gRPC the
    /// collector's `http://HOST:PORT`.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// The share of new traces (requests without a sampled parent) that are recorded.
    pub sample_ratio: f64,
    /// The `service.name` of every span.
    pub service_name: String,
    /// How long one export may take before its spans are counted as dropped.
    pub timeout: Duration,
}

/// OTLP's transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// HTTP/1.1 POSTs of protobuf (port 4318).
    Http,
    /// gRPC `TraceService/Export` (port 4317).
    Grpc,
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
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
}

/// How changes to the files are picked up.
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// Period of the safety-net re-read that catches changes the watcher missed.
    pub poll_interval: Duration,
}

/// How server names are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Dns {
    /// Servers to ask instead of those in `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Answers are re-resolved when their TTL expires, kept within these bounds.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

/// One listening socket and what it does with requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    pub kind: ListenerKind,
    /// Limits, timeouts and client-facing policy.
    pub edge: Edge,
    /// Where the listener is defined, for errors found later (binding, certificates).
    pub at: Location,
}

/// What a listener allows its clients: limits, timeouts and policy (all reloadable
/// but the HTTP/2 settings, which apply from the next start).
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// Open connections; more are closed at once (and counted).
    pub max_connections: u32,
    /// Request head (request line and headers) in bytes; more gets 431.
    pub max_header_size: usize,
    /// Request target in bytes; longer gets 414.
    pub max_uri_length: usize,
    /// Time from a request's first byte (or the connection's start) to its complete head.
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept open between requests.
    pub keepalive_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
    /// Peers whose `X-Forwarded-*`/`Forwarded` headers are kept and appended to.
    pub trusted_proxies: CidrSet,
    /// `Strict-Transport-Security` value added to HTTPS responses.
    pub hsts: Option<String>,
    /// Answer 421 when the Host is not covered by the certificate the connection got.
    pub strict_sni: bool,
    /// Whether repeated slashes in a path are merged before routing (`[server]
    /// merge_slashes`, the same on every listener).
    pub merge_slashes: bool,
    /// `proxy_protocol`: the peers that must send a PROXY protocol header (every other
    /// peer is refused); `None`: no header is read.
    pub proxy_protocol: Option<Arc<CidrSet>>,
    /// `allow`/`deny`: the client addresses admitted, checked before TLS.
    pub access: Arc<AccessList>,
}

impl Default for Edge {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_uri_length: DEFAULT_MAX_URI_LENGTH,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            h2_max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            trusted_proxies: CidrSet::default(),
            hsts: None,
            strict_sni: false,
            merge_slashes: DEFAULT_MERGE_SLASHES,
            proxy_protocol: None,
            access: Arc::default(),
        }
    }
}

pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// nginx's `large_client_header_buffers` default (4 × 8k) and Envoy's 60 KiB bracket this.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 32 * 1024;
/// nginx answers 414 past one 8k buffer.
pub const DEFAULT_MAX_URI_LENGTH: usize = 8 * 1024;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// nginx's `merge_slashes` default.
pub const DEFAULT_MERGE_SLASHES: bool = true;
/// nginx's `client_max_body_size` default.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1024 * 1024;

pub use crate::cidr::{AccessList, Cidr, CidrSet};

/// What a listener serves.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenerKind {
    /// TLS with certificates chosen by SNI; the first directory is the default.
    Https {
        certs: Vec<CertDir>,
        /// `client_ca`/`client_auth`: client certificates asked for and verified.
        client: Option<ClientAuth>,
    },
    /// Plain HTTP serving the routes.
    Http,
    /// Plain HTTP answering every request with a 308 to `https://`.
    RedirectToHttps { port: Option<u16> },
}

/// Client certificates on an HTTPS listener: verified against the CA certificates in
/// `ca`'s `ca.crt` at the handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientAuth {
    pub ca: CertDir,
    /// `client_auth = "required"` (the default): no valid certificate, no connection;
    /// `"optional"`: a connection without one is served as without client auth (one
    /// that presents an invalid certificate is still refused).
    pub required: bool,
}

/// A directory laid out like a mounted TLS Secret (`tls.crt`, `tls.key`).
#[derive(Debug, Clone, PartialEq)]
pub struct CertDir {
    /// Absolute, or relative to the process's working directory: already joined
    /// onto the config file's directory.
    pub path: PathBuf,
    pub at: Location,
}

/// A named group of backends and how requests are spread over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    pub discovery: Discovery,
    pub balance: Balance,
    /// Active checks, when configured.
    pub health: Option<ActiveHealth>,
    pub passive: PassiveHealth,
    /// Further backends tried after a failed connect or a connection closed before any
    /// response byte.
    pub retries: u32,
    pub timeouts: Timeouts,
    pub protocol: Protocol,
    /// TLS to the backends (`tls = {...}`, or implied by `h2` and `auto`).
    pub tls: Option<UpstreamTls>,
    /// HTTP/2: streams per backend connection before another connection is opened.
    pub max_streams: u32,
}

/// How the gateway talks to an upstream's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (over TLS when the upstream has `tls`).
    Http1,
    /// HTTP/2 with prior knowledge, without TLS.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2,
    /// TLS offering ALPN `h2` then `http/1.1`: HTTP/2 when the backend picks it.
    Auto,
}

/// TLS to an upstream's backends.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    /// The directory whose `ca.crt` verifies the backends; `None`: the system's roots.
    pub ca: Option<CertDir>,
    /// The name the backends' certificates are verified against (and sent as SNI).
    pub server_name: UpstreamServerName,
    /// A directory with `tls.crt`/`tls.key` presented to backends that ask for one.
    pub client_cert: Option<CertDir>,
    /// Certificates are not verified (logged as a WARN at every load).
    pub insecure_skip_verify: bool,
    /// The `tls` table (or `protocol`) in the config.
    pub at: Location,
}

/// The name an upstream's backends are verified against.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamServerName {
    /// `server_name`, or the servers' host name.
    Name(String),
    /// Servers given as IP addresses: each backend's address (its certificate's IP SAN).
    BackendIp,
}

/// Where an upstream's backends come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Discovery {
    /// `servers = [...]`: IP literals, and names resolved by DNS.
    Servers(Vec<ServerAddr>),
    /// `kubernetes = {...}`: the ready endpoints of a Service's EndpointSlices.
    Kubernetes(KubernetesService),
}

/// The IP literals among `servers`.
pub fn ip_servers(servers: &[ServerAddr]) -> Vec<SocketAddr> {
    servers
        .iter()
        .filter_map(|s| match s {
            ServerAddr::Ip(a) => Some(*a),
            ServerAddr::Name { .. } => None,
        })
        .collect()
}

/// A Kubernetes Service whose EndpointSlices are watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesService {
    pub service: String,
    /// `None`: the pod's own namespace.
    pub namespace: Option<String>,
    pub port: ServicePort,
}

/// A Service port, by name or number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServicePort {
    Name(String),
    Number(u16),
}

/// How a backend is chosen for each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    Random,
    /// Power of two random choices on in-flight requests.
    LeastRequests,
    ConsistentHash(HashKey),
}

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header (lower case).
    Header(String),
    Cookie(String),
    ClientIp,
    Path,
}

/// Active HTTP health checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveHealth {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_after: u32,
    pub unhealthy_after: u32,
    /// `grpc = true`: `grpc.health.v1.Health/Check` for this service name instead of
    /// `GET path`.
    pub grpc: Option<String>,
}

/// Passive ejection: after `unhealthy_after` failed connects in a row a backend gets
/// no requests for `cooldown`, then the next request probes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PassiveHealth {
    pub unhealthy_after: u32,
    pub cooldown: Duration,
}

/// Timeouts towards an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
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

/// A routing rule: requests whose host and path match go to `upstream`. (What
/// `proxy::Router` and the request path read today; the route's whole definition is
/// the [`RouteRule`] at the same index of [`Config::rules`].)
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The first of the rule's hosts.
    pub host: Option<HostMatch>,
    /// The rule's path when it is a prefix, else `/`.
    pub path_prefix: String,
    /// Index into [`Config::upstreams`]: the rule's first backend (0 for a redirect).
    pub upstream: usize,
    /// Request body in bytes; more gets 413.
    pub max_body_size: u64,
    /// Whether WebSocket upgrades are proxied (otherwise `Upgrade` is dropped).
    pub websocket: bool,
    /// `allow`/`deny`: the clients admitted (others get 403); `None`: every client.
    pub access: Option<Arc<AccessList>>,
    /// Requests in flight on the route past which it answers 503.
    pub max_in_flight: Option<u32>,
    /// `rate_limit`: past it, 429.
    pub rate_limit: Option<crate::routes::filters::rate_limit::RateLimit>,
    /// `auth`: who may use the route (others get 401).
    pub auth: Option<RouteAuth>,
}

/// A route's `auth`.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteAuth {
    /// `basic = { users, realm }`: an htpasswd file of bcrypt entries.
    Basic {
        /// The htpasswd file (in a mounted Secret), joined onto the config's directory.
        users: PathBuf,
        /// Where `users` is in the config.
        at: Location,
        realm: String,
    },
    /// `forward = {...}`: each request asked of an auth service first.
    Forward(ForwardAuth),
    /// `jwt = {...}`: a bearer token verified against a key set.
    Jwt(JwtAuth),
}

/// A route's JWT auth: `Authorization: Bearer` tokens verified against a JWKS.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtAuth {
    pub jwks: JwksSource,
    /// Where `jwks` is in the config.
    pub at: Location,
    /// `iss` must be this, when set.
    pub issuer: Option<String>,
    /// `aud` must name one of these, when any.
    pub audiences: Vec<String>,
    /// Claims sent upstream as fields (the client's own fields of those names removed).
    pub claims_to_headers: Vec<(String, http::HeaderName)>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Where a JWT route's keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum JwksSource {
    /// A JWKS file (in a mounted Secret or ConfigMap), joined onto the config's directory.
    File(PathBuf),
    /// A JWKS URL, fetched through the implicit upstream `jwks:HOST:PORT` (an index into
    /// [`Config::upstreams`]) and refreshed in the background.
    Url {
        url: String,
        upstream: usize,
        /// The path and query asked (`GET`).
        path: String,
    },
}

/// Clock skew allowed on `exp` and `nbf` without `leeway` (Envoy's default too).
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(60);

/// A route's forward auth (nginx's `auth_request`).
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardAuth {
    /// Index into [`Config::upstreams`]: the auth service (`upstream`, or the implicit
    /// upstream of `url`).
    pub upstream: usize,
    /// The path and query asked (`GET`).
    pub path: String,
    /// Client request fields sent to the auth service.
    pub request_headers: Vec<http::HeaderName>,
    /// Auth response fields copied onto the request (the client's own removed first).
    pub response_headers: Vec<http::HeaderName>,
    /// Where a 401 sends the client (`$request_url` replaced, URL-encoded).
    pub signin: Option<String>,
    pub timeout: Duration,
}

/// The forward auth service's answer time without `timeout`.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(2);

/// A Basic auth realm without `realm`.
pub const DEFAULT_REALM: &str = "restricted";

/// A route's whole definition: what it matches, where it sends requests, and the
/// filters they go through (read by `routes::Table` and the chain).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRule {
    /// Hosts, path, method, headers and query.
    pub matches: crate::routes::Matches,
    /// The upstreams by weight; `None` for a redirect route.
    pub backends: Option<crate::routes::filters::weights::Backends>,
    pub chain: crate::routes::Chain,
    /// Where the route is defined.
    pub at: Location,
}

impl RouteRule {
    /// The route as a metrics label: its hosts (comma-separated, `*.` for a wildcard),
    /// then its path as nginx writes locations (`/api` for a prefix, `=/login` for an
    /// exact path, `~^/v[0-9]+` for a regex), after `METHOD ` when it matches one; e.g.
    /// `*.example.com/api`, `/` or `POST a.test=/login`. Routes that differ only in
    /// header or query matches share it.
    pub fn label(&self) -> String {
        use crate::routes::{HostPattern, PathMatch};
        let m = &self.matches;
        let mut label = String::new();
        if let Some(method) = &m.method {
            label.push_str(method.as_str());
            label.push(' ');
        }
        for (i, host) in m.hosts.iter().enumerate() {
            if i > 0 {
                label.push(',');
            }
            match host {
                HostPattern::Exact(h) => label.push_str(h),
                HostPattern::Suffix(s) => {
                    label.push('*');
                    label.push_str(s);
                }
            }
        }
        match &m.path {
            PathMatch::Prefix(p) => label.push_str(p),
            PathMatch::Exact(p) => {
                label.push('=');
                label.push_str(p);
            }
            PathMatch::Regex(r) => {
                label.push('~');
                label.push_str(r);
            }
        }
        label
    }
}

/// How a route matches the request's host (lower case, without port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// `a.example.com`
    Exact(String),
    /// `*.example.com` is stored as `.example.com`: any name ending with it.
    Suffix(String),
}
