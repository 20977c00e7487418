//! Raw TOML shape of `gateway.toml`: serde structs that only describe the file.
//!
//! Nothing here is used at run time: `model.rs` turns these into validated types.
//! Every value that a validation error may point at is `Spanned`, so the error can
//! name its line and column.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub(crate) use super::route::{CompressionFile, RouteFile};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) admin: Option<AdminFile>,
    #[serde(default)]
    pub(crate) server: ServerFile,
    #[serde(default)]
    pub(crate) reload: ReloadFile,
    #[serde(default)]
    pub(crate) dns: DnsFile,
    #[serde(default, rename = "listener")]
    pub(crate) listeners: Vec<Spanned<ListenerFile>>,
    #[serde(default, rename = "upstream")]
    pub(crate) upstreams: BTreeMap<Spanned<String>, Spanned<UpstreamFile>>,
    #[serde(default, rename = "route")]
    pub(crate) routes: Vec<Spanned<RouteFile>>,
    pub(crate) compression: Option<Spanned<CompressionFile>>,
    pub(crate) rate_limit: Option<super::rate_limit::RateLimitFile>,
    pub(crate) access_log: Option<super::access_log::AccessLogFile>,
    pub(crate) tracing: Option<super::traces::TracingFile>,
}

/// `[admin]`: health, readiness and metrics endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminFile {
    pub(crate) listen: Spanned<String>,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerFile {
    pub(crate) threads: Option<Spanned<usize>>,
    pub(crate) shutdown_delay: Option<Spanned<String>>,
    pub(crate) drain_timeout: Option<Spanned<String>>,
    pub(crate) merge_slashes: Option<bool>,
}

/// `[reload]`: how config and certificate changes are picked up.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReloadFile {
    pub(crate) poll_interval: Option<Spanned<String>>,
}

/// `[dns]`: how upstream server names are resolved.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnsFile {
    pub(crate) nameservers: Option<Vec<Spanned<String>>>,
    pub(crate) min_ttl: Option<Spanned<String>>,
    pub(crate) max_ttl: Option<Spanned<String>>,
}

/// One `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenerFile {
    pub(crate) name: Spanned<String>,
    pub(crate) listen: Spanned<String>,
    pub(crate) tls: Option<Spanned<TlsFile>>,
    pub(crate) redirect_to_https: Option<Spanned<bool>>,
    pub(crate) redirect_port: Option<Spanned<u16>>,
    pub(crate) max_connections: Option<Spanned<u32>>,
    pub(crate) max_header_size: Option<Spanned<String>>,
    pub(crate) max_uri_length: Option<Spanned<String>>,
    pub(crate) header_timeout: Option<Spanned<String>>,
    pub(crate) keepalive_timeout: Option<Spanned<String>>,
    pub(crate) tls_handshake_timeout: Option<Spanned<String>>,
    pub(crate) h2_max_concurrent_streams: Option<Spanned<u32>>,
    pub(crate) trusted_proxies: Option<Vec<Spanned<String>>>,
    pub(crate) hsts: Option<Spanned<String>>,
    pub(crate) strict_sni: Option<Spanned<bool>>,
    pub(crate) proxy_protocol: Option<Spanned<ProxyProtocolFile>>,
    pub(crate) allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) deny: Option<Vec<Spanned<String>>>,
}

/// A listener's `proxy_protocol = { trusted = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyProtocolFile {
    pub(crate) trusted: Vec<Spanned<String>>,
}

/// A listener's `tls = { certs = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    pub(crate) certs: Vec<Spanned<String>>,
    pub(crate) client_ca: Option<Spanned<String>>,
    pub(crate) client_auth: Option<Spanned<String>>,
}

/// One `[upstream.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamFile {
    pub(crate) servers: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) kubernetes: Option<Spanned<KubernetesFile>>,
    pub(crate) balance: Option<Spanned<BalanceFile>>,
    pub(crate) hash_key: Option<Spanned<String>>,
    pub(crate) health: Option<Spanned<HealthFile>>,
    pub(crate) retries: Option<u32>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) read_timeout: Option<Spanned<String>>,
    pub(crate) write_timeout: Option<Spanned<String>>,
    pub(crate) idle_timeout: Option<Spanned<String>>,
    pub(crate) protocol: Option<Spanned<ProtocolFile>>,
    pub(crate) tls: Option<Spanned<UpstreamTlsFile>>,
    pub(crate) max_streams: Option<Spanned<u32>>,
}

/// `protocol = "..."`: how the gateway talks to the backends.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProtocolFile {
    Http1,
    H2c,
    H2,
    Auto,
}

/// `tls = { ca, server_name, client_cert, insecure_skip_verify }` of an upstream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamTlsFile {
    pub(crate) ca: Option<Spanned<String>>,
    pub(crate) server_name: Option<Spanned<String>>,
    pub(crate) client_cert: Option<Spanned<String>>,
    pub(crate) insecure_skip_verify: Option<Spanned<bool>>,
}

/// `balance = "..."`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BalanceFile {
    RoundRobin,
    Random,
    LeastRequests,
    ConsistentHash,
}

/// `kubernetes = { service = "...", namespace = "...", port = "http" | 80 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KubernetesFile {
    pub(crate) service: Spanned<String>,
    pub(crate) namespace: Option<Spanned<String>>,
    pub(crate) port: Spanned<PortFile>,
}

/// A Service port by name or number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PortFile {
    Number(u16),
    Name(String),
}

/// `health = { ... }`: active checks and passive ejection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthFile {
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) interval: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) healthy_after: Option<Spanned<u32>>,
    pub(crate) unhealthy_after: Option<Spanned<u32>>,
    pub(crate) cooldown: Option<Spanned<String>>,
    pub(crate) grpc: Option<Spanned<bool>>,
    pub(crate) service: Option<Spanned<String>>,
}
