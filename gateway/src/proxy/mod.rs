//! The request path: one listener's requests, from the head read on a pingora-core
//! session through routing to the backend exchange, and their logs and metrics.

mod checks;
mod forward;
mod headers;
mod normalize;
mod request;
mod respond;
mod router;
mod uri;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use pingora::connectors::TransportConnector;
use pingora::protocols::http::server::ReusableHttpStream;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorSource, ErrorType};

pub(crate) use request::request_host;
use request::{is_websocket_upgrade, request_authority, served_covers};
pub use router::Router;
pub(crate) use uri::{request_line, LineCheck};

use crate::lifecycle::RequestGuard;
use crate::state::{ListenerMode, RouteState, SharedSnapshot};
use crate::telemetry::access::{self, AccessLine};
use crate::upstream::InFlight;
use checks::Refusal;

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

/// Per-request state.
struct RequestCtx {
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
    /// Time spent making new backend connections, over every attempt: all of them
    /// together get one `connect_timeout`.
    connecting: Duration,
    /// Whether the upstream's response head arrived (no retry after that).
    responded: bool,
    /// A response the gateway wrote itself (404, redirect, error), for the logs.
    local_status: Option<u16>,
    /// Whether the request head was parsed (the access line then has its method,
    /// host and path; else `-`).
    parsed: bool,
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
}

impl RequestCtx {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            route: None,
            backend: None,
            tried: Vec::new(),
            attempts: 0,
            connecting: Duration::ZERO,
            responded: false,
            local_status: None,
            parsed: true,
            request_id: None,
            hsts: None,
            trusted: false,
            upgrade: false,
            body_bytes: 0,
            max_body: u64::MAX,
        }
    }

    /// The request's id: the client's valid `X-Request-Id`, else a new random one.
    fn request_id(&mut self, session: &ServerSession) -> &HeaderValue {
        self.request_id.get_or_insert_with(|| {
            let mut id = session
                .req_header()
                .headers
                .get(REQUEST_ID)
                .filter(|v| {
                    (1..=128).contains(&v.len())
                        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
                })
                .cloned()
                .unwrap_or_else(new_request_id);
            // Every value is new: HTTP/2's header compression sends it as a literal
            // never indexed, instead of filling the connection's table with ids that
            // evict the headers that do repeat (no effect on HTTP/1).
            id.set_sensitive(true);
            id
        })
    }
}

/// The request id header, sent upstream and returned to the client.
pub(crate) const REQUEST_ID: http::header::HeaderName =
    http::header::HeaderName::from_static("x-request-id");

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

impl Gateway {
    /// Serves one request of `session` (an HTTP/1 connection's next request, or one
    /// HTTP/2 stream): reads its head, answers it or proxies it, logs it. `line` is the
    /// check of an HTTP/1 request line on the bytes the client sent ([`request_line`]).
    /// Returns the HTTP/1 connection when it can carry another request.
    pub(crate) async fn serve(
        &self,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
        line: Option<LineCheck>,
    ) -> Option<ReusableHttpStream> {
        let refused = match read_head(&mut session).await {
            Head::Read => None,
            Head::Refused { refusal, parsed } => Some((refusal, parsed)),
            Head::Gone => return None,
        };
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        // Counts the request for the shutdown drain until its response is written out.
        let in_flight = RequestGuard::new();
        let mut ctx = RequestCtx::new();
        let admitted = match refused {
            Some((refusal, parsed)) => {
                self.refuse_head(&mut session, &mut ctx, refusal, parsed)
                    .await
            }
            None => self.admit(&mut session, &mut ctx, line).await,
        };
        let result = match admitted {
            Ok(true) => Ok(()),
            Ok(false) => self.proxy(&mut session, &mut ctx).await,
            Err(e) => Err(e),
        };
        let error = result.err();
        if let Some(e) = &error {
            self.fail(&mut session, &mut ctx, e).await;
        }
        self.log(&session, error.as_deref(), &ctx);
        drop(ctx);
        let reusable = match error {
            None => finish(session).await,
            Some(_) => {
                drop(session);
                None
            }
        };
        drop(in_flight);
        reusable
    }

    /// Answers a request refused while its head was read as every refusal is answered
    /// (the listener's HSTS, logged and counted), with the client's request id when the
    /// head was `parsed` and a new one when it could not be.
    async fn refuse_head(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
        refusal: Refusal,
        parsed: bool,
    ) -> pingora::Result<bool> {
        let snapshot = self.snapshot.load();
        ctx.hsts = snapshot
            .listeners
            .get(self.index)
            .and_then(|l| l.hsts.clone());
        drop(snapshot);
        ctx.parsed = parsed;
        if !parsed {
            ctx.request_id = Some(new_request_id());
        }
        refuse(session, ctx, refusal).await
    }

