//! The request path: pingora's `ProxyHttp` for one listener, routing over the live snapshot.

mod checks;
mod headers;
mod request;
mod respond;
mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::header::HeaderValue;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};

pub(crate) use request::request_host;
use request::{authority_value, hash_key, is_websocket_upgrade, request_authority, served_covers};
pub use router::Router;

use crate::config::Balance;
use crate::lifecycle::RequestGuard;
use crate::listener::PINGORA_KEEPALIVE_SECS;
use crate::state::{ListenerMode, RouteState, SharedSnapshot};
use crate::telemetry::access::{self, AccessLine};
use crate::upstream::{InFlight, Outcome};
use checks::Refusal;

/// The proxy logic of one listener.
pub struct Gateway {
    /// Index of this listener in the snapshot's listener states.
    index: usize,
    name: Arc<str>,
    /// `X-Forwarded-Proto` sent upstream.
    proto: &'static str,
    snapshot: SharedSnapshot,
}

impl Gateway {
    /// The proxy for listener `name`, number `index` among the running listeners.
    pub fn new(name: &str, tls: bool, index: usize, snapshot: SharedSnapshot) -> Self {
        Self {
            index,
            name: name.into(),
            proto: if tls { "https" } else { "http" },
            snapshot,
        }
    }
}

/// Per-request state.
pub struct RequestCtx {
    start: Instant,
    /// The route the request matched (its upstream and metrics), held so a reload
    /// never changes it midway.
    route: Option<Arc<RouteState>>,
    /// The backend of the current attempt, counted in flight until the request ends.
    backend: Option<InFlight>,
    /// Backends of earlier attempts (allocated only when a request is retried).
    tried: Vec<SocketAddr>,
    /// Attempts so far.
    attempts: u32,
    /// Whether the upstream's response head arrived (no retry after that).
    responded: bool,
    /// A response the gateway wrote itself (404, redirect), for the access log.
    local_status: Option<u16>,
    /// `X-Request-Id`: the client's, or one generated for the request.
    request_id: Option<HeaderValue>,
    /// `Strict-Transport-Security` to add to the response.
    hsts: Option<HeaderValue>,
    /// Whether the client's `X-Forwarded-*` headers are kept (a trusted proxy sent it).
    trusted: bool,
    /// A WebSocket upgrade the route allows.
    upgrade: bool,
    /// Request body bytes received so far, and the route's limit.
    body_bytes: u64,
    max_body: u64,
    /// Counts the request for the shutdown drain.
    _in_flight: RequestGuard,
}

impl RequestCtx {
    /// The request's id: the client's valid `X-Request-Id`, else a new random one.
    fn request_id(&mut self, session: &Session) -> &HeaderValue {
        self.request_id.get_or_insert_with(|| {
            session
                .req_header()
                .headers
                .get(REQUEST_ID)
                .filter(|v| {
                    (1..=128).contains(&v.len())
                        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
                })
                .cloned()
                .unwrap_or_else(new_request_id)
        })
    }
}

