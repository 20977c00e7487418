//! Raw TOML shape of a `[[route]]` and of `[compression]`: serde structs that only
//! describe the file (spans kept for located errors).

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteFile {
    pub(crate) host: Option<Spanned<HostsFile>>,
    pub(crate) path_prefix: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<PathFile>>,
    pub(crate) method: Option<Spanned<String>>,
    pub(crate) headers: Option<Spanned<Vec<Spanned<ValueMatchFile>>>>,
    pub(crate) query: Option<Spanned<Vec<Spanned<ValueMatchFile>>>>,
    pub(crate) upstream: Option<Spanned<String>>,
    pub(crate) backends: Option<Spanned<Vec<Spanned<BackendFile>>>>,
    pub(crate) request_headers: Option<Spanned<ModifierFile>>,
    pub(crate) response_headers: Option<Spanned<ModifierFile>>,
    pub(crate) rewrite: Option<Spanned<RewriteFile>>,
    pub(crate) redirect: Option<Spanned<RedirectFile>>,
    pub(crate) compression: Option<Spanned<bool>>,
    pub(crate) cors: Option<Spanned<CorsFile>>,
    pub(crate) max_body_size: Option<Spanned<String>>,
    pub(crate) websocket: Option<bool>,
    pub(crate) allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) deny: Option<Vec<Spanned<String>>>,
    pub(crate) max_in_flight: Option<Spanned<u32>>,
    pub(crate) rate_limit: Option<Spanned<RateLimitFile>>,
    pub(crate) auth: Option<Spanned<AuthFile>>,
}

/// `auth = { basic = { users = "/etc/gateway/users/auth", realm = "admin" } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthFile {
    pub(crate) basic: Option<Spanned<BasicAuthFile>>,
    pub(crate) forward: Option<Spanned<ForwardAuthFile>>,
    pub(crate) jwt: Option<Spanned<JwtAuthFile>>,
}

/// `jwt = { jwks, issuer, audiences, claims_to_headers, leeway }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtAuthFile {
    /// A file, or an `http(s)://` URL.
    pub(crate) jwks: Spanned<String>,
    pub(crate) issuer: Option<Spanned<String>>,
    pub(crate) audiences: Option<Vec<Spanned<String>>>,
    pub(crate) claims_to_headers: Option<std::collections::BTreeMap<String, Spanned<String>>>,
    pub(crate) leeway: Option<Spanned<String>>,
}

/// `forward = { url | upstream + path, request_headers, response_headers, signin, timeout }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForwardAuthFile {
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) upstream: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) request_headers: Option<Vec<Spanned<String>>>,
    pub(crate) response_headers: Option<Vec<Spanned<String>>>,
    pub(crate) signin: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

/// `basic = { users, realm }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BasicAuthFile {
    pub(crate) users: Spanned<String>,
    pub(crate) realm: Option<Spanned<String>>,
}

/// `rate_limit = { requests = 100, per = "1s", burst = 50, key = "client_ip" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitFile {
    pub(crate) requests: Option<Spanned<u32>>,
    pub(crate) per: Option<Spanned<String>>,
    pub(crate) burst: Option<Spanned<u32>>,
    pub(crate) key: Option<Spanned<String>>,
}

/// `host = "a.example.com"` or `host = ["a.example.com", "*.b.example.com"]`.
#[derive(Debug)]
pub(crate) enum HostsFile {
    /// Located by the `Spanned` around the whole value.
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for HostsFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Hosts;
        impl<'de> Visitor<'de> for Hosts {
            type Value = HostsFile;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a host name or a list of host names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HostsFile, E> {
                Ok(HostsFile::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostsFile, A::Error> {
                let mut hosts = Vec::new();
                while let Some(h) = seq.next_element::<Spanned<String>>()? {
                    hosts.push(h);
                }
                Ok(HostsFile::Many(hosts))
            }
        }
        d.deserialize_any(Hosts)
    }
}

/// `path = { prefix = "/api" }`, `{ exact = "/login" }` or `{ regex = "^/v[0-9]+/" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PathFile {
    pub(crate) prefix: Option<Spanned<String>>,
    pub(crate) exact: Option<Spanned<String>>,
    pub(crate) regex: Option<Spanned<String>>,
}

/// A `headers` or `query` entry: `{ name = "...", value = "..." }` or `{ name, regex }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValueMatchFile {
    pub(crate) name: Spanned<String>,
    pub(crate) value: Option<Spanned<String>>,
    pub(crate) regex: Option<Spanned<String>>,
}

/// A `backends` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackendFile {
    pub(crate) upstream: Spanned<String>,
    pub(crate) weight: Option<Spanned<u32>>,
}

/// `request_headers` / `response_headers`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModifierFile {
    pub(crate) set: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub(crate) add: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub(crate) remove: Option<Vec<Spanned<String>>>,
}

/// `rewrite = { path_prefix | path, host }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RewriteFile {
    pub(crate) path_prefix: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) host: Option<Spanned<String>>,
}

/// `redirect = { scheme, host, port, path_prefix | path, status }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedirectFile {
    pub(crate) scheme: Option<SchemeFile>,
    pub(crate) host: Option<Spanned<String>>,
    pub(crate) port: Option<Spanned<u16>>,
    pub(crate) path_prefix: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) status: Option<Spanned<u16>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SchemeFile {
    Http,
    Https,
}

/// `cors = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorsFile {
    pub(crate) allow_origins: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) allow_methods: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) allow_headers: Option<Vec<Spanned<String>>>,
    pub(crate) expose_headers: Option<Vec<Spanned<String>>>,
    pub(crate) allow_credentials: Option<bool>,
    pub(crate) max_age: Option<Spanned<String>>,
}

/// `[compression]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompressionFile {
    pub(crate) enabled: Option<bool>,
    pub(crate) algorithms: Option<Spanned<Vec<Spanned<AlgorithmFile>>>>,
    pub(crate) min_size: Option<Spanned<String>>,
    pub(crate) types: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) levels: Option<LevelsFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AlgorithmFile {
    Zstd,
    Br,
    Gzip,
}

/// `levels = { gzip = 1, br = 1, zstd = 1 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LevelsFile {
    pub(crate) gzip: Option<Spanned<i64>>,
    pub(crate) br: Option<Spanned<i64>>,
    pub(crate) zstd: Option<Spanned<i64>>,
}
