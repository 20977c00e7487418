//! The request path: one listener's requests, from the head the connection layer read
//! (an HTTP/1 request of the gateway's own codec, an HTTP/2 stream) through the checks
//! and routing to the backend exchange, and their logs and metrics.

mod auth_request;
mod checks;
mod downstream;
mod error;
mod filters;
mod forward;
mod forward_h2;
mod grpc;
mod h1;
mod h2;
mod headers;
mod normalize;
mod outgoing;
mod request;
mod respond;
mod uri;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::HeaderMap;
use pingora::connectors::TransportConnector;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::IO;

pub(crate) use downstream::{Downstream, Request, RequestId};
pub(crate) use request::request_host;

pub(crate) use uri::LineCheck;

use crate::lifecycle::RequestGuard;
use crate::routes::filters::rate_limit::Decision;
use crate::routes::OnRequest;
use crate::state::{ListenerMode, RouteState, SharedSnapshot};
use crate::telemetry::access::{self, AccessLine};
use crate::telemetry::traces::Finished;
use crate::upstream::InFlight;
use checks::Refusal;
use error::ProxyError;
use request::{is_websocket_upgrade, request_authority, served_covers};

/// The request path of one listener.
pub struct Gateway {
    /// Index of this listener in the snapshot's listener states.
    index: usize,
    name: Arc<str>,
    /// `X-Forwarded-Proto` sent upstream.
    proto: &'static str,
    snapshot: SharedSnapshot,
    /// Makes new connections to backends (idle ones are in each backend's pool).
    connector: Arc<TransportConnector>,
}

impl Gateway {
    /// The request path of listener `name`, number `index` among the running listeners.
    pub fn new(
        name: &str,
        tls: bool,
        index: usize,
        snapshot: SharedSnapshot,
        connector: Arc<TransportConnector>,
    ) -> Self {
        Self {
            index,
            name: name.into(),
            proto: if tls { "https" } else { "http" },
            snapshot,
            connector,
        }
    }
}

/// What a client connection tells each of its requests, read once when it starts.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// The peer's address.
    pub(crate) ip: Option<IpAddr>,
    /// The TLS connection's digest (the certificate it was served, for `strict_sni`).
    pub(crate) ssl: Option<Arc<SslDigest>>,
}

impl Client {
    /// The client of a connection's stream.
    pub(crate) fn of(stream: &dyn IO) -> Self {
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        Self {
            ip,
            ssl: stream.get_ssl_digest(),
        }
    }
}

/// What the connection layer knows of a request beyond its head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadFacts {
    /// The check of an HTTP/1 request line on the bytes the client sent.
    pub(crate) line: Option<LineCheck>,
    /// The head's size as sent (HTTP/1), for `max_header_size`.
    pub(crate) head_len: Option<usize>,
}

/// Per-request state.
struct RequestCtx {
    start: Instant,
    /// The route the request matched (its upstream and metrics), held so a reload
    /// never changes it midway.
    route: Option<Arc<RouteState>>,
    /// Which of the route's upstreams the request goes to (picked by weight).
    target: usize,
    /// The route's filters, when it has any, for the response hook.
    chain: Option<Arc<crate::routes::Chain>>,
    /// What the request hook decided, when it changed anything or the response hooks
    /// need something (boxed: most requests carry one pointer for it).
    filtered: Option<Box<filters::Filtered>>,
    /// The backend of the current attempt (counted in flight for `least_requests`).
    backend: Option<InFlight>,
    /// Backends of earlier attempts (allocated only when a request is retried).
    tried: Vec<SocketAddr>,
    /// Attempts so far.
    attempts: u32,
    /// Time spent making new backend connections, over every attempt: all of them
    /// together get one `connect_timeout`.
    connecting: Duration,
    /// Whether the upstream's response head arrived (no retry after that).
    responded: bool,
    /// A response the gateway wrote itself (404, redirect, error), for the logs.
    local_status: Option<u16>,
    request_id: RequestId,
    /// `Strict-Transport-Security` to add to the response.
    hsts: Option<HeaderValue>,
    /// Whether the client's `X-Forwarded-*` headers are kept (a trusted proxy sent it).
    trusted: bool,
    /// A WebSocket upgrade the route allows.
    upgrade: bool,
    /// The route's body limit.
    max_body: u64,
    /// Whether the request was refused before routing.
    refused: bool,
    /// The request's place under the route's `max_in_flight`.
    slot: Option<crate::routes::filters::in_flight::Slot>,
    /// When the first attempt started and the backend's response head came, when the
    /// access log shows `upstream_ms`.
    upstream_started: Option<Instant>,
    upstream_time: Option<Duration>,
    /// The request's trace, with `[tracing]`.
    trace: Option<crate::telemetry::traces::Trace>,
}