/// The request id header, sent upstream and returned to the client.
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// 128 random bits as 32 lower-case hex digits.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits =
        u128::from(crate::upstream::random_u64()) << 64 | u128::from(crate::upstream::random_u64());
    let mut text = [0u8; 32];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = HEX[(bits >> (124 - 4 * i) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            route: None,
            backend: None,
            tried: Vec::new(),
            attempts: 0,
            responded: false,
            local_status: None,
            request_id: None,
            hsts: None,
            trusted: false,
            upgrade: false,
            body_bytes: 0,
            max_body: u64::MAX,
            _in_flight: RequestGuard::new(),
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        let snapshot = self.snapshot.load();
        let Some(listener) = snapshot.listeners.get(self.index) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "listener state missing",
            ));
        };
        ctx.hsts = listener.hsts.clone();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.trusted = headers::is_trusted(&listener.edge.trusted_proxies, peer);
        let (mode, strict_sni) = (listener.mode, listener.edge.strict_sni);
        // pingora keeps an idle HTTP/1 connection 60 s at most; a longer keepalive_timeout
        // raises that for the next request (the listener's own timer does the rest).
        let idle = listener.edge.keepalive_timeout.as_secs();
        if idle > PINGORA_KEEPALIVE_SECS && session.as_downstream().get_keepalive().is_some() {
            session.set_keepalive(Some(idle));
        }
        if let Err(refusal) = checks::check_request(session.as_downstream(), &listener.edge) {
            drop(snapshot);
            return refuse(session, ctx, refusal).await;
        }
        if let ListenerMode::RedirectToHttps { port } = mode {
            drop(snapshot);
            let request_id = ctx.request_id(session).clone();
            let status = respond::redirect_to_https(session, port, &request_id).await?;
            ctx.local_status = Some(status);
            return Ok(true);
        }
        let req = session.req_header();
        let host = request_host(req).unwrap_or("");
        if strict_sni && !served_covers(session, host) {
            drop(snapshot);
            let refusal = Refusal {
                status: 421,
                reason: "Host not covered by the connection's certificate (strict_sni)",
            };
            return refuse(session, ctx, refusal).await;
        }
        ctx.route = snapshot.route(host, req.uri.path()).cloned();
        drop(snapshot);
        let Some(route) = &ctx.route else {
            let request_id = ctx.request_id(session).clone();
            respond::json_error(session, 404, &request_id, ctx.hsts.as_ref()).await?;
            ctx.local_status = Some(404);
            return Ok(true);
        };
        ctx.max_body = route.max_body_size;
        ctx.upgrade = route.websocket && is_websocket_upgrade(req);
        if checks::content_length(req).is_some_and(|n| n > ctx.max_body) {
            let refusal = Refusal {
                status: 413,
                reason: "Content-Length over the route's max_body_size",
            };
            return refuse(session, ctx, refusal).await;
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > ctx.max_body {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body over the route's max_body_size",
                ));
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        if let Some(previous) = ctx.backend.take() {
            ctx.tried.push(previous.backend().addr);
        }
        ctx.attempts += 1;
        let Some(upstream) = ctx.route.as_deref().map(|r| &*r.upstream) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no upstream routed",
            ));
        };
        // A request without the hash key is balanced round robin, not pinned.
        let key = match &upstream.config.balance {
            Balance::ConsistentHash(key) => hash_key(session, key),
            _ => None,
        };
        let Some(chosen) = upstream.select(key, &ctx.tried) else {
            let mut e = Error::explain(ErrorType::ConnectNoRoute, "upstream has no backends");
            e.esource = ErrorSource::Upstream;
            return Err(e);
        };
        let peer = chosen.backend().peer();
        ctx.backend = Some(chosen);
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let (Some(route), Some(backend)) = (&ctx.route, &ctx.backend) {
            let upstream = &route.upstream;
            backend.backend().count(Outcome::ConnectFailure);
            backend.backend().connect_failed(&upstream.config.passive);
            // Nothing reached the backend: any request may go to another one, while
            // attempts remain and the whole request stays within one connect timeout
            // (so when every backend is unreachable the client gets 502 in time).
            let in_budget = ctx.start.elapsed() < upstream.config.timeouts.connect;
            e.set_retry(ctx.attempts <= upstream.config.retries && in_budget);
        }
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(backend) = &ctx.backend {
            backend.backend().connect_succeeded();
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        // Retried only when the connection closed before any response byte, the
        // request can be sent again, and attempts remain.
        if let Some(backend) = &ctx.backend {
            backend.backend().count(Outcome::Error);
        }
        let retries = ctx.route.as_ref().map_or(0, |r| r.upstream.config.retries);
        let closed_early = !ctx.responded
            && e.esource() == &ErrorSource::Upstream
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            );
        // A body already sent upstream may only be replayed for idempotent methods;
        // the downstream session knows whether the request has a body at all (an
        // HTTP/2 request may carry one without Content-Length).
        let replayable = session.req_header().method.is_idempotent()
            || session.as_downstream_mut().is_body_empty();
        e.set_retry(
            closed_early
                && replayable
                && !session.as_ref().retry_buffer_truncated()
                && ctx.attempts <= retries,
        );
        e
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        headers::strip_response(upstream_response);
        upstream_response.insert_header(REQUEST_ID, ctx.request_id(session).clone())?;
        if let Some(hsts) = &ctx.hsts {
            upstream_response.insert_header(respond::HSTS, hsts)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        ctx.responded = true;
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        headers::strip_request(upstream_request, ctx.upgrade);
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let host = authority_value(session.req_header());
        headers::set_forwarded(upstream_request, peer, ctx.trusted, self.proto, host)?;
        upstream_request.insert_header(REQUEST_ID, ctx.request_id(session).clone())?;
        Ok(())
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // `logging` reports every error once, at a level that fits its cause.
        true
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = error_status(e);
        if code > 0 {
            let request_id = ctx.request_id(session).clone();
            let hsts = ctx.hsts.clone();
            if let Err(write_error) =
                respond::json_error(session, code, &request_id, hsts.as_ref()).await
            {
                tracing::debug!(%write_error, "cannot send error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.local_status)
            .unwrap_or(0);
        let upstream_ok = e.is_none_or(|e| e.esource() != &ErrorSource::Upstream);
        if let (true, true, Some(backend)) = (ctx.responded, upstream_ok, &ctx.backend) {
            backend.backend().count(Outcome::Success);
        }
        if status > 0 {
            let elapsed = ctx.start.elapsed();
            match &ctx.route {
                Some(route) => {
                    if let Some(series) = route.series.get(self.index) {
                        series.record(status, elapsed);
                    }
                }
                None => {
                    if let Some(l) = self.snapshot.load().listeners.get(self.index) {
                        l.unrouted.record(status, elapsed);
                    }
                }
            }
        }
        if let Some(e) = e {
            if is_client_gone(e) {
                tracing::debug!(listener = %self.name, error = %e, "client went away");
            } else {
                tracing::warn!(listener = %self.name, error = %e, "request failed");
            }
        }
        if !access::enabled() {
            return;
        }
        let req = session.req_header();
        access::log(&AccessLine {
            listener: &self.name,
            client: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            method: req.method.as_str(),
            host: request_authority(req).unwrap_or("-"),
            path: req.uri.path(),
            status,
            upstream: ctx.backend.as_ref().map(|b| b.backend().addr),
            duration: ctx.start.elapsed(),
            bytes: session.as_downstream().body_bytes_sent(),
            request_id: ctx
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
        });
    }
}

/// Answers a refused request with its status and closes the connection after it.
async fn refuse(
    session: &mut Session,
    ctx: &mut RequestCtx,
    refusal: Refusal,
) -> pingora::Result<bool> {
    let request_id = ctx.request_id(session).clone();
    tracing::debug!(
        status = refusal.status,
        reason = refusal.reason,
        "request refused"
    );
    session.set_keepalive(None);
    respond::json_error(session, refusal.status, &request_id, ctx.hsts.as_ref()).await?;
    ctx.local_status = Some(refusal.status);
    Ok(true)
}

/// The status to answer a failed request with; 0 when the client is gone.
fn error_status(e: &Error) -> u16 {
    use ErrorType::*;
    match (e.etype(), e.esource()) {
        (HTTPStatus(code), _) => *code,
        // No backend could be reached (refused or timed out): 502. A backend that
        // accepted the request and then went silent: 504.
        (ReadTimedout | WriteTimedout, ErrorSource::Upstream) => 504,
        (_, ErrorSource::Upstream) => 502,
        (_, ErrorSource::Downstream) if is_client_gone(e) => 0,
        (_, ErrorSource::Downstream) => 400,
        _ => 500,
    }
}

fn is_client_gone(e: &Error) -> bool {
    use ErrorType::*;
    e.esource() == &ErrorSource::Downstream
        && matches!(
            e.etype(),
            ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 32);
            assert!(id
                .as_bytes()
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        }
    }

    #[test]
    fn errors_map_to_statuses() {
        let up = |t| {
            let mut e = Error::new(t);
            e.esource = ErrorSource::Upstream;
            e
        };
        let down = |t| {
            let mut e = Error::new(t);
            e.esource = ErrorSource::Downstream;
            e
        };
        assert_eq!(error_status(&up(ErrorType::ConnectRefused)), 502);
        assert_eq!(error_status(&up(ErrorType::ConnectTimedout)), 502);
        assert_eq!(error_status(&up(ErrorType::ReadTimedout)), 504);
        assert_eq!(error_status(&down(ErrorType::ConnectionClosed)), 0);
        assert_eq!(error_status(&down(ErrorType::InvalidHTTPHeader)), 400);
        assert_eq!(error_status(&Error::new(ErrorType::HTTPStatus(413))), 413);
    }
}
