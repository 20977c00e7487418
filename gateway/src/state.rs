//! Live state shared by every listener: built whole by `reload`, published with one store.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::proxy::Router;
use crate::tls::CertSet;
use crate::upstream::Upstream;

/// Everything requests and handshakes read: routes, upstreams, and per running
/// listener its mode and certificates. A request loads it once and keeps what it
/// routed to until it ends, so a reload never changes a request midway.
#[derive(Debug)]
pub struct Snapshot {
    pub router: Router,
    /// Indexed by the router's upstream indices.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Indexed like the listeners the process started with.
    pub listeners: Vec<ListenerState>,
}

/// The live settings of one running listener.
#[derive(Debug, Clone)]
pub struct ListenerState {
    pub mode: ListenerMode,
    /// The certificates of an HTTPS listener.
    pub certs: Option<Arc<CertSet>>,
}

/// What a listener does with requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerMode {
    /// Route them.
    Serve,
    /// Answer 308 to `https://`, with `port` in the URL when set.
    RedirectToHttps { port: Option<u16> },
}

impl Snapshot {
    /// The upstream that serves `host` and `path`, if a route matches.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Upstream>> {
        self.router
            .lookup(host, path)
            .and_then(|i| self.upstreams.get(i))
    }
}

/// The swappable handle to the current [`Snapshot`].
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;
