//! Upstream groups: their backends (`discovery`) and the choice of one per request.

mod discovery;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

use crate::config;

pub use discovery::resolve_servers;

/// How long to wait for a TCP connection to a backend.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a backend may stay silent while a response is awaited or streamed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a pooled keep-alive connection may stay idle before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One backend address and the peer template used to reach it.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    peer: HttpPeer,
}

impl Backend {
    pub fn new(addr: SocketAddr) -> Self {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.read_timeout = Some(READ_TIMEOUT);
        peer.options.idle_timeout = Some(IDLE_TIMEOUT);
        Self { addr, peer }
    }

    /// The peer pingora connects to; connections to equal peers share one pool.
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }
}

/// A named group of backends, balanced round-robin.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    backends: Box<[Backend]>,
    next: AtomicUsize,
}

impl Upstream {
    pub fn new(name: String, addrs: Vec<SocketAddr>) -> Self {
        Self {
            name,
            backends: addrs.into_iter().map(Backend::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Resolves the servers of a configured upstream (see [`resolve_servers`]).
    pub fn from_config(upstream: &config::Upstream) -> Self {
        Self::new(upstream.name.clone(), resolve_servers(upstream))
    }

    /// The next backend in round-robin order, or `None` when there is none.
    pub fn select(&self) -> Option<&Backend> {
        if self.backends.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.backends.len();
        self.backends.get(i)
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_each_backend_in_turn() {
        let addrs: Vec<SocketAddr> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let up = Upstream::new("u".into(), addrs.clone());
        let picked: Vec<SocketAddr> = (0..6).map(|_| up.select().unwrap().addr).collect();
        assert_eq!(picked[..3], addrs[..]);
        assert_eq!(picked[3..], addrs[..]);
    }

    #[test]
    fn empty_upstream_selects_nothing() {
        assert!(Upstream::new("u".into(), vec![]).select().is_none());
    }
}