impl RequestCtx {
    fn new(request_id: RequestId) -> Self {
        Self {
            start: Instant::now(),
            route: None,
            target: 0,
            chain: None,
            filtered: None,
            backend: None,
            tried: Vec::new(),
            attempts: 0,
            connecting: Duration::ZERO,
            responded: false,
            local_status: None,
            request_id,
            hsts: None,
            trusted: false,
            upgrade: false,
            max_body: u64::MAX,
            refused: false,
            slot: None,
            upstream_started: None,
            upstream_time: None,
            trace: None,
        }
    }
}

/// The request id header, sent upstream and returned to the client.
pub(crate) const REQUEST_ID: http::header::HeaderName =
    http::header::HeaderName::from_static("x-request-id");

/// The request's id: the client's valid `X-Request-Id` (1 to 128 visible ASCII
/// characters), else a new random one.
fn request_id(req: &Request) -> RequestId {
    match req.headers.get(REQUEST_ID) {
        Some(v)
            if (1..=128).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic) =>
        {
            RequestId::Client(v.clone())
        }
        _ => new_request_id(),
    }
}

thread_local! {
    /// The request-id generator's state (wyrand), seeded per thread from std's
    /// randomly keyed hasher: ids unique and unpredictable enough to trace requests
    /// by, not secrets. Its own, so request ids do not advance the balancer's random
    /// choices.
    static ID_STATE: std::cell::Cell<u64> = std::cell::Cell::new({
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0);
        hasher.finish()
    });
}

/// 64 random bits.
pub(super) fn id_bits() -> u64 {
    ID_STATE.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    })
}

/// 128 random bits as 32 lower-case hex digits.
fn new_request_id() -> RequestId {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = u128::from(id_bits()) << 64 | u128::from(id_bits());
    let mut text = [0u8; 32];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = HEX[(bits >> (124 - 4 * i) & 0xf) as usize];
    }
    RequestId::Generated(text)
}

impl Gateway {
    /// Serves one request of `down` (an HTTP/1 connection's next request, or one
    /// HTTP/2 stream): answers it or proxies it, logs it. The request counts for the
    /// shutdown drain until its response is written. Returns whether it was refused
    /// before routing (malformed, or over a limit).
    pub(crate) async fn serve<D: Downstream>(
        &self,
        down: &mut D,
        mut req: Request,
        client: &Client,
        facts: HeadFacts,
    ) -> bool {
        let in_flight = RequestGuard::new();
        let mut ctx = RequestCtx::new(request_id(&req));
        ctx.trace = crate::telemetry::traces::begin(&req.headers, id_bits);
        let result = match self.admit(down, &mut req, &mut ctx, client, facts).await {
            Ok(true) => Ok(()),
            Ok(false) => self.proxy(down, &req, &mut ctx, client).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.fail(down, &mut ctx, e).await;
        }
        self.log(down, Some(&req), client, result.as_ref().err(), &mut ctx);
        let refused = ctx.refused;
        drop(ctx);
        drop(in_flight);
        refused
    }

    /// Answers a request refused while its head was read, before it could be parsed,
    /// as every refusal is answered (the listener's HSTS, logged and counted), with a
    /// new request id.
    pub(crate) async fn refuse_unparsed<D: Downstream>(
        &self,
        down: &mut D,
        refusal: Refusal,
        client: &Client,
    ) {
        let in_flight = RequestGuard::new();
        let mut ctx = RequestCtx::new(new_request_id());
        ctx.hsts = self.listener_hsts();
        let result = refuse(down, &mut ctx, refusal).await;
        if let Err(e) = &result {
            tracing::debug!(error = %e, "cannot send the refusal");
        }
        self.log(down, None, client, None, &mut ctx);
        drop(in_flight);
    }

