//! The admin listener: `/healthz` (liveness), `/readyz` (readiness), `/metrics` (Prometheus).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::lifecycle::{self, Lifecycle};
use crate::state::SharedSnapshot;
use crate::telemetry::{render_upstreams, Metrics};

/// How long a readiness probe waits for a listener to accept.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the admin endpoints.
pub struct AdminApp {
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    snapshot: SharedSnapshot,
    /// The addresses the proxy listeners were configured with.
    listeners: Vec<SocketAddr>,
    /// Set once every listener accepted a connection.
    listening: AtomicBool,
}

impl AdminApp {
    pub fn new(
        metrics: Arc<Metrics>,
        lifecycle: Arc<Lifecycle>,
        snapshot: SharedSnapshot,
        listeners: Vec<SocketAddr>,
    ) -> Self {
        Self {
            metrics,
            lifecycle,
            snapshot,
            listeners,
            listening: AtomicBool::new(false),
        }
    }

    /// Ready once the config is loaded (true whenever the process runs: it does not
    /// start without one), every listener accepts connections, and discovery has
    /// answered once for every upstream (an answer may be a failure: an upstream
    /// without backends answers 502, but the gateway itself is fine).
    async fn ready(&self) -> bool {
        if self.lifecycle.draining() {
            return false;
        }
        if !self.snapshot.load().upstreams.iter().all(|u| u.settled()) {
            return false;
        }
        if self.listening.load(Ordering::Relaxed) {
            return true;
        }
        for addr in &self.listeners {
            let target = SocketAddr::new(reachable(addr.ip()), addr.port());
            let connect = tokio::net::TcpStream::connect(target);
            if !matches!(
                tokio::time::timeout(PROBE_TIMEOUT, connect).await,
                Ok(Ok(_))
            ) {
                return false;
            }
        }
        self.listening.store(true, Ordering::Relaxed);
        true
    }
}

/// Where to connect to reach a listener bound to `ip`: the loopback for wildcards.
fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.ready().await => (StatusCode::OK, "text/plain", b"ready\n".to_vec()),
            "/readyz" if self.lifecycle.draining() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"shutting down\n".to_vec(),
            ),
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"not ready: listeners or discovery not up yet\n".to_vec(),
            ),
            "/metrics" => {
                let mut text = String::with_capacity(2048);
                self.metrics.render(lifecycle::in_flight(), &mut text);
                render_upstreams(&self.snapshot.load().upstreams, &mut text);
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    text.into_bytes(),
                )
            }
            _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}
