//! Live routing state shared by every listener: built whole, then published with one store.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::proxy::Router;
use crate::upstream::Upstream;

/// Everything a request needs to be routed: readers load it once per request and
/// keep it until the request ends, so a reload never changes a request midway.
#[derive(Debug)]
pub struct Snapshot {
    pub router: Router,
    /// Indexed by the router's upstream indices.
    pub upstreams: Vec<Arc<Upstream>>,
}

impl Snapshot {
    /// Builds the routing state of `config`, resolving upstream server names.
    pub fn build(config: &Config) -> Self {
        Self {
            router: Router::new(&config.routes),
            upstreams: config
                .upstreams
                .iter()
                .map(|u| Arc::new(Upstream::from_config(u)))
                .collect(),
        }
    }

    /// The upstream that serves `host` and `path`, if a route matches.
    pub fn route(&self, host: &str, path: &str) -> Option<&Arc<Upstream>> {
        self.router
            .lookup(host, path)
            .and_then(|i| self.upstreams.get(i))
    }
}

/// The swappable handle to the current [`Snapshot`].
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;