    fn listener_hsts(&self) -> Option<HeaderValue> {
        let snapshot = self.snapshot.load();
        snapshot
            .listeners
            .get(self.index)
            .and_then(|l| l.hsts.clone())
    }

    /// The listener's checks and routing. `Ok(true)`: answered here (refused, redirected,
    /// no route); `Ok(false)`: to be proxied to `ctx.route`.
    async fn admit<D: Downstream>(
        &self,
        down: &mut D,
        req: &mut Request,
        ctx: &mut RequestCtx,
        client: &Client,
        facts: HeadFacts,
    ) -> Result<bool, ProxyError> {
        let snapshot = self.snapshot.load();
        let Some(listener) = snapshot.listeners.get(self.index) else {
            drop(snapshot);
            let refusal = Refusal {
                status: 500,
                reason: "listener state missing",
            };
            return refuse(down, ctx, refusal).await;
        };
        ctx.hsts = listener.hsts.clone();
        // A frontend does not tunnel.
        if req.method == http::Method::CONNECT {
            drop(snapshot);
            let refusal = Refusal {
                status: 405,
                reason: "CONNECT",
            };
            return refuse(down, ctx, refusal).await;
        }
        ctx.trusted = headers::is_trusted(&listener.edge.trusted_proxies, client.ip);
        let (mode, strict_sni) = (listener.mode, listener.edge.strict_sni);
        let shape = match checks::check_request(req, &listener.edge, facts) {
            Ok(shape) => shape,
            Err(refusal) => {
                drop(snapshot);
                return refuse(down, ctx, refusal).await;
            }
        };
        // Routes, their policies and the backend all see the normalized path.
        let merge_slashes = listener.edge.merge_slashes;
        if !shape.is_normal(merge_slashes) {
            if let Err(reason) = normalize::normalize_uri(&mut req.uri, merge_slashes) {
                drop(snapshot);
                let refusal = Refusal {
                    status: 400,
                    reason,
                };
                return refuse(down, ctx, refusal).await;
            }
        }
        if let ListenerMode::RedirectToHttps { port } = mode {
            drop(snapshot);
            let status = respond::redirect_to_https(down, req, port, &ctx.request_id).await?;
            ctx.local_status = Some(status);
            return Ok(true);
        }
        let host = request_host(req).unwrap_or("");
        if strict_sni && !served_covers(client, host) {
            drop(snapshot);
            let refusal = Refusal {
                status: 421,
                reason: "Host not covered by the connection's certificate (strict_sni)",
            };
            return refuse(down, ctx, refusal).await;
        }
        let lookup = crate::routes::Request {
            host,
            path: req.uri.path(),
            query: req.uri.query().unwrap_or(""),
            method: &req.method,
            headers: &req.headers,
        };
        ctx.route = snapshot.route(&lookup).cloned();
        drop(snapshot);
        let Some(route) = &ctx.route else {
            respond::json_error(down, 404, &ctx.request_id, ctx.hsts.as_ref()).await?;
            ctx.local_status = Some(404);
            return Ok(true);
        };
        // Counted against the upstream it would have gone to.
        ctx.target = route.pick();
        // Route policy: answered like a 404 (the connection stays open).
        let admitted = route
            .access
            .as_ref()
            .is_none_or(|access| client.ip.is_some_and(|ip| access.admits(ip)));
        if !admitted {
            respond::json_error(down, 403, &ctx.request_id, ctx.hsts.as_ref()).await?;
            ctx.local_status = Some(403);
            return Ok(true);
        }
        // Authentication first: a rate limit keyed by identity counts only those who
        // passed it.
        match route.auth.as_deref() {
            Some(crate::auth::RouteAuth::Basic(basic)) => {
                if let crate::auth::Verdict::Challenge(challenge) =
                    basic.verdict(&req.headers).await
                {
                    let (id, hsts) = (&ctx.request_id, ctx.hsts.as_ref());
                    respond::unauthorized(down, challenge, id, hsts).await?;
                    ctx.local_status = Some(401);
                    return Ok(true);
                }
            }
            Some(crate::auth::RouteAuth::Forward(forward)) => {
                if let Some(status) = self.forward_auth(down, forward, req, ctx, client).await? {
                    ctx.local_status = Some(status);
                    return Ok(true);
                }
            }
            Some(crate::auth::RouteAuth::Jwt(jwt)) => match jwt.check(&req.headers).await {
                Ok(verified) => jwt.apply(&verified, &mut req.headers),
                Err(refusal) => {
                    let (id, hsts) = (&ctx.request_id, ctx.hsts.as_ref());
                    respond::unauthorized(down, &refusal.challenge(), id, hsts).await?;
                    ctx.local_status = Some(401);
                    return Ok(true);
                }
            },
            None => {}
        }
        if let Some(limiter) = &route.rate_limit {
            if let Decision::Limited { retry_after } = limiter.check(client.ip, &req.headers) {
                let (id, hsts) = (&ctx.request_id, ctx.hsts.as_ref());
                respond::rate_limited(down, limiter.policy(), retry_after, id, hsts).await?;
                ctx.local_status = Some(429);
                return Ok(true);
            }
        }
        if let Some(limit) = &route.in_flight {
            ctx.slot = limit.enter();
            if ctx.slot.is_none() {
                respond::json_error(down, 503, &ctx.request_id, ctx.hsts.as_ref()).await?;
                ctx.local_status = Some(503);
                return Ok(true);
            }
        }
        if let Some(chain) = &route.chain {
            match filters::on_request(chain, req, self.proto == "https") {
                OnRequest::Forward(forward) => {
                    ctx.chain = Some(chain.clone());
                    if !forward.is_empty() {
                        ctx.filtered = Some(Box::new(filters::Filtered {
                            forward,
                            encoder: None,
                        }));
                    }
                }
                OnRequest::Answer(answer) => {
                    let hsts = ctx.hsts.as_ref();
                    let status = filters::answer(down, answer, &ctx.request_id, hsts).await?;
                    ctx.local_status = Some(status);
                    return Ok(true);
                }
            }
        }
        ctx.max_body = route.max_body_size;
        ctx.upgrade = route.websocket && is_websocket_upgrade(req);
        if checks::content_length(req).is_some_and(|n| n > ctx.max_body) {
            let refusal = Refusal {
                status: 413,
                reason: "Content-Length over the route's max_body_size",
            };
            return refuse(down, ctx, refusal).await;
        }
        down.set_max_body(ctx.max_body);
        Ok(false)
    }