    /// The listener's checks and routing. `Ok(true)`: answered here (refused, redirected,
    /// no route); `Ok(false)`: to be proxied to `ctx.route`.
    async fn admit(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
        line: Option<LineCheck>,
    ) -> pingora::Result<bool> {
        let snapshot = self.snapshot.load();
        let Some(listener) = snapshot.listeners.get(self.index) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "listener state missing",
            ));
        };
        ctx.hsts = listener.hsts.clone();
        ctx.trusted = headers::is_trusted(&listener.edge.trusted_proxies, client_ip(session));
        let (mode, strict_sni) = (listener.mode, listener.edge.strict_sni);
        let shape = match checks::check_request(session, &listener.edge, line) {
            Ok(shape) => shape,
            Err(refusal) => {
                drop(snapshot);
                return refuse(session, ctx, refusal).await;
            }
        };
        // Routes, their policies and the backend all see the normalized path.
        let merge_slashes = listener.edge.merge_slashes;
        if !shape.is_normal(merge_slashes) {
            let req = session.req_header_mut();
            if let Err(reason) = normalize::normalize_request(req, merge_slashes) {
                drop(snapshot);
                let refusal = Refusal {
                    status: 400,
                    reason,
                };
                return refuse(session, ctx, refusal).await;
            }
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

    /// Answers a failed request with its error status, unless a response has started
    /// (the connection is then closed mid-response) or the client is gone.
    async fn fail(&self, session: &mut ServerSession, ctx: &mut RequestCtx, e: &Error) {
        let code = error_status(e);
        ctx.local_status = Some(code);
        if code == 0 || session.response_written().is_some() {
            return;
        }
        let request_id = ctx.request_id(session).clone();
        if let Err(write_error) =
            respond::json_error(session, code, &request_id, ctx.hsts.as_ref()).await
        {
            tracing::debug!(%write_error, "cannot send error response");
        }
    }

    /// Metrics and the access line of a finished request (backend attempts are counted
    /// as they end, in `proxy`).
    fn log(&self, session: &ServerSession, e: Option<&Error>, ctx: &RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.local_status)
            .unwrap_or(0);
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
            if is_clients_doing(e) {
                tracing::debug!(listener = %self.name, error = %e, "request failed on the client's side");
            } else {
                tracing::warn!(listener = %self.name, error = %e, "request failed");
            }
        }
        if !access::enabled() {
            return;
        }
        let req = ctx.parsed.then(|| session.req_header());
        access::log(&AccessLine {
            listener: &self.name,
            client: client_ip(session),
            method: req.map_or("-", |r| r.method.as_str()),
            host: req.and_then(request_authority).unwrap_or("-"),
            path: req.map_or("-", |r| r.uri.path()),
            status,
            upstream: ctx.backend.as_ref().map(|b| b.backend().addr),
            duration: ctx.start.elapsed(),
            bytes: session.body_bytes_sent(),
            request_id: ctx
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
        });
    }
}

/// What reading a request head gave.
enum Head {
    Read,
    /// To be answered with `refusal`; `parsed`: whether there is a request head to log.
    Refused {
        refusal: Refusal,
        parsed: bool,
    },
    /// The client closed, or the head did not arrive: nothing to answer.
    Gone,
}

/// Reads the request head. A malformed one is refused with 400, `CONNECT` with 405 (a
/// frontend does not tunnel).
async fn read_head(session: &mut ServerSession) -> Head {
    match session.read_request().await {
        Ok(true) if session.req_header().method != http::Method::CONNECT => Head::Read,
        Ok(true) => Head::Refused {
            refusal: Refusal {
                status: 405,
                reason: "CONNECT",
            },
            parsed: true,
        },
        Ok(false) => Head::Gone,
        Err(e) if e.etype() == &ErrorType::InvalidHTTPHeader => {
            tracing::debug!(error = %e, "malformed request head");
            Head::Refused {
                refusal: Refusal {
                    status: 400,
                    reason: "malformed request head",
                },
                parsed: false,
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "reading the request head failed");
            Head::Gone
        }
    }
}

/// Ends the response; an HTTP/1 connection comes back for its next request. (pingora's
/// `ServerSession::finish` covers session kinds the gateway never has, in a future
/// three times the size of this one, which would size every request's future.)
async fn finish(session: ServerSession) -> Option<ReusableHttpStream> {
    match session {
        ServerSession::H1(mut h1) => {
            h1.finish_body().await.ok()?;
            h1.reuse().await.ok().flatten()
        }
        ServerSession::H2(mut h2) => {
            let _ = h2.finish();
            None
        }
        _ => None,
    }
}

/// The client's IP address.
fn client_ip(session: &ServerSession) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// Answers a refused request with its status and closes the connection after it.
async fn refuse(
    session: &mut ServerSession,
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

/// Whether a request failed through its client alone: anything on the client's
/// connection or HTTP/2 stream (it went away, reset the stream, broke the protocol, sent
/// too slowly) or a refusal of what it sent (a body over the limit). Logged at DEBUG, so
/// no client can flood the log; a backend's failure stays a WARN.
fn is_clients_doing(e: &Error) -> bool {
    e.esource() == &ErrorSource::Downstream
        || matches!(e.etype(), ErrorType::HTTPStatus(code) if (400..500).contains(code))
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

    #[test]
    fn client_failures_are_told_from_backend_and_internal_ones() {
        let from = |t, source| {
            let mut e = Error::new(t);
            e.esource = source;
            e
        };
        // A stream the client reset while the response waited for flow-control capacity.
        assert!(is_clients_doing(&from(
            ErrorType::H2Error,
            ErrorSource::Downstream
        )));
        assert!(is_clients_doing(&from(
            ErrorType::ReadTimedout,
            ErrorSource::Downstream
        )));
        assert!(is_clients_doing(&Error::new(ErrorType::HTTPStatus(413))));
        assert!(!is_clients_doing(&from(
            ErrorType::ConnectRefused,
            ErrorSource::Upstream
        )));
        assert!(!is_clients_doing(&from(
            ErrorType::ReadTimedout,
            ErrorSource::Upstream
        )));
        assert!(!is_clients_doing(&Error::new(ErrorType::InternalError)));
        assert!(!is_clients_doing(&Error::new(ErrorType::HTTPStatus(502))));
    }
}
