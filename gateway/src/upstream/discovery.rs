//! Turns configured server entries into backend addresses.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::ServerAddr;

/// Resolves `servers` once with the system resolver; IP literals are used as they are.
/// A name that does not resolve contributes nothing (the caller logs it).
pub fn resolve_servers(servers: &[ServerAddr]) -> (Vec<SocketAddr>, Vec<String>) {
    let mut addrs = Vec::new();
    let mut errors = Vec::new();
    for server in servers {
        match server {
            ServerAddr::Ip(addr) => addrs.push(*addr),
            ServerAddr::Name { host, port } => match (host.as_str(), *port).to_socket_addrs() {
                Ok(found) => addrs.extend(found),
                Err(error) => errors.push(format!("{server}: {error}")),
            },
        }
    }
    (addrs, errors)
}
