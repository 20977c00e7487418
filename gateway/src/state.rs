//! Live state shared by every listener: built whole by `reload`, published with one store.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::config::{AccessList, Edge};
use crate::routes::filters::in_flight::InFlightLimit;
use crate::routes::filters::rate_limit::Limiter;
use crate::routes::filters::weights::Backends;
use crate::routes::{Chain, Request, Table};
use crate::telemetry::RequestSeries;
use crate::tls::{CertSet, CertSource};
use crate::upstream::Upstream;

/// Everything requests and handshakes read: routes, upstreams, and per running
/// listener its mode and certificates. A request loads it once and keeps what it
/// routed to until it ends, so a reload never changes a request midway.
#[derive(Debug)]
pub struct Snapshot {
    pub table: Table,
    /// Indexed by the table's route indices (the config's route order).
    pub routes: Vec<Arc<RouteState>>,
    /// Every upstream (routed or not), for discovery, health and metrics.
    pub upstreams: Vec<Arc<Upstream>>,
    /// Indexed like the listeners the process started with.
    pub listeners: Vec<Arc<ListenerState>>,
}

/// What a matched route leads to.
#[derive(Debug)]
pub struct RouteState {
    /// The route's upstreams by weight; the picked index is one of `targets`.
    pub weights: Backends,
    pub targets: Box<[Target]>,
    /// The route's filters; `None` when it has none (nothing runs for it).
    pub chain: Option<Arc<Chain>>,
    /// Request body limit in bytes (413 past it).
    pub max_body_size: u64,
    /// Whether WebSocket upgrades are passed through.
    pub websocket: bool,
    /// `allow`/`deny`; `None` when every client is admitted.
    pub access: Option<Arc<AccessList>>,
    /// `max_in_flight`, with the route's count.
    pub in_flight: Option<Arc<InFlightLimit>>,
    /// `rate_limit`, with the route's counts.
    pub rate_limit: Option<Arc<Limiter>>,
    /// `auth`: checked before the rate limit.
    pub auth: Option<Arc<crate::auth::RouteAuth>>,
    /// The route's name in the metrics and the access log.
    pub label: Box<str>,
}

/// One upstream of a route.
#[derive(Debug)]
pub struct Target {
    pub upstream: Arc<Upstream>,
    /// Request metrics of the route's requests sent there, per running listener.
    pub series: Vec<Arc<RequestSeries>>,
}

impl RouteState {
    /// The index of the target for a request (by weight; one target: always 0).
    pub fn pick(&self) -> usize {
        self.weights.pick(crate::upstream::random_u64)
    }
}

/// The live settings of one running listener.
#[derive(Debug, Clone)]
pub struct ListenerState {
    pub mode: ListenerMode,
    /// Request metrics of requests no route matched (or redirected).
    pub unrouted: Arc<RequestSeries>,
    /// The certificates of an HTTPS listener.
    pub certs: Option<Arc<CertSet>>,
    /// Limits, timeouts and client policy.
    pub edge: Edge,
    /// `edge.hsts` as a header value, ready to add.
    pub hsts: Option<HeaderValue>,
}

impl ListenerState {
    /// The state of listener `mode` with `edge` settings.
    pub fn new(
        mode: ListenerMode,
        unrouted: Arc<RequestSeries>,
        certs: Option<Arc<CertSet>>,
        edge: Edge,
    ) -> Self {
        // Validated as a header value when the config was read.
        let hsts = edge
            .hsts
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok());
        Self {
            mode,
            unrouted,
            certs,
            edge,
            hsts,
        }
    }
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
    /// The route that serves `req`, if one matches.
    pub fn route(&self, req: &Request<'_>) -> Option<&Arc<RouteState>> {
        self.table.lookup(req).and_then(|i| self.routes.get(i))
    }
}

/// The swappable handle to the current [`Snapshot`].
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// The certificates of running listener number `listener` in the live snapshot: what
/// its TLS resolver serves from.
#[derive(Debug)]
pub struct LiveCerts {
    pub snapshot: SharedSnapshot,
    pub listener: usize,
}

impl CertSource for LiveCerts {
    fn certs(&self) -> Option<Arc<CertSet>> {
        self.snapshot
            .load()
            .listeners
            .get(self.listener)?
            .certs
            .clone()
    }
}
