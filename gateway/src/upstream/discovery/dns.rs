//! DNS resolution of server names with hickory: A and AAAA, TTL-driven.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::config::Dns;

/// How long one query may take before it counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// What can go wrong resolving a name.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot read /etc/resolv.conf")]
    SystemConfig(#[source] hickory_resolver::net::NetError),
    #[error("cannot build the resolver")]
    Build(#[source] hickory_resolver::net::NetError),
    #[error("{name}: lookup failed")]
    Lookup {
        name: String,
        #[source]
        source: hickory_resolver::net::NetError,
    },
    #[error("{name}: the answer holds no address")]
    Empty { name: String },
}

/// Resolves names the way the pod's libc would (resolv.conf search list and ndots),
/// optionally against the configured nameservers, and reports each answer's TTL.
#[derive(Debug)]
pub struct Resolver {
    inner: TokioResolver,
    min_ttl: Duration,
    max_ttl: Duration,
}

impl Resolver {
    /// A resolver for `[dns]`: `/etc/resolv.conf`, with `nameservers` replacing its
    /// servers when set. Answers are not cached: each lookup asks the server.
    pub fn new(dns: &Dns) -> Result<Self, DnsError> {
        let (system, mut opts) = match hickory_resolver::system_conf::read_system_conf() {
            Ok(conf) => conf,
            Err(e) if !dns.nameservers.is_empty() => {
                tracing::debug!(error = %e, "no usable /etc/resolv.conf; using [dns] nameservers");
                (ResolverConfig::default(), ResolverOpts::default())
            }
            Err(e) => return Err(DnsError::SystemConfig(e)),
        };
        opts.cache_size = 0;
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 1;
        let config = if dns.nameservers.is_empty() {
            opts.use_hosts_file = ResolveHosts::Auto;
            system
        } else {
            // Keep the search list and ndots; only the servers change.
            opts.use_hosts_file = ResolveHosts::Never;
            let (domain, search, _) = system.into_parts();
            // libc ignores `domain` when `search` is set.
            let domain = if search.is_empty() { domain } else { None };
            let servers = dns
                .nameservers
                .iter()
                .map(|addr| {
                    let connections = [ProtocolConfig::Udp, ProtocolConfig::Tcp]
                        .into_iter()
                        .map(|p| {
                            let mut c = ConnectionConfig::new(p);
                            c.port = addr.port();
                            c
                        })
                        .collect();
                    NameServerConfig::new(addr.ip(), true, connections)
                })
                .collect();
            ResolverConfig::from_parts(domain, search, servers)
        };
        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(DnsError::Build)?;
        Ok(Self {
            inner,
            min_ttl: dns.min_ttl,
            max_ttl: dns.max_ttl,
        })
    }

    /// The addresses of `host` (A and AAAA) with `port`, and how long they may be used
    /// (the answer's TTL, within `[dns] min_ttl` and `max_ttl`).
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(Vec<SocketAddr>, Duration), DnsError> {
        let lookup = self
            .inner
            .lookup_ip(host)
            .await
            .map_err(|source| DnsError::Lookup {
                name: host.to_owned(),
                source,
            })?;
        let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(DnsError::Empty {
                name: host.to_owned(),
            });
        }
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(Instant::now());
        Ok((addrs, self.clamp(ttl)))
    }

    /// `ttl` within the configured bounds.
    pub fn clamp(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min_ttl, self.max_ttl)
    }

    pub fn min_ttl(&self) -> Duration {
        self.min_ttl
    }

    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }
}
