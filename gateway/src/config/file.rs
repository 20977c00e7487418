//! Raw TOML shape of `gateway.toml`: serde structs that only describe the file.
//!
//! Nothing here is used at run time: `model.rs` turns these into validated types.
//! Every value that a validation error may point at is `Spanned`, so the error can
//! name its line and column.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) admin: Option<AdminFile>,
    #[serde(default)]
    pub(crate) server: ServerFile,
    #[serde(default)]
    pub(crate) reload: ReloadFile,
    #[serde(default, rename = "listener")]
    pub(crate) listeners: Vec<Spanned<ListenerFile>>,
    #[serde(default, rename = "upstream")]
    pub(crate) upstreams: BTreeMap<Spanned<String>, Spanned<UpstreamFile>>,
    #[serde(default, rename = "route")]
    pub(crate) routes: Vec<Spanned<RouteFile>>,
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
}

/// `[reload]`: how config and certificate changes are picked up.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReloadFile {
    pub(crate) poll_interval: Option<Spanned<String>>,
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
}

/// A listener's `tls = { certs = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    pub(crate) certs: Vec<Spanned<String>>,
}

/// One `[upstream.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamFile {
    pub(crate) servers: Spanned<Vec<Spanned<String>>>,
}

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteFile {
    pub(crate) host: Option<Spanned<String>>,
    pub(crate) path_prefix: Option<Spanned<String>>,
    pub(crate) upstream: Spanned<String>,
}