    /// Answers a failed request with its error status, unless a response has started
    /// (the connection is then closed mid-response) or the client is gone. An HTTP/1
    /// connection does not carry another request after a failure.
    async fn fail<D: Downstream>(&self, down: &mut D, ctx: &mut RequestCtx, e: &ProxyError) {
        down.set_close();
        let code = e.status();
        ctx.local_status = Some(code);
        if code == 0 {
            return;
        }
        if down.status().is_some() {
            // A gRPC response cut short still ends with its status, in trailers.
            if down.grpc() {
                let [_, status, message] = grpc::answer_fields(code);
                let trailers = HeaderMap::from_iter([status, message]);
                let _ = down.write_trailers(trailers).await;
            }
            return;
        }
        if let Err(write_error) =
            respond::json_error(down, code, &ctx.request_id, ctx.hsts.as_ref()).await
        {
            tracing::debug!(%write_error, "cannot send error response");
        }
    }

    /// Metrics and the access line of a finished request (backend attempts are counted
    /// as they end, in `proxy`). `req`: `None` when the head could not be parsed.
    fn log<D: Downstream>(
        &self,
        down: &D,
        req: Option<&Request>,
        client: &Client,
        e: Option<&ProxyError>,
        ctx: &mut RequestCtx,
    ) {
        let status = down
            .status()
            .map(|s| s.as_u16())
            .or(ctx.local_status)
            .unwrap_or(0);
        if status > 0 {
            let elapsed = ctx.start.elapsed();
            // A route that answered itself (a redirect) has no target: unrouted.
            match ctx.route.as_ref().and_then(|r| r.targets.get(ctx.target)) {
                Some(target) => {
                    if let Some(series) = target.series.get(self.index) {
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
            if e.is_clients_doing() {
                tracing::debug!(listener = %self.name, error = %crate::error_chain(e), cause = ?e, "request failed on the client's side");
            } else {
                let upstream = ctx.route.as_ref().and_then(|r| r.targets.get(ctx.target));
                let upstream = upstream.map_or("-", |t| t.upstream.name());
                let backend = ctx.backend.as_ref().map(|b| b.backend().addr.to_string());
                let backend = backend.as_deref().unwrap_or("-");
                tracing::warn!(listener = %self.name, upstream, backend = %backend, error = %crate::error_chain(e), "request failed");
            }
        }
        if let Some(trace) = ctx.trace.as_mut().filter(|t| t.sampled()) {
            // Still open: the request ended inside it (a gRPC deadline, say).
            trace.attempt_ended(None, e.map(ProxyError::error_type));
            let upstream = ctx.route.as_ref().and_then(|r| r.targets.get(ctx.target));
            trace.finish(&Finished {
                method: req.map_or(&http::Method::GET, |r| &r.method),
                scheme: self.proto,
                host: req.and_then(request_authority).unwrap_or("-"),
                path: req.map_or("-", |r| r.uri.path()),
                protocol: req.map_or("-", |r| semconv_version(r.version)),
                client: client.ip,
                user_agent: req
                    .and_then(|r| r.headers.get(http::header::USER_AGENT))
                    .and_then(|v| v.to_str().ok()),
                status,
                route: ctx.route.as_ref().map(|r| &*r.label),
                upstream: upstream.map(|t| t.upstream.name()),
                bytes_sent: down.body_bytes_sent(),
                bytes_received: down.body_bytes_received(),
                error: e.map(|e| (e.error_type(), crate::error_chain(e))),
            });
        }
        if !access::enabled() {
            return;
        }
        access::log(&AccessLine {
            listener: &self.name,
            client: client.ip,
            method: req.map_or("-", |r| r.method.as_str()),
            host: req.and_then(request_authority).unwrap_or("-"),
            path: req.map_or("-", |r| r.uri.path()),
            status,
            upstream: ctx.backend.as_ref().map(|b| b.backend().addr),
            duration: ctx.start.elapsed(),
            bytes: usize::try_from(down.body_bytes_sent()).unwrap_or(usize::MAX),
            request_id: ctx.request_id.as_str(),
            protocol: req.map_or("-", |r| version_text(r.version)),
            headers: req.map(|r| &r.headers),
            bytes_received: down.body_bytes_received(),
            upstream_time: ctx.upstream_time,
            route: ctx.route.as_ref().map(|r| &*r.label),
            tls_version: client.ssl.as_ref().map(|d| tls_version_text(&d.version)),
            trace_id: ctx.trace.as_ref().map(|t| t.header.trace_id()),
        });
    }
}

/// A TLS version as nginx's `$ssl_protocol` writes it (rustls names it `TLSv1_3`).
fn tls_version_text(version: &str) -> &str {
    match version {
        "TLSv1_3" => "TLSv1.3",
        "TLSv1_2" => "TLSv1.2",
        other => other,
    }
}

/// A request's HTTP version as OpenTelemetry's `network.protocol.version` writes it.
fn semconv_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// A request's HTTP version as the access log writes it.
fn version_text(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Answers a refused request with its status and closes the connection after it.
async fn refuse<D: Downstream>(
    down: &mut D,
    ctx: &mut RequestCtx,
    refusal: Refusal,
) -> Result<bool, ProxyError> {
    tracing::debug!(
        status = refusal.status,
        reason = refusal.reason,
        "request refused"
    );
    down.set_close();
    ctx.refused = true;
    respond::json_error(down, refusal.status, &ctx.request_id, ctx.hsts.as_ref()).await?;
    ctx.local_status = Some(refusal.status);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a.as_bytes(), b.as_bytes());
        for id in [a, b] {
            assert_eq!(id.as_bytes().len(), 32);
            assert!(id
                .as_bytes()
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        }
    }

    #[test]
    fn a_valid_client_id_is_kept() {
        let mut req = Request {
            method: http::Method::GET,
            uri: http::Uri::from_static("/"),
            version: http::Version::HTTP_11,
            headers: http::HeaderMap::new(),
        };
        req.headers
            .insert(REQUEST_ID, HeaderValue::from_static("client-1"));
        assert_eq!(request_id(&req).as_bytes(), b"client-1");
        req.headers
            .insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_eq!(request_id(&req).as_bytes().len(), 32);
    }
}
