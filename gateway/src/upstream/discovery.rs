//! Turns configured server entries into backend addresses.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::{self, ServerAddr};

/// Resolves every server of `upstream` once, with the system resolver (which reads
/// `/etc/hosts` and `/etc/resolv.conf`). IP literals are used as they are.
///
/// A name that does not resolve is logged and contributes no backend: the upstream
/// answers 502 rather than stopping the gateway from starting.
pub fn resolve_servers(upstream: &config::Upstream) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for server in &upstream.servers {
        match server {
            ServerAddr::Ip(addr) => addrs.push(*addr),
            ServerAddr::Name { host, port } => match (host.as_str(), *port).to_socket_addrs() {
                Ok(found) => addrs.extend(found),
                Err(error) => tracing::warn!(
                    upstream = %upstream.name,
                    server = %server,
                    %error,
                    "cannot resolve server; it gets no traffic"
                ),
            },
        }
    }
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    addrs
}
